"""The Python API: ``medseg.segment(scan)`` segments one CT scan and returns the label map on the scan's own grid
with each organ's volume.

    import medseg

    result = medseg.segment("patient/CT")               # DICOM series or study folder, NIfTI, NRRD, MHA file
    result.labels                                       # SimpleITK uint8 image on the scan's exact grid
    result.volumes_ml                                   # {"Brainstem": 26.1, ...}
    result = medseg.segment(sitk_image)                 # an in-memory SimpleITK image (HU)
    result = medseg.segment(nibabel.load("ct.nii.gz"))  # an in-memory nibabel image; result.to_nifti() gives the
                                                        # label map back as nibabel, with the input's affine

What runs is :class:`medseg.inference.segmenter.Segmenter`, the ``medseg segment`` one: same reader and geometry
guard, transforms, sliding window, inversion and postprocessing, so the voxels are those the command writes. The
segmenter is loaded on the first call and kept for the process (one per distinct set of options); calls on one
segmenter are serialised by a lock, so threads may share it.

An in-memory image is written to a private temporary folder (MetaImage for SimpleITK, which keeps every bit of
the geometry; NIfTI for nibabel) and read back through the same reader a file goes through, so it gets the same
checks (3D, one value per voxel, finite, plausible HU); the folder is removed afterwards. Errors name the
in-memory image rather than the temporary file.
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medseg.errors import MedsegError
from medseg.inference.bundle import resolve_bundle
from medseg.io.geometry import ras_affine
from medseg.reporting.volumes import image_volumes_ml

if TYPE_CHECKING:
    from medseg.inference.options import Precision
    from medseg.inference.segmenter import Segmenter

ScanInput = Union[str, "os.PathLike[str]", sitk.Image, nib.spatialimages.SpatialImage]

# How in-memory inputs are named in error messages, instead of their temporary file.
SITK_NAME = "<in-memory SimpleITK image>"
NIBABEL_NAME = "<in-memory nibabel image>"


@dataclass
class SegmentationResult:
    """One segmented scan.

    Attributes:
        labels: uint8 label map, exactly on the scan's grid (size, spacing, origin, direction); 0 is background.
        volumes_ml: organ name -> volume in mL (0.0 for an organ that was not found), in label order.
        label_names: label value -> organ name (background left out).
        image: the scan as medseg read it (SimpleITK, HU): the chosen series of a DICOM folder, say.
        warnings: what the reader noticed or repaired, one sentence each.
        seconds: wall seconds per stage (read, preprocess, inference, invert, postprocess).
        source_affine: the nibabel input's affine, for :meth:`to_nifti`; ``None`` for other inputs.
    """

    labels: sitk.Image
    volumes_ml: dict[str, float]
    label_names: dict[int, str]
    image: sitk.Image
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    source_affine: np.ndarray | None = None

    def to_nifti(self) -> nib.Nifti1Image:
        """The label map as a nibabel image: uint8 (x, y, z) array with the nibabel input's own affine, else the
        scan's voxel-to-RAS affine (as nibabel and MONAI define it)."""
        array = np.ascontiguousarray(sitk.GetArrayFromImage(self.labels).T)
        affine = self.source_affine if self.source_affine is not None else ras_affine(self.labels)
        nifti = nib.Nifti1Image(array, affine)
        nifti.set_qform(affine, code=1)
        nifti.set_sform(affine, code=1)
        return nifti


@dataclass
class _Loaded:
    """A loaded segmenter and the lock that serialises its calls (it keeps per-call state)."""

    segmenter: Segmenter
    lock: threading.Lock = field(default_factory=threading.Lock)


@functools.lru_cache(maxsize=4)
def _loaded(
    bundle_dir: Path,
    model_file: Path | None,
    device: str,
    tta: bool,
    postprocess: bool,
    fix_geometry: bool,
    precision: Precision,
) -> _Loaded:
    from medseg.inference.segmenter import Segmenter  # torch and MONAI: only when a scan is segmented

    return _Loaded(
        Segmenter(
            bundle_dir,
            device=device,
            tta=tta,
            postprocess=postprocess,
            fix_geometry=fix_geometry,
            model_file=model_file,
            precision=precision,
        )
    )


def get_segmenter(
    *,
    bundle: str | os.PathLike[str] | None = None,
    model_file: str | os.PathLike[str] | None = None,
    device: str = "auto",
    tta: bool = False,
    postprocess: bool = True,
    fix_geometry: bool = False,
    precision: Precision = "fp32",
) -> Segmenter:
    """The process's :class:`~medseg.inference.segmenter.Segmenter` for these options, loaded on first use.

    Raises:
        MedsegError: the bundle, its metadata or its weights are missing or do not fit together.
    """
    return _load(bundle, model_file, device, tta, postprocess, fix_geometry, precision).segmenter


def _load(
    bundle: str | os.PathLike[str] | None,
    model_file: str | os.PathLike[str] | None,
    device: str,
    tta: bool,
    postprocess: bool,
    fix_geometry: bool,
    precision: Precision,
) -> _Loaded:
    model = Path(model_file).expanduser().resolve() if model_file is not None else None
    return _loaded(resolve_bundle(bundle), model, device, tta, postprocess, fix_geometry, precision)


def clear_cache() -> None:
    """Forget the loaded segmenters (the next :func:`segment` loads the model again, e.g. after new weights)."""
    _loaded.cache_clear()


@contextmanager
def _as_file(scan: ScanInput) -> Iterator[tuple[Path, str | None]]:
    """A path to read for ``scan``, and the name errors should give instead of that path (``None``: the path's
    own name)."""
    if isinstance(scan, (str, os.PathLike)):
        yield Path(scan), None
        return
    if isinstance(scan, sitk.Image):
        with tempfile.TemporaryDirectory(prefix="medseg-api-") as folder:
            path = Path(folder) / "scan.mha"
            _write_quietly(scan, path)
            yield path, SITK_NAME
        return
    if isinstance(scan, nib.spatialimages.SpatialImage):
        nifti = scan if isinstance(scan, nib.Nifti1Image) else nib.Nifti1Image(np.asanyarray(scan.dataobj), scan.affine)
        with tempfile.TemporaryDirectory(prefix="medseg-api-") as folder:
            path = Path(folder) / "scan.nii"
            nib.save(nifti, path)
            yield path, NIBABEL_NAME
        return
    raise TypeError(
        "medseg.segment takes a path (image file, DICOM file, series or study folder), a SimpleITK image or a "
        f"nibabel image, not {type(scan).__name__}"
        + (
            ": a bare array has no geometry; wrap it in a SimpleITK image with its spacing, origin and direction"
            if isinstance(scan, np.ndarray)
            else ""
        )
    )


def _write_quietly(image: sitk.Image, path: Path) -> None:
    """Write ``image`` uncompressed without ITK's warnings about metadata MetaImage cannot hold (a NIfTI's
    ``descrip``...): only the voxels and the geometry are read back."""
    warn_before = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        sitk.WriteImage(image, str(path), useCompression=False)
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warn_before)


def _renamed(err: MedsegError, path: Path, name: str) -> MedsegError:
    """``err`` naming ``name`` where it named the temporary file ``path``."""
    if err.path is None or Path(err.path) != path:
        return err
    return type(err)(name, err.problem)


def segment(
    scan: ScanInput,
    *,
    bundle: str | os.PathLike[str] | None = None,
    model_file: str | os.PathLike[str] | None = None,
    device: str = "auto",
    tta: bool = False,
    postprocess: bool = True,
    fix_geometry: bool = False,
    precision: Precision = "fp32",
) -> SegmentationResult:
    """Segment one CT scan with the bundle's model (see the module notes).

    Args:
        scan: a path (NIfTI, NRRD or MHA file; a DICOM file, series folder or study folder, whose CT series is
            chosen as ``medseg segment`` chooses it), a SimpleITK image in HU, or a nibabel image in HU.
        bundle: MONAI bundle folder (default ``$MEDSEG_BUNDLE``, else the bundle shipped with medseg).
        model_file: weights to use instead of the bundle's ``models/model.pt``.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        tta: average mirrored predictions.
        postprocess: keep each organ's largest connected component and drop specks.
        fix_geometry: repair uneven/missing slices, tilt and header disagreements instead of refusing the scan.
        precision: ``"fp32"`` (exact), ``"bf16"`` (faster where the hardware has bfloat16) or ``"auto"`` (bf16
            where the hardware has it, else fp32).

    Returns:
        The label map on the scan's grid, organ volumes, the scan as read, warnings and stage timings.

    Raises:
        MedsegError: the scan cannot be read or its geometry is unsafe (one line naming the file, or the in-memory
            image, and the problem); the bundle or its weights cannot be loaded.
        TypeError: ``scan`` is none of the accepted kinds.
    """
    loaded = _load(bundle, model_file, device, tta, postprocess, fix_geometry, precision)
    source_affine = None
    if isinstance(scan, nib.spatialimages.SpatialImage):
        if scan.affine is None:
            raise MedsegError(NIBABEL_NAME, "has no affine: where its voxels are in the patient is unknown")
        source_affine = np.array(scan.affine, dtype=float)
    with _as_file(scan) as (path, name):
        try:
            with loaded.lock:
                segmentation = loaded.segmenter.segment(path)
        except MedsegError as err:
            renamed = err if name is None else _renamed(err, path, name)
            if renamed is err:
                raise
            raise renamed from err
    labels = segmentation.labels
    if isinstance(scan, sitk.Image):
        _check_same_grid(labels, scan)
    names = dict(loaded.segmenter.label_names)
    volumes = image_volumes_ml(labels, names)
    return SegmentationResult(
        labels=labels,
        volumes_ml={names[value]: volume for value, volume in volumes.items()},
        label_names=names,
        image=segmentation.scan.image,
        warnings=list(segmentation.scan.warnings),
        seconds=dict(segmentation.seconds),
        source_affine=source_affine,
    )


def _check_same_grid(labels: sitk.Image, scan: sitk.Image) -> None:
    """The label map of a 3D in-memory image is on that image's grid to the bit (MetaImage keeps every digit)."""
    if scan.GetDimension() != 3:  # a 4D image with one time point: the reader dropped the time axis
        return
    from medseg.io.geometry import grid_differences

    differences = grid_differences(labels, scan, tolerance_mm=0.0, direction_tolerance=0.0)
    if differences:
        raise RuntimeError(f"medseg.segment: the label map's grid differs from the image's: {'; '.join(differences)}")
