"""Read a label map with its geometry, and refuse to compare two label maps that do not share one voxel grid."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medseg.errors import InputError
from medseg.io.geometry import GRID_TOLERANCE_MM, Grid, grid_differences

GRID_TOLERANCE = GRID_TOLERANCE_MM  # mm for spacing and origin, unitless for direction cosines: the one grid rule


@dataclass(frozen=True)
class LabelMap:
    """A label map in SimpleITK's array order.

    Attributes:
        path: the file it was read from.
        array: integer labels, shape ``(Z, Y, X)`` (or ``(Y, X)`` for 2D), 0 = background.
        spacing: voxel size in mm in the array's axis order ``(z, y, x)``, i.e. SimpleITK's spacing reversed.
        size, origin, direction: SimpleITK's (x-first) grid description, for the grid check.
    """

    path: Path
    array: np.ndarray
    spacing: tuple[float, ...]
    size: tuple[int, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @property
    def diagonal_mm(self) -> float:
        """Length of the image's diagonal (size × spacing), the worst-case surface distance on this grid."""
        return float(np.sqrt(np.sum((np.asarray(self.size) * np.asarray(self.spacing[::-1])) ** 2)))

    @property
    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0


def read_label_map(path: str | Path) -> LabelMap:
    """Read a 2D/3D single-component integer label map with SimpleITK.

    Raises:
        InputError: unreadable file, more than one component (e.g. a multi-layer ``.seg.nrrd``), not 2D/3D,
            non-integer values, or negative labels.
    """
    path = Path(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise InputError(path, f"cannot be read as a label map: {str(err).strip().splitlines()[-1]}") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            path,
            f"has {image.GetNumberOfComponentsPerPixel()} components per voxel; a label map has one "
            "(overlapping .seg.nrrd layers must be merged first)",
        )
    if image.GetDimension() not in (2, 3):
        raise InputError(path, f"is {image.GetDimension()}D; expected a 2D or 3D label map")
    array = sitk.GetArrayFromImage(image)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise InputError(path, f"holds non-integer values ({image.GetPixelIDTypeAsString()}): not a label map")
        array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise InputError(path, f"holds negative label {int(array.min())}")
    return LabelMap(
        path=path,
        array=array,
        spacing=tuple(float(s) for s in reversed(image.GetSpacing())),
        size=tuple(int(s) for s in image.GetSize()),
        origin=tuple(float(o) for o in image.GetOrigin()),
        direction=tuple(float(d) for d in image.GetDirection()),
    )


def _grid(label_map: LabelMap) -> Grid:
    return Grid(label_map.size, tuple(reversed(label_map.spacing)), label_map.origin, label_map.direction)


def check_same_grid(pred: LabelMap, ref: LabelMap, tolerance: float = GRID_TOLERANCE) -> None:
    """Raise unless ``pred`` and ``ref`` lie on the same voxel grid in physical space.

    Size must match exactly; spacing and origin within ``tolerance`` mm; direction cosines within ``tolerance``.
    Comparing arrays of two different grids would score voxels that are not at the same place in the patient.

    Raises:
        InputError: naming the prediction file, the reference file and every property that differs.
    """
    problems = grid_differences(_grid(pred), _grid(ref), tolerance_mm=tolerance, direction_tolerance=tolerance)
    if problems:
        raise InputError(
            pred.path,
            f"grid differs from reference {ref.path}: {'; '.join(problems)}; resample the prediction onto the "
            "reference grid first",
        )
