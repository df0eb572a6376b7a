"""The random half of the training chain, chosen by the bundle's options: patch sampling, then augmentation.

``bundles/ct_unet/configs/train.json`` takes the deterministic chain (read, orient, resample, crop, window) from
:mod:`medseg.transforms.preprocessing` and calls :func:`training_transforms` for the rest, so the config carries no
switch per variant. Everything is a
stock MONAI transform.

Patch centres: ``"classes"`` draws them from every class present in the case alike (``RandCropByLabelClassesd``).
An organ that was not contoured in a case has no voxels in its label map, so it is never a centre there: in a
partially contoured case the centres come from the contoured organs and background only. ``"posneg"`` is MONAI's
foreground / background sampling (``RandCropByPosNegLabeld``).
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.transforms import (
    MapTransform,
    Rand2DElasticd,
    Rand3DElasticd,
    RandAffined,
    RandCropByLabelClassesd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
    SpatialPadd,
    SqueezeDimd,
)

KEYS = ("image", "label")
MODES = ("bilinear", "nearest")


def patch_sampling(
    spatial_dims: int,
    patch_size: Sequence[int],
    crop: str = "classes",
    num_samples: int = 2,
    num_classes: int = 2,
    ratios: Sequence[float] | None = None,
    pos: float = 2,
    neg: float = 1,
) -> list[MapTransform]:
    """Pad to the patch, then draw ``num_samples`` patches (3D) or axial slices (2D / 2.5D) per case."""
    size = [int(s) for s in patch_size] + ([1] if spatial_dims == 2 else [])
    keys, samples = list(KEYS), int(num_samples)
    sampler: MapTransform
    if crop == "posneg":
        sampler = RandCropByPosNegLabeld(
            keys, "label", size, pos=pos, neg=neg, num_samples=samples, image_key="image", image_threshold=0
        )
    else:
        sampler = RandCropByLabelClassesd(
            keys,
            "label",
            size,
            ratios=None if ratios is None else [float(r) for r in ratios],
            num_classes=int(num_classes),
            num_samples=samples,
            image_key="image",
            image_threshold=0,
            warn=False,
        )
    chain: list[MapTransform] = [SpatialPadd(keys=list(KEYS), spatial_size=size), sampler]
    if spatial_dims == 2:
        chain.append(SqueezeDimd(keys=list(KEYS), dim=-1))
    return chain


def augmentation(
    spatial_dims: int,
    patch_size: Sequence[int],
    flip_prob: float = 0.5,
    rot90_prob: float = 0.0,
    affine_prob: float = 0.2,
    elastic_prob: float = 0.1,
    intensity_prob: float = 0.5,
) -> list[MapTransform]:
    """Flips (never left-right: that would swap paired organs), rotations, affine, elastic and intensity jitter.

    Axis 0 is RAS x (left-right) after ``Orientationd("RAS")``, so flips run along the other axes only.
    """
    keys, flips = list(KEYS), [1, 2] if spatial_dims == 3 else [1]
    chain: list[MapTransform] = [RandFlipd(keys=keys, spatial_axis=axis, prob=flip_prob) for axis in flips]
    chain.append(RandRotate90d(keys=keys, prob=rot90_prob, max_k=3, spatial_axes=(0, 1)))
    if spatial_dims == 3:
        chain.append(
            RandAffined(
                keys=keys,
                prob=affine_prob,
                rotate_range=[0.26] * 3,
                scale_range=[0.15] * 3,
                mode=MODES,
                padding_mode="zeros",
            )
        )
        chain.append(
            Rand3DElasticd(
                keys=keys,
                prob=elastic_prob,
                sigma_range=(5, 7),
                magnitude_range=(100, 300),
                mode=MODES,
                padding_mode="zeros",
            )
        )
    else:
        chain.append(
            RandAffined(
                keys=keys,
                prob=affine_prob,
                rotate_range=[0.26],
                scale_range=[0.15, 0.15],
                mode=MODES,
                padding_mode="zeros",
            )
        )
        chain.append(
            Rand2DElasticd(
                keys=keys,
                prob=elastic_prob,
                spacing=(max(2, int(patch_size[0]) // 2), max(2, int(patch_size[1]) // 2)),
                magnitude_range=(0, 2),
                mode=MODES,
                padding_mode="zeros",
            )
        )
    chain.append(RandScaleIntensityd(keys="image", factors=0.1, prob=intensity_prob))
    chain.append(RandShiftIntensityd(keys="image", offsets=0.1, prob=intensity_prob))
    return chain


def training_transforms(
    spatial_dims: int,
    patch_size: Sequence[int],
    crop: str = "classes",
    num_samples: int = 2,
    num_classes: int = 2,
    ratios: Sequence[float] | None = None,
    pos: float = 2,
    neg: float = 1,
    augment: bool = True,
    flip_prob: float = 0.5,
    rot90_prob: float = 0.0,
    affine_prob: float = 0.2,
    elastic_prob: float = 0.1,
    intensity_prob: float = 0.5,
) -> list[MapTransform]:
    """:func:`patch_sampling`, then :func:`augmentation` when ``augment`` is true."""
    chain = patch_sampling(spatial_dims, patch_size, crop, num_samples, num_classes, ratios, pos, neg)
    if augment:
        chain += augmentation(
            spatial_dims, patch_size, flip_prob, rot90_prob, affine_prob, elastic_prob, intensity_prob
        )
    return chain
