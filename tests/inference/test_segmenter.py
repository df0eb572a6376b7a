"""Segmenter on real scans: the bundle's chain and inferer drive it, and the label map lies on the input's grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from medseg.errors import GeometryError, InputError, MedsegError
from medseg.inference.segmenter import Segmenter
from medseg.io.readers import read_scan
from medseg.reporting import StageClock
from tests.inference.helpers import make_test_bundle

STAGES = {"read", "preprocess", "inference", "invert", "postprocess"}


def _check_on_scan_grid(labels: sitk.Image, path: Path) -> None:
    reference = read_scan(path).image
    assert labels.GetSize() == reference.GetSize()
    assert labels.GetSpacing() == reference.GetSpacing()  # the same doubles, not merely close
    assert labels.GetOrigin() == reference.GetOrigin()
    assert labels.GetDirection() == reference.GetDirection()
    assert labels.GetPixelID() == sitk.sitkUInt8


@pytest.mark.data
@pytest.mark.parametrize(
    "relative",
    ["ibsi_sts/dicom/STS_019", "totalsegmentator/example_ct_dicom", "pyradiomics/lung1_image.nrrd"],
)
def test_real_scans_come_back_on_their_own_grid(segmenter: Segmenter, data_root: Path, relative: str) -> None:
    path = data_root / relative
    clock = StageClock()
    result = segmenter.segment(path, clock)
    _check_on_scan_grid(result.labels, path)
    assert set(clock.seconds) == STAGES
    values = np.unique(sitk.GetArrayViewFromImage(result.labels))
    assert set(values.tolist()) <= set(range(8)) and values.max() > 0
    # The network saw the scan resampled to the bundle's spacing and cropped to the body: a smaller grid.
    assert len(result.model_shape) == 3 and np.prod(result.model_shape) < np.prod(result.labels.GetSize())
    if (data_root / relative).is_dir():
        assert result.scan.series is not None and result.scan.series.modality == "CT"


@pytest.mark.data
def test_openkbp_nifti_and_the_three_inversions(
    segmenter: Segmenter, test_bundle: Path, openkbp_images: list[Path]
) -> None:
    path = openkbp_images[0]
    _check_on_scan_grid(segmenter.segment(path).labels, path)
    # Without postprocessing, which could drop a whole component in one result and keep it in another.
    slabs, reference, nearest = (
        Segmenter(test_bundle, device="cpu", inversion=inversion, postprocess=False).segment(path)
        for inversion in ("slabs", "invertd", "nearest")
    )
    slab_voxels = sitk.GetArrayViewFromImage(slabs.labels)
    # Slab-wise resampling of the probabilities is MONAI Invertd's result (up to float ties)...
    assert np.mean(slab_voxels == sitk.GetArrayViewFromImage(reference.labels)) > 0.999
    # ...and the argmax-first shortcut differs along organ edges only (random weights: edges everywhere).
    nearest_voxels = sitk.GetArrayViewFromImage(nearest.labels)
    assert np.mean(slab_voxels == nearest_voxels) > 0.8
    differing = np.argwhere(slab_voxels != nearest_voxels)
    padded = np.pad(slab_voxels, 1, mode="edge")
    for z, y, x in differing[:: max(1, len(differing) // 500)]:
        neighbourhood = padded[z : z + 3, y : y + 3, x : x + 3]
        assert len(np.unique(neighbourhood)) > 1, "a difference away from any edge"


def test_tta_and_postprocessing_options(test_bundle: Path, tmp_path: Path) -> None:
    from tests.inference.helpers import body_phantom

    path = tmp_path / "phantom.nii.gz"
    sitk.WriteImage(body_phantom(size_xyz=(96, 80, 40), spacing=(1.5, 1.5, 2.5)), str(path))
    plain = Segmenter(test_bundle, device="cpu", postprocess=False)
    raw = plain.segment(path)
    assert raw.removed_voxels == {}
    cleaned = Segmenter(test_bundle, device="cpu").segment(path)
    raw_voxels = sitk.GetArrayViewFromImage(raw.labels)
    cleaned_voxels = sitk.GetArrayViewFromImage(cleaned.labels)
    # Postprocessing only removes voxels (sets them to background), and says how many per organ.
    changed = raw_voxels != cleaned_voxels
    assert np.all(cleaned_voxels[changed] == 0)
    assert sum(cleaned.removed_voxels.values()) == int(changed.sum())
    tta = Segmenter(test_bundle, device="cpu", tta=True, postprocess=False)
    assert tta.settings()["tta"] is True and tta.settings() != plain.settings()
    mirrored = tta.segment(path)
    _check_on_scan_grid(mirrored.labels, path)
    assert not np.array_equal(sitk.GetArrayViewFromImage(mirrored.labels), raw_voxels)


def test_bf16_precision_keeps_the_masks_and_is_recorded(
    segmenter: Segmenter, test_bundle: Path, tmp_path: Path
) -> None:
    from medseg.networks.factory import PrecisionPredictor, supports_bf16
    from tests.inference.helpers import body_phantom

    # fp32 (the default) on a CPU: float32 throughout, only the memory order is channels-last.
    assert segmenter.precision == "fp32" and segmenter.network_path.channels_last
    assert isinstance(segmenter._predictor, PrecisionPredictor) and segmenter._predictor.precision == "fp32"
    assert all(p.dtype == torch.float32 for p in segmenter.network.parameters())
    if not supports_bf16("cpu"):
        pytest.skip("this CPU has neither avx512_bf16 nor amx_bf16")
    bf16 = Segmenter(test_bundle, device="cpu", precision="bf16")
    assert segmenter.settings()["precision"] == "fp32" and bf16.settings()["precision"] == "bf16"
    assert {k: v for k, v in bf16.settings().items() if k != "precision"} == {
        k: v for k, v in segmenter.settings().items() if k != "precision"
    }
    path = tmp_path / "phantom.nii.gz"
    sitk.WriteImage(body_phantom(size_xyz=(96, 80, 40), spacing=(1.5, 1.5, 2.5)), str(path))
    exact = sitk.GetArrayFromImage(segmenter.segment(path).labels)  # a copy: the image is not kept
    result = bf16.segment(path)
    _check_on_scan_grid(result.labels, path)
    assert np.mean(sitk.GetArrayViewFromImage(result.labels) == exact) >= 0.95


def test_bf16_on_a_cpu_without_it_fails_before_any_case(test_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medseg.networks import factory

    monkeypatch.setattr(factory, "cpu_flags", lambda cpuinfo=factory.CPUINFO: frozenset({"avx2"}))
    monkeypatch.setattr(factory, "_torch_cpu_bf16", lambda: False)
    with pytest.raises(MedsegError, match="avx512_bf16 or amx_bf16"):
        Segmenter(test_bundle, device="cpu", precision="bf16")


def test_synthetic_lps_scan_keeps_exact_geometry(segmenter: Segmenter, tmp_path: Path) -> None:
    from tests.inference.helpers import body_phantom

    oblique = sitk.VersorTransform((0.1, 0.2, 0.95), 0.2).GetMatrix()
    path = tmp_path / "oblique.nrrd"
    sitk.WriteImage(body_phantom(direction=oblique), str(path))
    result = segmenter.segment(path)
    _check_on_scan_grid(result.labels, path)


def test_bad_input_raises_a_medseg_error(segmenter: Segmenter, tmp_path: Path) -> None:
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b not a nifti")
    with pytest.raises(InputError, match=r"broken\.nii\.gz"):
        segmenter.segment(broken)
    # The segmenter stays usable after a failure.
    from tests.inference.helpers import body_phantom

    good = tmp_path / "good.nii.gz"
    sitk.WriteImage(body_phantom(), str(good))
    assert segmenter.segment(good).labels.GetSize() == (48, 40, 24)


def test_uneven_slices_are_refused_unless_fixed(test_bundle: Path, tmp_path: Path) -> None:
    from tests.inference.helpers import body_phantom
    from tests.io.dicom_factory import write_series

    folder = tmp_path / "uneven"
    volume = sitk.GetArrayFromImage(body_phantom(size_xyz=(40, 32, 8)))
    offsets = [0.0, 2.5, 5.0, 10.0, 12.5, 15.0, 17.5, 20.0]  # a slice missing after the third
    write_series(folder, volume, positions=[(-40.0, -30.0, 100.0 + z) for z in offsets])
    with pytest.raises(GeometryError, match="--fix-geometry"):
        Segmenter(test_bundle, device="cpu").segment(folder)
    fixed = Segmenter(test_bundle, device="cpu", fix_geometry=True).segment(folder)
    assert fixed.scan.repaired and fixed.labels.GetSize() == fixed.scan.image.GetSize()


def test_a_2_5d_slice_model_runs_through_the_same_segmenter(tmp_path: Path) -> None:
    """The bundle's 2.5D mode: slices with neighbours as channels, windows one slice thick."""
    from tests.inference.helpers import body_phantom

    overrides = {"spatial_dims": 2, "slice_neighbours": 1, "patch_size": [64, 64]}
    bundle = make_test_bundle(tmp_path / "ct_unet_25d", overrides=overrides)
    segmenter = Segmenter(bundle, device="cpu")
    assert list(segmenter.inferer.roi_size)[-1] == 1  # type: ignore[attr-defined]
    path = tmp_path / "phantom.nrrd"
    sitk.WriteImage(body_phantom(), str(path))
    result = segmenter.segment(path)
    _check_on_scan_grid(result.labels, path)


def test_bundle_without_weights_fails_before_any_case(tmp_path: Path) -> None:
    bundle = make_test_bundle(tmp_path / "ct_unet", with_model=False)
    with pytest.raises(MedsegError, match="no trained weights"):
        Segmenter(bundle, device="cpu")


@pytest.fixture
def no_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any look at data_manifest.json fails from here on."""
    monkeypatch.setattr("medseg.config.MANIFEST_PATH", tmp_path / "no" / "data_manifest.json")


def test_the_model_config_beside_the_weights_defines_the_model_not_the_manifest(
    tmp_path: Path, no_manifest: None
) -> None:
    from tests.inference.helpers import body_phantom

    # a spacing no dataset fingerprint gives: it can only come from models/model_config.json
    bundle = make_test_bundle(tmp_path / "ct_unet", overrides={"spacing": [3.0, 2.5, 2.0]})
    segmenter = Segmenter(bundle, device="cpu")
    assert segmenter.model_config_file == bundle / "models" / "model_config.json"
    spacing = next(t for t in segmenter._parsed("preprocessing").transforms if type(t).__name__ == "Spacingd")
    assert spacing.spacing_transform.pixdim.tolist() == [3.0, 2.5, 2.0]  # type: ignore[attr-defined]
    path = tmp_path / "phantom.nii.gz"
    sitk.WriteImage(body_phantom(), str(path))
    result = segmenter.segment(path)
    _check_on_scan_grid(result.labels, path)
    # the model grid: the phantom's 96 x 100 x 72 mm at 3 x 2.5 x 2 mm, cropped to the body, padded to 64^3
    assert result.model_shape == (64, 64, 64)
    # another spacing in the model config is another model: its outputs are redone on resume
    other = make_test_bundle(tmp_path / "ct_unet_4mm", overrides={"spacing": [4.0, 4.0, 4.0]})
    assert Segmenter(other, device="cpu").settings()["config_sha256"] != segmenter.settings()["config_sha256"]


def test_a_model_file_brings_its_run_config(test_bundle: Path, tmp_path: Path, no_manifest: None) -> None:
    import json

    import torch
    from monai.bundle import ConfigParser

    from medseg.inference.bundle import inference_config_files
    from medseg.model_spec import read_model_config
    from tests.inference.helpers import MODEL_CONFIG, body_phantom

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    run_config = dict(MODEL_CONFIG, labels={"background": 0, "Brainstem": 1, "Tumour": 2}, channels=[4, 8, 16])
    (run / "run_config.json").write_text(json.dumps(run_config))
    parser = ConfigParser()
    parser.read_config([str(p) for p in inference_config_files(test_bundle)])
    parser.update(read_model_config(run / "run_config.json"))
    torch.save({"model": parser.get_parsed_content("network_def").state_dict()}, run / "checkpoints" / "model_best.pt")

    segmenter = Segmenter(test_bundle, device="cpu", model_file=run / "checkpoints" / "model_best.pt")
    assert segmenter.model_config_file == run / "run_config.json"
    assert segmenter.label_names == {1: "Brainstem", 2: "Tumour"}
    path = tmp_path / "phantom.nii.gz"
    sitk.WriteImage(body_phantom(), str(path))
    labels = segmenter.segment(path).labels  # held: an array view must not outlive its image
    assert set(np.unique(sitk.GetArrayViewFromImage(labels)).tolist()) <= {0, 1, 2}

    lone = tmp_path / "elsewhere" / "weights.pt"
    lone.parent.mkdir()
    lone.write_bytes((run / "checkpoints" / "model_best.pt").read_bytes())
    with pytest.raises(MedsegError, match=r"no model_config\.json or run_config\.json"):
        Segmenter(test_bundle, device="cpu", model_file=lone)


def test_padding_up_to_the_window_never_reaches_the_scan(tmp_path: Path) -> None:
    """A body far smaller than the window: the chain mirror-pads its crop, and the padding is undone before the
    predictions go back to the scan's grid, exactly as MONAI's Invertd of the whole chain undoes it."""
    from tests.inference.helpers import body_phantom

    bundle = make_test_bundle(tmp_path / "ct_unet", overrides={"patch_size": [96, 96, 96], "channels": [4, 8, 16]})
    # a 24 x 20 x 16 mm body in the middle of 120 x 120 x 60 mm of air: the padding would land in the air
    body = sitk.GetArrayFromImage(body_phantom(size_xyz=(24, 20, 16), spacing=(1.0, 1.0, 1.0)))
    scan = np.full((60, 120, 120), -1000, dtype=np.int16)
    scan[22:38, 50:70, 48:72] = body
    image = sitk.GetImageFromArray(scan)
    path = tmp_path / "small_body.nii.gz"
    sitk.WriteImage(image, str(path))
    results = {
        inversion: Segmenter(bundle, device="cpu", inversion=inversion, postprocess=False).segment(path)
        for inversion in ("slabs", "invertd", "nearest")
    }
    assert results["slabs"].model_shape == (96, 96, 96)
    slabs = sitk.GetArrayViewFromImage(results["slabs"].labels)
    # (they differ on one plane at the body crop's border, as before the padding moved into the chain)
    assert np.mean(slabs == sitk.GetArrayViewFromImage(results["invertd"].labels)) > 0.995
    # nothing far from the body: the body crop's margin is 2 voxels of 4.688 mm
    for labels in (slabs, sitk.GetArrayViewFromImage(results["nearest"].labels)):
        outside = np.ones(labels.shape, dtype=bool)
        outside[22 - 8 : 38 + 8, 50 - 12 : 70 + 12, 48 - 12 : 72 + 12] = False
        assert labels.any() and not labels[outside].any()


def test_a_body_larger_than_the_window_is_not_padded(segmenter: Segmenter, tmp_path: Path) -> None:
    from tests.inference.helpers import body_phantom

    path = tmp_path / "large.nii.gz"
    sitk.WriteImage(body_phantom(size_xyz=(100, 100, 70), spacing=(4.0, 4.0, 4.0)), str(path))
    result = segmenter.segment(path)
    assert all(n > 64 for n in result.model_shape)  # the body crop itself, larger than the 64^3 window
    _check_on_scan_grid(result.labels, path)


def test_the_read_is_explicit_and_the_chain_runs_on_the_scan_in_memory(segmenter: Segmenter, tmp_path: Path) -> None:
    """Issue 10.1: read_scan -> segment_scan; the chain's LoadImaged is not run, so a scan read before its file
    went away still segments, with the same labels as segment(path)."""
    from tests.inference.helpers import body_phantom

    path = tmp_path / "phantom.nii.gz"
    sitk.WriteImage(body_phantom(), str(path))
    from_path = sitk.GetArrayFromImage(segmenter.segment(path).labels)
    scan = read_scan(path)
    path.unlink()
    clock = StageClock()
    result = segmenter.segment_scan(scan, clock)
    assert result.scan is scan and set(clock.seconds) == STAGES - {"read"}
    assert np.array_equal(sitk.GetArrayViewFromImage(result.labels), from_path)
    assert not any(type(t).__name__ == "LoadImaged" for t in segmenter.preprocessing.transforms)
    assert not hasattr(segmenter, "_reader")  # no reader keeping the last scan as hidden state


def test_options_are_one_frozen_object_recorded_in_the_settings(test_bundle: Path) -> None:
    import argparse
    import dataclasses

    from medseg.inference.options import SegmentOptions

    args = argparse.Namespace(bundle=str(test_bundle), model=None, device="cpu", tta=True, postprocess=False, x=1)
    options = SegmentOptions.from_args(args)
    assert options == SegmentOptions(bundle=test_bundle, device="cpu", tta=True, postprocess=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.tta = False  # type: ignore[misc]
    segmenter = Segmenter(options)
    assert segmenter.options is options and segmenter.tta is True
    assert segmenter.settings() == {
        "config_sha256": segmenter.config_sha256,
        "model_sha256": segmenter.model_sha256,
        **options.recorded(),
    }
    assert options.recorded()["min_component_ml"] is None  # no postprocessing: no component size applies
    with pytest.raises(MedsegError, match="inversion must be one of"):
        SegmentOptions(inversion="cubic")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Segmenter(options, tta=False)


def test_a_model_folder_that_would_run_code_is_refused_and_nothing_runs(test_bundle: Path, tmp_path: Path) -> None:
    """Issue 11.1: --model DIR/model.pt with a hostile model_config.json beside it."""
    import json
    import shutil

    marker = tmp_path / "EXECUTED"
    payload = f"$__import__('os').system('touch {marker}')"
    hostile: list[tuple[str, object]] = [
        ("hu_window", payload),
        ("norm", payload),
        ("network", payload),
        ("channels", [payload, 32]),
        ("network", {"_target_": "os.system", "command": f"touch {marker}"}),
        ("_target_", "os.system"),
        ("spacing", "@network_def"),
    ]
    config = json.loads((test_bundle / "models" / "model_config.json").read_text())
    for key, value in hostile:
        folder = tmp_path / f"model_{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        shutil.copy(test_bundle / "models" / "model.pt", folder / "model.pt")
        (folder / "model_config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(MedsegError) as caught:
            Segmenter(test_bundle, device="cpu", model_file=folder / "model.pt")
        message = str(caught.value)
        assert str(folder / "model_config.json") in message and key in message and "\n" not in message
    assert not marker.exists()


def test_a_resampled_grid_over_the_limit_is_refused_before_preprocessing(
    segmenter: Segmenter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11.5: the model grid's size is checked from the header geometry before the chain allocates it."""
    from tests.inference.helpers import body_phantom

    path = tmp_path / "coarse.nii.gz"
    sitk.WriteImage(body_phantom(size_xyz=(48, 40, 24), spacing=(20.0, 20.0, 40.0)), str(path))
    monkeypatch.setenv("MEDSEG_MAX_RESAMPLED_VOXELS", "100000")  # the model grid here: 205 x 171 x 384
    clock = StageClock()
    with pytest.raises(InputError, match=r"coarse\.nii\.gz.*MEDSEG_MAX_RESAMPLED_VOXELS") as caught:
        segmenter.segment(path, clock)
    assert "205x171x384" in str(caught.value)
    assert "preprocess" not in clock.seconds


def test_streamed_preprocessing_gives_the_chains_labels(
    segmenter: Segmenter, test_bundle: Path, tmp_path: Path
) -> None:
    """Issue 13.2: the default streams the scan onto the model grid from its int16 voxels; the chain transform by
    transform (preprocessing="chain") gives the same labels, on exactly the scan's grid."""
    from tests.inference.helpers import body_phantom

    oblique = sitk.VersorTransform((0.1, 0.2, 0.95), 0.2).GetMatrix()
    chain = Segmenter(test_bundle, device="cpu", preprocessing="chain")
    assert segmenter._streamed is not None and chain._streamed is None
    assert segmenter.settings()["preprocessing"] == "streamed" and chain.settings()["preprocessing"] == "chain"
    assert Segmenter(test_bundle, device="cpu", inversion="invertd")._streamed is None  # Invertd needs the trace
    for index, direction in enumerate([(-1, 0, 0, 0, -1, 0, 0, 0, 1), oblique]):
        path = tmp_path / f"phantom_{index}.nii.gz"
        sitk.WriteImage(body_phantom(size_xyz=(96, 80, 40), spacing=(1.1, 1.3, 2.7), direction=direction), str(path))
        streamed = segmenter.segment(path)
        _check_on_scan_grid(streamed.labels, path)
        expected = chain.segment(path)
        assert streamed.model_shape == expected.model_shape
        assert np.array_equal(sitk.GetArrayViewFromImage(streamed.labels), sitk.GetArrayViewFromImage(expected.labels))
    with pytest.raises(MedsegError, match="preprocessing must be one of"):
        Segmenter(test_bundle, device="cpu", preprocessing="fast")


@pytest.mark.data
@pytest.mark.slow
def test_streamed_preprocessing_on_real_scans(
    segmenter: Segmenter, test_bundle: Path, openkbp_images: list[Path], data_root: Path
) -> None:
    """An OpenKBP case and the 512 x 512 chest CT: the same labels either way, up to the voxels where the random
    test network's classes tie within float32 rounding (6 of 12.6 million on the chest CT; with the shipped model
    both scans come out identical)."""
    chain = Segmenter(test_bundle, device="cpu", preprocessing="chain")
    for path in (openkbp_images[0], data_root / "pyradiomics" / "lung1_image.nrrd"):
        streamed = segmenter.segment(path).labels
        _check_on_scan_grid(streamed, path)
        ours = sitk.GetArrayViewFromImage(streamed)
        expected = sitk.GetArrayFromImage(chain.segment(path).labels)
        assert np.mean(ours == expected) > 0.99999
        for label in segmenter.label_names:
            both = int(np.sum((ours == label) & (expected == label)))
            total = int(np.sum(ours == label) + np.sum(expected == label))
            assert total == 0 or 2 * both / total >= 0.999, segmenter.label_names[label]


def test_the_cpu_network_path_keeps_the_plain_fp32_masks(
    segmenter: Segmenter, test_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13.3: the default CPU path (channels-last, one window per thread) is exact: the same labels as the
    network run plainly with the bundle's window batch; "auto" records the precision that ran."""
    from medseg.inference import segmenter as segmenter_module
    from medseg.networks.factory import NetworkPath, supports_bf16
    from tests.inference.helpers import INFERENCE_SETTINGS, body_phantom

    bundle_batch = INFERENCE_SETTINGS["sw_batch_size"]
    assert segmenter.inferer.sw_batch_size == max(1, min(bundle_batch, torch.get_num_threads()))  # type: ignore[attr-defined]
    fixed = Segmenter(test_bundle, device="cpu", overrides={"sw_batch_size": 3})
    assert fixed.inferer.sw_batch_size == 3 and fixed.network_path.sw_batch_size is None  # type: ignore[attr-defined]
    path = tmp_path / "phantom.nii.gz"
    sitk.WriteImage(body_phantom(size_xyz=(96, 80, 40), spacing=(1.5, 1.5, 2.5)), str(path))
    fast = sitk.GetArrayFromImage(segmenter.segment(path).labels)
    plain_path = NetworkPath("fp32", False, None, "plain")
    monkeypatch.setattr(segmenter_module, "choose_network_path", lambda *args, **kwargs: plain_path)
    plain = Segmenter(test_bundle, device="cpu")
    assert plain.inferer.sw_batch_size == bundle_batch and plain._predictor is plain.network  # type: ignore[attr-defined]
    assert np.array_equal(sitk.GetArrayViewFromImage(plain.segment(path).labels), fast)
    monkeypatch.undo()
    auto = Segmenter(test_bundle, device="cpu", precision="auto")
    assert auto.settings()["precision"] == ("bf16" if supports_bf16("cpu") else "fp32")
