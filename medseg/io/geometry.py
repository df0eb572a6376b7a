"""Geometry guard: find what is unsafe in a scan's geometry, and repair it only when asked.

For a DICOM series, :func:`plan_slices` looks at every slice's ImagePositionPatient, ImageOrientationPatient,
PixelSpacing and Rows/Columns and reports (as :class:`GeometryProblem`):

* ``mixed_orientation`` / ``mixed_pixel_spacing`` / ``mixed_size``: slices disagree (repair: keep the largest
  group of identical slices, when there is one);
* ``duplicate``: two slices at one position (repair: keep the lowest InstanceNumber of each position);
* ``tilt``: slice positions step along a line that is not the slice normal (gantry tilt; the volume is sheared;
  repair: resample onto a grid along the normal); ``not_collinear``: positions are not on one line at all
  (never repaired);
* ``gap``: a step of 1.5 or more times the median step, i.e. missing slices (repair: gaps of up to
  :data:`MAX_FILLED_SLICES` missing slices are filled by linear interpolation; across a wider gap the series is
  split and the **largest contiguous block is kept**, because interpolating across centimetres invents anatomy;
  ``monai/CT_DICOM`` (z = -99.48, 103.02, 104.27, 105.52) keeps the 3 slices at 103.02-105.52 mm, 1.25 mm apart);
* ``uneven``: steps that differ by more than :func:`grid_tolerance` (repair: linear resampling onto a regular
  grid between the first and last slice at about the median step).

For NIfTI, :func:`check_nifti_header` reports ``qform_sform`` (both set, different), ``sform_shear`` (a shear ITK
cannot represent; never repaired) and ``no_orientation`` (both codes 0); repair adopts nibabel's affine, i.e.
what nibabel and MONAI's NibabelReader use.

Without repair every problem is refused by the reader with :class:`~medseg.errors.GeometryError`; with repair
each problem and each action is recorded in the scan's warnings.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import nibabel as nib
import numpy as np
import SimpleITK as sitk

# Direction cosines of two slices may differ by this much and still count as one orientation (DICOM writers
# round IOP to 5-6 decimals; 1e-4 rad moves the edge of a 500 mm field of view by 0.05 mm).
ORIENTATION_TOLERANCE = 1e-4
PIXEL_SPACING_TOLERANCE_MM = 1e-4
# A step shorter than this fraction of the median step is a duplicate position, not a slice.
DUPLICATE_FRACTION = 0.05
# A step this many times the median step means missing slices.
GAP_FACTOR = 1.5
# Gaps of up to this many missing slices are filled by interpolation under repair; wider ones split the series.
MAX_FILLED_SLICES = 2
# Value outside the field of view after de-shearing a tilted series: air.
AIR_HU = -1024.0


def grid_tolerance(step_mm: float) -> float:
    """How far (mm) a slice may sit from the regular grid: a tenth of the step, at least 0.1 mm. This absorbs
    the rounding of ImagePositionPatient (some scanners write 0.1 mm) and is far below what later resampling
    notices; real uneven series differ by half a millimetre or more."""
    return max(0.1, 0.1 * step_mm)


def tilt_tolerance(pixel_spacing_mm: float) -> float:
    """How far (mm) a slice position may drift in-plane from the normal line: a tenth of a pixel, >= 0.02 mm."""
    return max(0.02, 0.1 * pixel_spacing_mm)


@dataclass(frozen=True)
class GeometryProblem:
    """One thing wrong with a scan's geometry. ``kind`` is a stable identifier (see the module docstring)."""

    kind: str
    message: str
    repairable: bool = True


@dataclass
class SliceStack:
    """How the slices of one series stack into a volume, and what is wrong with them.

    ``order`` lists the indices (into the arrays given to :func:`plan_slices`) of the slices to read, sorted
    along the normal, after the repairs that drop slices. ``offsets`` (shape (n,)) are their positions along the
    normal in mm. ``target_offsets`` (shape (m,)) is the regular grid to resample onto, ``None`` when the kept
    slices are regular. ``shear`` (shape (3,)) is the in-plane shift of the slice positions per mm along the
    normal (non-zero for gantry tilt). ``actions`` says what a repair does, one line each.
    """

    order: list[int]
    row: np.ndarray
    column: np.ndarray
    normal: np.ndarray
    pixel_spacing: tuple[float, float]
    offsets: np.ndarray
    origin: np.ndarray
    shear: np.ndarray
    target_offsets: np.ndarray | None
    problems: list[GeometryProblem] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)

    @property
    def grid_offsets(self) -> np.ndarray:
        """Offsets (mm along the normal) of the output slices: shape (m,)."""
        return self.offsets if self.target_offsets is None else self.target_offsets

    @property
    def step(self) -> float:
        """Output slice spacing (mm): the mean step of the output grid, as ITK's series reader computes it."""
        grid = self.grid_offsets
        return float((grid[-1] - grid[0]) / (len(grid) - 1))

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the row, column and normal directions (LPS)."""
        return np.column_stack([self.row, self.column, self.normal])

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel spacing in ITK (x, y, z) order: between columns, between rows, between slices (mm)."""
        return (self.pixel_spacing[1], self.pixel_spacing[0], self.step)

    @property
    def is_tilted(self) -> bool:
        return bool(np.any(self.shear != 0))

    @property
    def needs_resampling(self) -> bool:
        return self.target_offsets is not None or self.is_tilted


def _fmt(values: Sequence[float] | np.ndarray) -> str:
    return "[" + ", ".join(f"{float(v):.6g}" for v in values) + "]"


def _group(values: np.ndarray, tolerance: float) -> list[list[int]]:
    """Indices of ``values`` (shape (n, k)) grouped by equality within ``tolerance``, largest group first."""
    groups: list[list[int]] = []
    for index, value in enumerate(values):
        for members in groups:
            if np.all(np.abs(values[members[0]] - value) <= tolerance):
                members.append(index)
                break
        else:
            groups.append([index])
    return sorted(groups, key=len, reverse=True)


def _consistency_problems(
    orientations: np.ndarray, pixel_spacings: np.ndarray, sizes: np.ndarray
) -> tuple[list[GeometryProblem], list[int], list[str]]:
    """Problems with slices that disagree, and the indices of the largest group of slices that agree."""
    problems = []
    checks = (
        ("mixed_orientation", "ImageOrientationPatient", orientations, ORIENTATION_TOLERANCE),
        ("mixed_pixel_spacing", "PixelSpacing", pixel_spacings, PIXEL_SPACING_TOLERANCE_MM),
        ("mixed_size", "Rows/Columns", sizes, 0.0),
    )
    for kind, tag, values, tolerance in checks:
        groups = _group(values, tolerance)
        if len(groups) > 1:
            examples = " and ".join(f"{_fmt(values[g[0]])} ({len(g)} slices)" for g in groups[:2])
            problems.append(GeometryProblem(kind, f"{tag} differs between slices: {len(groups)} values, {examples}"))
    if not problems:
        return [], list(range(len(orientations))), []
    combined = np.concatenate([orientations, pixel_spacings, sizes], axis=1)
    groups = _group(combined, ORIENTATION_TOLERANCE)
    if len(groups) > 1 and len(groups[0]) == len(groups[1]):
        problems.append(
            GeometryProblem(
                "no_majority",
                f"no majority among the slices: two groups of {len(groups[0])} slices with different geometry",
                repairable=False,
            )
        )
    kept = sorted(groups[0])
    dropped = len(orientations) - len(kept)
    actions = [f"kept the {len(kept)} slices that share orientation, pixel spacing and size; dropped {dropped}"]
    return problems, kept, actions


def plan_slices(
    positions: Sequence[Sequence[float]] | np.ndarray,
    orientations: Sequence[Sequence[float]] | np.ndarray,
    pixel_spacings: Sequence[Sequence[float]] | np.ndarray,
    sizes: Sequence[Sequence[int]] | np.ndarray,
) -> SliceStack:
    """Work out how DICOM slices stack into a volume and list what is wrong with their geometry.

    Args:
        positions: ImagePositionPatient per slice, shape (n, 3), mm (LPS).
        orientations: ImageOrientationPatient per slice, shape (n, 6).
        pixel_spacings: PixelSpacing per slice, shape (n, 2), DICOM order (between rows, between columns).
        sizes: (Rows, Columns) per slice, shape (n, 2).

    The input order breaks ties: of two slices at one position the earlier is kept (pass slices sorted by
    InstanceNumber). The returned plan is what a repair would read; ``problems`` is empty for a clean series.
    """
    positions_ = np.asarray(positions, dtype=float).reshape(-1, 3)
    orientations_ = np.asarray(orientations, dtype=float).reshape(-1, 6)
    pixel_spacings_ = np.asarray(pixel_spacings, dtype=float).reshape(-1, 2)
    sizes_ = np.asarray(sizes, dtype=float).reshape(-1, 2)
    problems, kept, actions = _consistency_problems(orientations_, pixel_spacings_, sizes_)

    orientation = orientations_[kept[0]]
    row = orientation[:3] / np.linalg.norm(orientation[:3])
    column = orientation[3:] / np.linalg.norm(orientation[3:])
    if abs(float(row @ column)) > 1e-3:
        problems.append(
            GeometryProblem(
                "bad_orientation",
                f"ImageOrientationPatient {_fmt(orientation)}: row and column directions are not perpendicular",
                repairable=False,
            )
        )
    normal = np.cross(row, column)
    normal /= np.linalg.norm(normal)
    pixel_spacing = (float(pixel_spacings_[kept[0], 0]), float(pixel_spacings_[kept[0], 1]))

    kept_arr = np.asarray(kept)
    offsets = positions_[kept_arr] @ normal
    order = kept_arr[np.lexsort((kept_arr, offsets))]  # along the normal; input order among equal offsets
    offsets = positions_[order] @ normal
    order, offsets = _drop_duplicates(order, offsets, problems, actions)

    shear = np.zeros(3)
    if len(order) >= 2:
        shear = _shear(positions_[order], offsets, normal, min(pixel_spacing), problems, actions)
        order, offsets = _check_steps(order, offsets, problems, actions)
    else:
        problems.append(GeometryProblem("too_few_slices", "fewer than 2 distinct slice positions", repairable=False))
    target = _regular_target(offsets, problems, actions) if len(order) >= 2 else None
    origin = positions_[order[0]] if len(order) else positions_[0]
    return SliceStack(
        order=[int(i) for i in order],
        row=row,
        column=column,
        normal=normal,
        pixel_spacing=pixel_spacing,
        offsets=offsets,
        origin=np.asarray(origin, dtype=float),
        shear=shear,
        target_offsets=target,
        problems=problems,
        actions=actions,
    )


def _drop_duplicates(
    order: np.ndarray, offsets: np.ndarray, problems: list[GeometryProblem], actions: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    steps = np.diff(offsets)
    real_steps = steps[steps > 1e-3]
    tolerance = max(1e-3, DUPLICATE_FRACTION * float(np.median(real_steps))) if real_steps.size else 1e-3
    duplicate = steps <= tolerance
    if not duplicate.any():
        return order, offsets
    if duplicate.all():
        problems.append(
            GeometryProblem(
                "duplicate",
                f"all {len(order)} slices lie at one position ({offsets[0]:.6g} mm along the normal): a time "
                "series or repeated acquisition, not a volume",
                repairable=False,
            )
        )
        return order[:1], offsets[:1]
    run = np.concatenate([[0], np.cumsum(~duplicate)])
    keep = [int(np.flatnonzero(run == r)[np.argmin(order[run == r])]) for r in range(int(run[-1]) + 1)]
    at = ", ".join(f"{offsets[i]:.6g}" for i in np.flatnonzero(duplicate)[:3])
    problems.append(
        GeometryProblem(
            "duplicate",
            f"duplicate slice positions: {int(duplicate.sum())} slice(s) repeat the position of another "
            f"(at {at} mm along the normal)",
        )
    )
    actions.append(f"dropped {len(order) - len(keep)} duplicate slice(s), keeping the lowest InstanceNumber")
    return order[keep], offsets[keep]


def _shear(
    positions: np.ndarray,
    offsets: np.ndarray,
    normal: np.ndarray,
    pixel_spacing: float,
    problems: list[GeometryProblem],
    actions: list[str],
) -> np.ndarray:
    """In-plane shift per mm along the normal of the slice positions (zero without tilt): shape (3,)."""
    along = offsets - offsets[0]
    in_plane = positions - positions[0] - np.outer(along, normal)  # (n, 3)
    tolerance = tilt_tolerance(pixel_spacing)
    drift = float(np.linalg.norm(in_plane, axis=1).max())
    if drift <= tolerance:
        return np.zeros(3)
    shear = in_plane.T @ along / float(along @ along)
    residual = float(np.linalg.norm(in_plane - np.outer(along, shear), axis=1).max())
    if residual > tolerance:
        problems.append(
            GeometryProblem(
                "not_collinear",
                f"slice positions do not lie on one line (a slice is {residual:.3g} mm off the best line): "
                "the slices cannot be stacked into one volume",
                repairable=False,
            )
        )
        return np.zeros(3)
    angle = float(np.degrees(np.arctan(np.linalg.norm(shear))))
    problems.append(
        GeometryProblem(
            "tilt",
            f"gantry tilt: slice positions run {angle:.3g} degrees off the slice normal (in-plane drift "
            f"{drift:.3g} mm over the series), so the stack is sheared",
        )
    )
    actions.append(f"de-sheared the {angle:.3g} degree tilt by resampling along the slice normal (linear, air outside)")
    return shear


def _check_steps(
    order: np.ndarray, offsets: np.ndarray, problems: list[GeometryProblem], actions: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Report gaps; keep the largest block between gaps too wide to fill."""
    steps = np.diff(offsets)
    median = float(np.median(steps))
    ratio = steps / median
    gaps = np.flatnonzero(ratio >= GAP_FACTOR)
    if gaps.size == 0:
        return order, offsets
    listing = "; ".join(
        f"{steps[g]:.4g} mm between {offsets[g]:.6g} and {offsets[g + 1]:.6g} (~{round(ratio[g]) - 1} missing)"
        for g in gaps[:3]
    )
    problems.append(
        GeometryProblem(
            "gap",
            f"missing slices: {gaps.size} gap(s) wider than {GAP_FACTOR} times the median step {median:.4g} mm "
            f"({listing}; positions in mm along the normal)",
        )
    )
    too_wide = gaps[np.round(ratio[gaps]) - 1 > MAX_FILLED_SLICES]
    if too_wide.size == 0:
        return order, offsets
    bounds = np.concatenate([[0], too_wide + 1, [len(order)]])
    blocks = [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
    blocks.sort(key=lambda ab: ab[1] - ab[0], reverse=True)
    (start, stop), runner_up = blocks[0], blocks[1]
    if stop - start == runner_up[1] - runner_up[0]:
        problems.append(
            GeometryProblem(
                "gap",
                f"the gaps split the series into equally large blocks of {stop - start} slices: no block to prefer",
                repairable=False,
            )
        )
    if stop - start < 2:
        problems.append(GeometryProblem("gap", "no two neighbouring slices are contiguous", repairable=False))
    actions.append(
        f"kept the largest contiguous block of {stop - start} slices ({offsets[start]:.6g} to "
        f"{offsets[stop - 1]:.6g} mm along the normal); dropped {len(order) - (stop - start)} slice(s) beyond "
        f"gap(s) of more than {MAX_FILLED_SLICES} missing slices rather than invent anatomy across them"
    )
    return order[start:stop], offsets[start:stop]


def _regular_target(offsets: np.ndarray, problems: list[GeometryProblem], actions: list[str]) -> np.ndarray | None:
    """The regular grid to resample onto, or ``None`` when the slices already are on one."""
    steps = np.diff(offsets)
    median = float(np.median(steps))
    extent = float(offsets[-1] - offsets[0])
    regular = offsets[0] + extent * np.arange(len(offsets)) / (len(offsets) - 1)
    deviation = float(np.abs(offsets - regular).max())
    tolerance = grid_tolerance(median)
    gapped = bool(np.any(steps / median >= GAP_FACTOR))
    if deviation <= tolerance and not gapped:
        return None
    uneven = steps[steps / median < GAP_FACTOR]
    if not gapped or float(np.abs(uneven - median).max(initial=0.0)) > tolerance:
        problems.append(
            GeometryProblem(
                "uneven",
                f"uneven slice spacing: steps from {steps.min():.4g} to {steps.max():.4g} mm (median {median:.4g}); "
                f"a slice sits {deviation:.3g} mm off the regular grid (tolerance {tolerance:.3g} mm)",
            )
        )
    count = round(extent / median) + 1
    actions.append(
        f"resampled {len(offsets)} slices onto {count} slices every {extent / (count - 1):.4g} mm "
        "(linear interpolation between neighbouring slices)"
    )
    return offsets[0] + extent * np.arange(count) / (count - 1)


def resample_stack(stack_image: sitk.Image, stack: SliceStack) -> sitk.Image:
    """Put the slices of ``stack.order`` (read in that order; size (columns, rows, n)) onto the regular,
    unsheared grid of ``stack``: interpolate along the normal onto ``target_offsets`` and undo gantry tilt.

    Returns float32 when it interpolates; otherwise the input voxels with the exact geometry of the plan.
    SimpleITK cannot hold an irregular grid, so the interpolation along the normal is done here in numpy
    (the same linear weights a resampler would use); the de-shearing is a SimpleITK resample.
    """
    image = stack_image
    if stack.target_offsets is not None:
        slices = sitk.GetArrayViewFromImage(stack_image)  # (n, rows, columns)
        offsets, targets = stack.offsets, stack.target_offsets
        below = np.clip(np.searchsorted(offsets, targets, side="right") - 1, 0, len(offsets) - 2)
        weight = ((targets - offsets[below]) / (offsets[below + 1] - offsets[below])).astype(np.float32)
        volume = np.empty((len(targets), *slices.shape[1:]), dtype=np.float32)
        for k, (j, w) in enumerate(zip(below, weight, strict=True)):
            volume[k] = slices[j] * (1 - w) + slices[j + 1].astype(np.float32) * w
        image = sitk.GetImageFromArray(volume)
    image.SetOrigin(tuple(float(v) for v in stack.origin))
    if not stack.is_tilted:
        image.SetSpacing(stack.spacing)
        image.SetDirection(tuple(float(v) for v in stack.direction.ravel()))
        return image
    # The tilted stack is a regular grid along (normal + shear): describe it as such, then resample onto the
    # orthogonal grid along the normal with the same origin, spacing and size.
    slope = stack.normal + stack.shear
    sheared = np.column_stack([stack.row, stack.column, slope / np.linalg.norm(slope)])
    image.SetSpacing((stack.spacing[0], stack.spacing[1], stack.step * float(np.linalg.norm(slope))))
    image.SetDirection(tuple(float(v) for v in sheared.ravel()))
    return sitk.Resample(
        image,
        image.GetSize(),
        sitk.Transform(),
        sitk.sitkLinear,
        image.GetOrigin(),
        stack.spacing,
        tuple(float(v) for v in stack.direction.ravel()),
        AIR_HU,
        sitk.sitkFloat32,
    )


def check_nifti_header(header: nib.Nifti1Header) -> list[GeometryProblem]:
    """Problems with a NIfTI header's orientation: qform and sform both set and different, a sheared sform, or
    neither set. (Repair adopts nibabel's ``affine``: the sform when set, which is what MONAI uses.)"""
    problems = []
    qform, qcode = header.get_qform(coded=True)
    sform, scode = header.get_sform(coded=True)
    if not qcode and not scode:
        problems.append(
            GeometryProblem(
                "no_orientation",
                "neither qform nor sform is set (both codes 0): the orientation is unknown, and SimpleITK and "
                "nibabel guess differently",
            )
        )
    if scode:
        linear = sform[:3, :3] / np.linalg.norm(sform[:3, :3], axis=0)
        off_diagonal = np.abs(linear.T @ linear - np.eye(3)).max()
        if off_diagonal > 1e-4:
            problems.append(
                GeometryProblem(
                    "sform_shear",
                    f"the sform has shear (its axes are {np.degrees(np.arcsin(min(off_diagonal, 1.0))):.3g} degrees "
                    "from perpendicular), which ITK and MONAI's direction matrix cannot represent",
                    repairable=False,
                )
            )
    if qcode and scode and not affines_match(qform, sform):
        problems.append(
            GeometryProblem(
                "qform_sform",
                f"qform and sform disagree (qform origin {_fmt(qform[:3, 3])}, sform origin {_fmt(sform[:3, 3])}, "
                f"largest difference {np.abs(qform - sform).max():.3g}): readers that prefer one or the other put "
                "the scan in different places",
            )
        )
    return problems


def affines_match(first: np.ndarray, second: np.ndarray) -> bool:
    """Two 4x4 affines agree to 1e-4 in the linear part and 1e-3 mm in the translation (both are float32 in a
    NIfTI header, and origins of several hundred mm carry float32 rounding of ~1e-4 mm)."""
    return bool(
        np.allclose(first[:3, :3], second[:3, :3], rtol=0, atol=1e-4)
        and np.allclose(first[:3, 3], second[:3, 3], rtol=0, atol=1e-3)
    )


_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def ras_affine(image: sitk.Image) -> np.ndarray:
    """The 4x4 voxel-to-RAS affine of a 3D image, built exactly as MONAI's ITKReader builds it: direction times
    spacing, origin, then LPS to RAS (negate the first two rows). Index order is (x, y, z), i.e. the array from
    ``sitk.GetArrayFromImage(image).T``."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return _LPS_TO_RAS @ affine


def set_ras_affine(image: sitk.Image, affine: np.ndarray) -> None:
    """Give ``image`` the geometry of a 4x4 voxel-to-RAS ``affine`` (its columns must be perpendicular)."""
    lps = _LPS_TO_RAS @ np.asarray(affine, dtype=float)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    image.SetSpacing(tuple(float(v) for v in spacing))
    image.SetDirection(tuple(float(v) for v in direction.ravel()))
    image.SetOrigin(tuple(float(v) for v in lps[:3, 3]))


def orientation_code(affine: np.ndarray) -> str:
    """nibabel's axis code of a RAS affine, e.g. ``"LPS"`` for a DICOM-ordered volume, ``"RAS"`` for canonical."""
    return "".join(str(c) for c in nib.orientations.aff2axcodes(affine))


# The one grid-equality rule: sizes equal; spacing and origin within this many mm; direction cosines within
# GRID_DIRECTION_TOLERANCE.
GRID_TOLERANCE_MM = 1e-4
GRID_DIRECTION_TOLERANCE = 1e-4


def _parenthesised(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v + 0.0:.6g}" for v in values) + ")"  # + 0.0: -0.0 (LPS of a NIfTI 0) shows as 0


class Grid(NamedTuple):
    """A voxel grid in physical space, in ITK order (x, y, z): size, spacing (mm), origin (mm, LPS), direction
    (row-major 3x3 or 2x2)."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: Grid | sitk.Image | sitk.ImageFileReader) -> Grid:
        """The grid of a SimpleITK image, or of a file reader after ``ReadImageInformation`` (no voxels read)."""
        if isinstance(image, Grid):
            return image
        return cls(
            tuple(int(s) for s in image.GetSize()),
            tuple(float(s) for s in image.GetSpacing()),
            tuple(float(o) for o in image.GetOrigin()),
            tuple(float(d) for d in image.GetDirection()),
        )


GridLike = Grid | sitk.Image | sitk.ImageFileReader


def grid_differences(
    first: GridLike,
    second: GridLike,
    *,
    tolerance_mm: float = GRID_TOLERANCE_MM,
    direction_tolerance: float = GRID_DIRECTION_TOLERANCE,
) -> list[str]:
    """What differs between two grids, one phrase each (``"spacing (1, 1, 3.001) vs (1, 1, 3) (max difference
    0.001 mm)"``); empty when they are the same grid. The size must match exactly."""
    a, b = Grid.of(first), Grid.of(second)
    problems: list[str] = []
    if a.size != b.size:
        problems.append(f"size {a.size} vs {b.size}")
    for name, tolerance in (("spacing", tolerance_mm), ("origin", tolerance_mm), ("direction", direction_tolerance)):
        value_a, value_b = getattr(a, name), getattr(b, name)
        if len(value_a) != len(value_b):
            continue  # dimensionality already differs in size
        difference = float(np.max(np.abs(np.subtract(value_a, value_b)))) if value_a else 0.0
        if not difference <= tolerance:  # NaN differs
            unit = "" if name == "direction" else " mm"
            shown = f"{_parenthesised(value_a)} vs {_parenthesised(value_b)}"
            problems.append(f"{name} {shown} (max difference {difference:.3g}{unit})")
    return problems


def same_grid(
    first: GridLike,
    second: GridLike,
    *,
    tolerance_mm: float = GRID_TOLERANCE_MM,
    direction_tolerance: float = GRID_DIRECTION_TOLERANCE,
) -> bool:
    """Whether two images (or readers, or :class:`Grid`) lie on the same voxel grid (see :func:`grid_differences`)."""
    return not grid_differences(first, second, tolerance_mm=tolerance_mm, direction_tolerance=direction_tolerance)
