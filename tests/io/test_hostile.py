"""Hostile and unusual inputs, built at test time from the real scans of the data root: each must end as a clean
one-line error naming the file (or as a correct read) within a time limit, without allocating what the header
merely claims.

The corpus: pydicom edits of six slices of the IBSI STS_003 CT series (rescale, spacing, orientation, transfer
syntax, preamble, tag values), NIfTI files made from a crop of the same patient's NIfTI with hostile headers, NRRD
and MetaImage headers pointing their data elsewhere, and special files (FIFOs, devices, symlink loops). The
memory-heavy check (a subprocess's peak memory on the size bombs) is marked slow.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from medseg.errors import MedsegError
from medseg.io.limits import check_resampled_grid
from medseg.io.readers import Scan, read_scan
from medseg.io.series import find_series, is_dicom_file

pytestmark = pytest.mark.data

SECONDS = 20  # no case may take longer (a FIFO opened for reading blocks forever)
N_SLICES = 6
MODEL_SPACING = (4.688, 4.688, 2.5)  # the shipped model's (x, y, z) spacing, for the resampled-grid check


@contextlib.contextmanager
def time_limit(seconds: int = SECONDS) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"took more than {seconds} s (hang)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def refused(path: Path, pattern: str, **kwargs: object) -> str:
    """Read ``path`` and return the error line, asserting it is one MedsegError line naming a file under the
    case's folder, matching ``pattern``, free of control characters."""
    with time_limit(), pytest.raises(MedsegError) as caught:
        read_scan(path, **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message, message
    assert caught.value.path is not None and str(path.parent if path.is_file() else path) in caught.value.path
    assert caught.value.problem.strip(), message
    assert re.search(pattern, message), message
    return message


def read_ok(path: Path) -> Scan:
    with time_limit():
        return read_scan(path)


def voxels(scan: Scan) -> np.ndarray:
    return sitk.GetArrayFromImage(scan.image)


# --- corpus sources ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slices(data_root: Path) -> list[Path]:
    files = sorted((data_root / "ibsi_sts/dicom/STS_003/CT/image").glob("*.dcm"))
    assert len(files) > N_SLICES
    return files[:N_SLICES]


@pytest.fixture(scope="module")
def reference(slices: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Scan:
    folder = tmp_path_factory.mktemp("reference")
    for file in slices:
        shutil.copyfile(file, folder / file.name)
    return read_scan(folder)


def write_variant(
    slices: list[Path], folder: Path, edit: Callable[[pydicom.Dataset, int], None] | None = None, **save: object
) -> Path:
    """The six slices, each passed through ``edit(dataset, index)`` and saved into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, file in enumerate(slices):
        dataset = pydicom.dcmread(file)
        if edit is not None:
            edit(dataset, k)
        with pydicom.config.disable_value_validation():
            dataset.save_as(folder / file.name, **save)  # type: ignore[arg-type]
    return folder


@pytest.fixture(scope="module")
def nifti_crop(data_root: Path) -> nib.Nifti1Image:
    """A 40 x 40 x 8 crop of STS_003's NIfTI CT (float32 HU), with its real affine."""
    image = nib.load(data_root / "ibsi_sts/nifti/STS_003/CT_image.nii.gz")
    crop = image.slicer[50:90, 50:90, 10:18]
    data = np.array(crop.dataobj, dtype=np.float32)
    data.setflags(write=False)  # shared by the tests: edits work on copies
    return nib.Nifti1Image(data, crop.affine)


def save_nifti(image: nib.Nifti1Image, path: Path) -> Path:
    nib.save(image, path)
    return path


# --- DICOM: values --------------------------------------------------------------------------------------------


def _set(keyword: str, value: object, only_first: bool = False) -> Callable[[pydicom.Dataset, int], None]:
    def edit(dataset: pydicom.Dataset, index: int) -> None:
        if not only_first or index == 0:
            setattr(dataset, keyword, value)

    return edit


def _raw(keyword: str, text: str) -> Callable[[pydicom.Dataset, int], None]:
    """Store ``text`` as the element's raw bytes: values pydicom refuses to convert (``-1024x``) are written as a
    broken exporter would."""

    def edit(dataset: pydicom.Dataset, index: int) -> None:
        tag = pydicom.datadict.tag_for_keyword(keyword)
        assert tag is not None
        value = text.encode("latin-1") + (b" " if len(text) % 2 else b"")
        vr = pydicom.datadict.dictionary_VR(tag)
        dataset[tag] = pydicom.dataelem.RawDataElement(
            pydicom.tag.Tag(tag), vr, len(value), value, 0, dataset.is_implicit_VR, dataset.is_little_endian
        )

    return edit


DICOM_REFUSED = [
    ("slope_1e36", _raw("RescaleSlope", "1e36"), r"RescaleSlope 1e\+36 .*beyond float32"),
    ("slope_nan", _raw("RescaleSlope", "NaN"), r"RescaleSlope 'NaN' is not a finite number"),
    ("slope_inf", _raw("RescaleSlope", "inf"), r"RescaleSlope 'inf' is not a finite number"),
    ("slope_zero", _raw("RescaleSlope", "0"), r"RescaleSlope is 0"),
    ("intercept_nan", _raw("RescaleIntercept", "nan"), r"RescaleIntercept 'nan' is not a finite number"),
    ("intercept_garbage", _raw("RescaleIntercept", "-1024x"), r"RescaleIntercept '-1024x' is not a finite number"),
    ("negative_pixel_spacing", _set("PixelSpacing", ["-0.9765625", "0.9765625"]), r"voxel spacing \(-0\.97"),
    ("zero_pixel_spacing", _set("PixelSpacing", ["0", "0"]), r"voxel spacing .* positive finite"),
    ("huge_pixel_spacing", _set("PixelSpacing", ["500", "500"]), r"above the limit of 50 mm"),
    ("degenerate_orientation", _set("ImageOrientationPatient", [1, 0, 0, 1, 0, 0]), r"degenerate ImageOrientation"),
    ("zero_orientation", _set("ImageOrientationPatient", [0, 0, 0, 0, 0, 0]), r"degenerate ImageOrientation"),
    ("no_position", lambda ds, k: delattr(ds, "ImagePositionPatient"), r"no image geometry"),
    ("mr_modality", _set("Modality", "MR"), r"modality MR is not CT"),
    ("escape_in_modality", _set("Modality", "\x1b[2J\x1b[31mXX"), r"modality \\x1b\[2J\\x1b\[31MXX is not CT"),
    ("duplicate_positions", _set("ImagePositionPatient", [0, 0, 0]), r"duplicate|single slice|same position"),
    ("huge_rows", _set("Rows", 65535), r"truncated"),
    ("rtstruct_only", _set("Modality", "RTSTRUCT"), r"RT structure set"),
]


@pytest.mark.parametrize(("name", "edit", "pattern"), DICOM_REFUSED, ids=[c[0] for c in DICOM_REFUSED])
def test_hostile_dicom_values_are_one_line_errors(
    slices: list[Path], tmp_path: Path, name: str, edit: Callable[[pydicom.Dataset, int], None], pattern: str
) -> None:
    refused(write_variant(slices, tmp_path / name, edit), pattern)


def test_control_characters_in_descriptions_are_escaped(slices: list[Path], tmp_path: Path) -> None:
    folder = write_variant(slices, tmp_path / "s", _set("SeriesDescription", "CT\x1b]0;pwned\x07\x1b[31m"))
    scan = read_ok(folder)
    assert scan.series is not None and "\x1b" not in scan.series.description
    assert scan.series.description.startswith("CT\\x1b]0;pwned")


# --- DICOM: valid data that must read ------------------------------------------------------------------------


def test_deflated_explicit_vr_series_reads(slices: list[Path], reference: Scan, tmp_path: Path) -> None:
    def deflate(dataset: pydicom.Dataset, index: int) -> None:
        dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian

    folder = write_variant(slices, tmp_path / "deflated", deflate, enforce_file_format=True)
    np.testing.assert_array_equal(voxels(read_ok(folder)), voxels(reference))


@pytest.mark.parametrize("start", ["meta", "dataset"])
def test_files_without_preamble_read_and_sniff(slices: list[Path], reference: Scan, tmp_path: Path, start: str) -> None:
    """No 128-byte preamble and no DICM: starting with the file meta group (0002) or straight with the data set."""
    folder = tmp_path / start
    folder.mkdir()
    for file in slices:
        dataset = pydicom.dcmread(file)
        if start == "meta":
            dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            dataset.save_as(folder / file.name, enforce_file_format=True)
            data = (folder / file.name).read_bytes()
            (folder / file.name).write_bytes(data[132:])
        else:  # the bare implicit-VR data set, as ACR-NEMA-style exports write it
            dataset.preamble = None
            dataset.file_meta = pydicom.dataset.FileMetaDataset()
            dataset.save_as(folder / file.name, implicit_vr=True, little_endian=True, enforce_file_format=False)
        assert (folder / file.name).read_bytes()[128:132] != b"DICM"
        assert is_dicom_file(folder / file.name)
    scan = read_ok(folder)
    np.testing.assert_array_equal(voxels(scan), voxels(reference))
    assert scan.image.GetSpacing() == reference.image.GetSpacing()
    # what the DICOM writers re-read (medseg.inference.outputs.source_datasets) parses too
    assert scan.series is not None
    assert pydicom.dcmread(scan.series.files[0], stop_before_pixels=True, force=True).Modality == "CT"


def test_multi_valued_patient_name_reads(slices: list[Path], reference: Scan, tmp_path: Path) -> None:
    folder = write_variant(slices, tmp_path / "pn", _set("PatientName", ["Doe^John", "Roe^Jane"]))
    np.testing.assert_array_equal(voxels(read_ok(folder)), voxels(reference))


# --- DICOM: files and folders --------------------------------------------------------------------------------


def test_fifo_socket_and_device_links_in_a_series_folder_are_skipped(
    slices: list[Path], reference: Scan, tmp_path: Path
) -> None:
    folder = write_variant(slices, tmp_path / "series")
    os.mkfifo(folder / "IM_FIFO")
    os.mkfifo(folder / "pipe.nii.gz")
    (folder / "IM_ZERO").symlink_to("/dev/zero")
    (folder / "IM_NULL").symlink_to("/dev/null")
    scan = read_ok(folder)
    np.testing.assert_array_equal(voxels(scan), voxels(reference))
    with time_limit():
        found = find_series(folder)
    assert {p.name for p in found.ignored} >= {"IM_FIFO", "IM_ZERO", "IM_NULL", "pipe.nii.gz"}
    assert not is_dicom_file(folder / "IM_FIFO") and not is_dicom_file(folder / "IM_ZERO")


@pytest.mark.parametrize("name", ["scan.nii.gz", "IM0001", "scan.nrrd"])
def test_fifo_given_as_the_scan_is_refused(tmp_path: Path, name: str) -> None:
    fifo = tmp_path / name
    os.mkfifo(fifo)
    refused(fifo, r"FIFO \(named pipe\), not a regular file")


def test_device_given_as_the_scan_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "scan.nii"
    link.symlink_to("/dev/zero")
    refused(link, r"character device, not a regular file")


def test_symlink_loop_is_read_once(slices: list[Path], reference: Scan, tmp_path: Path) -> None:
    folder = write_variant(slices, tmp_path / "patient" / "series")
    (folder / "loop").symlink_to(tmp_path / "patient", target_is_directory=True)
    np.testing.assert_array_equal(voxels(read_ok(tmp_path / "patient")), voxels(reference))


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("garbage_with_signature", b"\0" * 128 + b"DICM" + os.urandom(2000), r"DICOM|not a DICOM"),
        ("random_bytes", os.urandom(4000), r"holds no DICOM series or image file"),
        ("starts_like_dicom", b"\x08\x00" + os.urandom(3000), r"holds no DICOM series|not a DICOM|cannot be parsed"),
        ("text", b"patient list\n" * 100, r"holds no DICOM series or image file"),
        ("zero_bytes", b"", r"holds no DICOM series or image file"),
    ],
)
def test_garbage_is_not_a_dicom_scan(tmp_path: Path, name: str, content: bytes, pattern: str) -> None:
    folder = tmp_path / name
    folder.mkdir()
    for k in range(3):
        (folder / f"IM{k}.dcm").write_bytes(content)
    message = refused(folder, pattern)
    assert "modality (none)" not in message


def test_truncated_slice_is_named(slices: list[Path], tmp_path: Path) -> None:
    folder = write_variant(slices, tmp_path / "cut")
    victim = folder / slices[2].name
    victim.write_bytes(victim.read_bytes()[:-5000])
    refused(folder, r"truncated")


# --- NIfTI ---------------------------------------------------------------------------------------------------


def test_float64_beyond_float32_range_is_refused(nifti_crop: nib.Nifti1Image, tmp_path: Path) -> None:
    data = np.array(nifti_crop.dataobj, dtype=np.float64)
    data[3, 4, 5] = 1e300
    path = save_nifti(nib.Nifti1Image(data, nifti_crop.affine), tmp_path / "big.nii.gz")
    refused(path, r"1 NaN/infinite voxel\(s\) .*1e\+300, beyond float32")


def test_nan_voxels_are_refused(nifti_crop: nib.Nifti1Image, tmp_path: Path) -> None:
    data = np.array(nifti_crop.dataobj, dtype=np.float32)  # a copy: the fixture is shared
    data[0, 0, :] = np.nan
    path = save_nifti(nib.Nifti1Image(data, nifti_crop.affine), tmp_path / "nan.nii.gz")
    refused(path, r"8 NaN/infinite voxel")


def test_nifti_crop_reads(nifti_crop: nib.Nifti1Image, tmp_path: Path) -> None:
    path = save_nifti(nifti_crop, tmp_path / "crop.nii.gz")
    assert read_ok(path).image.GetSize() == (40, 40, 8)


def _header_bomb(nifti_crop: nib.Nifti1Image, path: Path, shape: tuple[int, ...]) -> Path:
    """A NIfTI whose header claims ``shape`` but holds the crop's few bytes."""
    header = nifti_crop.header.copy()
    header.set_data_shape(shape)
    small = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), nifti_crop.affine)
    raw = bytearray(small.header.binaryblock)
    raw[:348] = header.binaryblock[:348]
    payload = bytes(raw) + b"\0" * 4 + np.zeros(8, np.int16).tobytes()
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def test_header_size_bomb_is_refused_from_the_header(nifti_crop: nib.Nifti1Image, tmp_path: Path) -> None:
    path = _header_bomb(nifti_crop, tmp_path / "bomb.nii.gz", (2048, 1024, 1024))
    assert path.stat().st_size < 500
    refused(path, r"declares 8,589,934,592 bytes of voxel data, which \d+ compressed bytes cannot hold")


def test_uncompressed_header_claiming_more_than_the_file_is_truncated(
    nifti_crop: nib.Nifti1Image, tmp_path: Path
) -> None:
    refused(_header_bomb(nifti_crop, tmp_path / "cut.nii", (300, 300, 300)), r"is truncated: its header declares")


def test_voxel_limit_is_configurable(
    nifti_crop: nib.Nifti1Image, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_nifti(nifti_crop, tmp_path / "crop.nii.gz")
    monkeypatch.setenv("MEDSEG_MAX_VOXELS", "1000")
    refused(path, r"40x40x8 = 12,800 voxels .*above the limit of 1,000 voxels \(MEDSEG_MAX_VOXELS\)")


def test_huge_voxels_are_refused(nifti_crop: nib.Nifti1Image, tmp_path: Path) -> None:
    image = nib.Nifti1Image(np.asarray(nifti_crop.dataobj), np.diag([500.0, 500.0, 500.0, 1.0]))
    refused(
        save_nifti(image, tmp_path / "huge.nii.gz"), r"voxel spacing \(500, 500, 500\) mm, above the limit of 50 mm"
    )


@pytest.mark.parametrize("axes", ["zero", "parallel"])
def test_degenerate_affine_is_named(nifti_crop: nib.Nifti1Image, tmp_path: Path, axes: str) -> None:
    """sform rows patched in the file (nibabel will not write such an affine): a zero or a repeated voxel axis."""
    path = save_nifti(nifti_crop, tmp_path / "flat.nii")
    raw = bytearray(path.read_bytes())
    rows = np.frombuffer(bytes(raw[280:328]), np.float32).reshape(3, 4).copy()
    if axes == "zero":
        rows[:, 0] = 0.0
    else:
        rows[:, 1] = rows[:, 0]
    raw[280:328] = rows.tobytes()
    raw[254:256] = np.int16(2).tobytes()  # sform_code aligned: the sform is the affine
    raw[252:254] = np.int16(0).tobytes()  # no qform
    path.write_bytes(bytes(raw))
    message = refused(path, r"degenerate orientation")
    assert "single slice" not in message


def test_coarse_voxels_are_refused_before_resampling(nifti_crop: nib.Nifti1Image, tmp_path: Path) -> None:
    """40 mm voxels are readable, but resampling them to the model's spacing would need gigabytes: the check the
    segmenter runs before its Spacingd names the file, the grid and the limit."""
    image = nib.Nifti1Image(np.asarray(nifti_crop.dataobj), np.diag([40.0, 40.0, 40.0, 1.0]))
    path = save_nifti(image, tmp_path / "coarse.nii.gz")
    scan = read_ok(path)
    with pytest.raises(MedsegError, match=r"coarse\.nii\.gz: resampling 40x40x8 voxels of 40x40x40 mm .* limit"):
        check_resampled_grid(path, scan.image.GetSize(), scan.image.GetSpacing(), (0.3, 0.3, 0.3))
    check_resampled_grid(path, scan.image.GetSize(), scan.image.GetSpacing(), MODEL_SPACING)  # fine for the model


def test_oversized_header_offset_is_named(nifti_crop: nib.Nifti1Image, tmp_path: Path) -> None:
    path = save_nifti(nifti_crop, tmp_path / "offset.nii")
    raw = bytearray(path.read_bytes())
    raw[108:112] = np.float32(2**31).tobytes()  # vox_offset: "the header is 2 GB long"
    path.write_bytes(bytes(raw))
    refused(path, r"header|vox_offset|truncated")


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"", r"empty file"),
        (b"\x1f\x8b" + os.urandom(300), r"cannot be read as NIFTI: \S"),
        (gzip.compress(os.urandom(500)), r"cannot be read as NIFTI: \S"),
        (gzip.compress(b"\x5c\x01" + b"\0" * 400), r"cannot be read as NIFTI: \S"),
    ],
    ids=["empty", "gzip_garbage", "random_header", "bad_sizeof_hdr"],
)
def test_broken_nifti_gives_a_reason(tmp_path: Path, content: bytes, pattern: str) -> None:
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(content)
    refused(path, pattern)


# --- NRRD and MetaImage --------------------------------------------------------------------------------------


@pytest.fixture
def nrrd_pair(nifti_crop: nib.Nifti1Image, tmp_path: Path) -> tuple[Path, Path]:
    """The crop as a detached NRRD: ``scan.nhdr`` + ``scan.raw`` (int16)."""
    data = np.asarray(nifti_crop.dataobj).astype(np.int16)
    raw = tmp_path / "scan.raw"
    raw.write_bytes(np.ascontiguousarray(data.T).tobytes())  # x fastest
    header = tmp_path / "scan.nhdr"
    header.write_text(nhdr_text("scan.raw"))
    return header, raw


def nhdr_text(data_file: str, sizes: str = "40 40 8", directions: str = "(0.977,0,0) (0,0.977,0) (0,0,3.27)") -> str:
    return textwrap.dedent(
        f"""\
        NRRD0004
        type: short
        dimension: 3
        space: left-posterior-superior
        sizes: {sizes}
        space directions: {directions}
        encoding: raw
        endian: little
        space origin: (0,0,0)
        data file: {data_file}
        """
    )


def test_detached_nrrd_reads(nrrd_pair: tuple[Path, Path], nifti_crop: nib.Nifti1Image) -> None:
    scan = read_ok(nrrd_pair[0])
    assert scan.image.GetSize() == (40, 40, 8)


@pytest.mark.parametrize("target", ["/dev/zero", "../elsewhere/scan.raw", "/etc/hostname"])
def test_nhdr_data_outside_the_scan_folder_is_refused(nrrd_pair: tuple[Path, Path], target: str) -> None:
    header, _ = nrrd_pair
    header.write_text(nhdr_text(target))
    refused(header, r"points its voxel data at .*outside the scan's own folder")


def test_nhdr_data_link_to_a_device_is_refused(nrrd_pair: tuple[Path, Path]) -> None:
    header, raw = nrrd_pair
    raw.unlink()
    raw.symlink_to("/dev/zero")
    refused(header, r"outside the scan's own folder|character device")


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        ({"sizes": "4000 4000 4000"}, r"4000x4000x4000 = 64,000,000,000 voxels .*MEDSEG_MAX_VOXELS"),
        ({"sizes": "400 400 80"}, r"is truncated: its header declares 25,600,000 bytes"),
        ({"sizes": "40 abc 8"}, r"cannot be read as NRRD: bad header \(\S"),
        ({"directions": "(-0.977,0,0) (0,0,0) (0,0,3.27)"}, r"voxel spacing .*positive finite"),
        ({"directions": "(900,0,0) (0,0.977,0) (0,0,3.27)"}, r"above the limit of 50 mm"),
    ],
    ids=["voxel_bomb", "more_than_the_data", "bad_sizes", "zero_direction", "huge_spacing"],
)
def test_hostile_nrrd_headers_are_refused(nrrd_pair: tuple[Path, Path], edit: dict[str, str], pattern: str) -> None:
    header, _ = nrrd_pair
    header.write_text(nhdr_text("scan.raw", **edit))
    refused(header, pattern)


def test_nrrd_header_without_end_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDSEG_MAX_HEADER_BYTES", "4096")
    path = tmp_path / "endless.nrrd"
    path.write_bytes(b"NRRD0004\n" + b"# comment\n" * 2000)
    refused(path, r"-byte header, above the limit of 4,096 bytes")


def test_attached_nrrd_with_cut_gzip_data_gives_a_reason(nifti_crop: nib.Nifti1Image, tmp_path: Path) -> None:
    path = tmp_path / "scan.nrrd"
    image = sitk.GetImageFromArray(np.asarray(nifti_crop.dataobj).T.astype(np.int16))
    sitk.WriteImage(image, str(path), useCompression=True)
    path.write_bytes(path.read_bytes()[:-200])
    message = refused(path, r"cannot be read as NRRD: \S|truncated")
    assert not message.endswith(": ")


def test_mhd_data_outside_the_scan_folder_is_refused(tmp_path: Path) -> None:
    header = tmp_path / "scan.mhd"
    header.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 64 64 64\nElementType = MET_SHORT\n"
        "ElementSpacing = 1 1 1\nElementDataFile = /dev/zero\n"
    )
    refused(header, r"points its voxel data at '/dev/zero', outside the scan's own folder")


# --- memory ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_size_bombs_stay_small_in_memory(
    nifti_crop: nib.Nifti1Image, nrrd_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    """Each bomb read in a fresh process: refused, with the process's peak memory far below what the header
    claims (8 GB, 64 GB): nothing was allocated for the claimed size."""
    bombs = [
        _header_bomb(nifti_crop, tmp_path / "bomb.nii.gz", (2048, 1024, 1024)),
        _header_bomb(nifti_crop, tmp_path / "bomb.nii", (2048, 1024, 1024)),
    ]
    header, _ = nrrd_pair
    header.write_text(nhdr_text("scan.raw", sizes="4000 4000 4000"))
    bombs.append(header)
    script = textwrap.dedent(
        """\
        import sys
        from pathlib import Path
        from medseg.errors import MedsegError
        from medseg.io.readers import read_scan
        try:
            read_scan(sys.argv[1])
        except MedsegError as err:
            print("refused:", err)
        # VmHWM is this process's own high-water mark; ru_maxrss would also count the parent (pytest) whose
        # memory the child shared until exec.
        hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
        print("peak_mb", int(hwm.split()[1]) // 1024)
        """
    )
    for bomb in bombs:
        done = subprocess.run(
            [sys.executable, "-c", script, str(bomb)], capture_output=True, text=True, timeout=120, check=True
        )
        assert "refused:" in done.stdout, done.stdout + done.stderr
        peak = int(done.stdout.split("peak_mb")[-1])
        assert peak < 1024, f"{bomb.name}: peak {peak} MB"
