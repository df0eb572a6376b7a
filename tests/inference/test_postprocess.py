"""Postprocessing: specks removed by volume in mm³, the largest component kept, other labels untouched."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.inference.postprocess import clean_label_map


def _labels() -> np.ndarray:
    labels = np.zeros((10, 20, 20), dtype=np.uint8)
    labels[2:6, 2:8, 2:8] = 1  # 144 voxels
    labels[8, 3, 3] = 1  # a 1-voxel speck of label 1
    labels[1:3, 12:14, 12:14] = 2  # 8 voxels
    labels[5:9, 12:18, 12:16] = 2  # 96 voxels, the larger part of label 2
    labels[0, 0, 0] = 3  # label 3 is only a speck
    labels[9, 19, 19] = 9  # not an organ of the table: left alone
    return labels


def test_keeps_largest_component_and_drops_specks() -> None:
    labels = _labels()
    removed = clean_label_map(labels, [1, 2, 3], spacing_mm=(1.0, 1.0, 1.0), min_component_ml=0.05)
    assert removed == {1: 1, 2: 8, 3: 1}
    counts = np.bincount(labels.ravel(), minlength=10)
    assert counts[1] == 144 and counts[2] == 96 and counts[3] == 0 and counts[9] == 1


def test_volume_threshold_is_in_millilitres() -> None:
    labels = _labels()
    # 2 x 2 x 2 mm voxels: the 8-voxel part of label 2 is 64 mm³, the speck of label 3 is 8 mm³.
    removed = clean_label_map(labels, [2, 3], spacing_mm=(2.0, 2.0, 2.0), keep_largest=False, min_component_ml=0.05)
    assert removed == {3: 1}
    removed = clean_label_map(labels, [2], spacing_mm=(2.0, 2.0, 2.0), keep_largest=False, min_component_ml=0.07)
    assert removed == {2: 8}


def test_largest_component_only() -> None:
    labels = _labels()
    removed = clean_label_map(labels, [1, 2, 3], spacing_mm=(1.0, 1.0, 1.0), min_component_ml=0.0)
    assert removed == {1: 1, 2: 8}  # label 3's only component is its largest
    assert np.count_nonzero(labels == 3) == 1


def test_diagonal_neighbours_are_connected() -> None:
    labels = np.zeros((4, 4, 4), dtype=np.uint8)
    labels[0, 0, 0] = labels[1, 1, 1] = 1  # touch at a corner: one component under full connectivity
    assert clean_label_map(labels, [1], spacing_mm=(10.0, 10.0, 10.0), min_component_ml=0.0) == {}
    assert np.count_nonzero(labels) == 2


def test_refuses_non_uint8() -> None:
    with pytest.raises(ValueError, match="uint8"):
        clean_label_map(np.zeros((2, 2, 2), dtype=np.int32), [1], (1.0, 1.0, 1.0))


def test_largest_component_matches_monai_keep_largest_connected_component() -> None:
    import torch
    from monai.transforms import KeepLargestConnectedComponent

    from medseg.inference.postprocess import largest_component

    rng = np.random.default_rng(0)
    for trial in range(20):
        mask = rng.random((12, 10, 9)) < (0.05 + 0.02 * trial)
        expected = KeepLargestConnectedComponent(applied_labels=[1], is_onehot=False, connectivity=3)(
            torch.from_numpy(mask[None].astype(np.uint8))
        )
        np.testing.assert_array_equal(largest_component(mask), np.asarray(expected)[0].astype(bool))


def _largest_in_one_call(mask: np.ndarray) -> np.ndarray:
    """The reference: one ``scipy.ndimage.label`` over the whole mask, the largest component, the first on a tie
    (MONAI's transform breaks ties by an unstable sort, so it is the reference only where no tie is at the top)."""
    from scipy import ndimage

    components, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    if count <= 1:
        return mask.copy()
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    kept: np.ndarray = components == sizes.argmax()
    return kept


@pytest.mark.parametrize("slab_voxels", [1, 7, 60, 1 << 26])
def test_clean_label_map_in_slabs_is_one_labelling_then_volume_threshold(
    slab_voxels: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On random label maps in 2D and 3D, the organ's box labelled in slabs of one plane, a few planes, or whole:
    each organ is its largest component as one labelling of the whole box finds it (ties included: small random
    blobs tie often), or nothing when that is below the volume; other voxels untouched; the counts returned."""
    from medseg.inference import postprocess

    monkeypatch.setattr(postprocess, "_SLAB_VOXELS", slab_voxels)
    rng = np.random.default_rng(slab_voxels)
    for trial in range(60):
        shape = tuple(int(n) for n in rng.integers(2, 13, size=3 if trial % 4 else 2))
        labels = (rng.random(shape) < 0.1 + 0.5 * rng.random()).astype(np.uint8) * rng.integers(1, 4, size=shape)
        labels = labels.astype(np.uint8)
        expected = labels.copy()
        min_voxels = int(rng.integers(0, 6))
        expected_removed = {}
        for value in (1, 2):
            mask = labels == value
            kept = _largest_in_one_call(mask)
            if np.count_nonzero(kept) < min_voxels:
                kept[:] = False
            drop = mask & ~kept
            expected[drop] = 0
            if drop.any():
                expected_removed[value] = int(np.count_nonzero(drop))
        removed = clean_label_map(labels, [1, 2], spacing_mm=(1.0,) * len(shape), min_component_ml=min_voxels / 1000)
        np.testing.assert_array_equal(labels, expected)
        assert removed == expected_removed
