from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from medseg.errors import InputError
from medseg.io.series import (
    PixelFormat,
    find_series,
    image_format,
    kernel_sharpness,
    read_instance,
    safe_name,
    select_series,
)
from tests.io.dicom_factory import SECONDARY_CAPTURE, ramp_volume, write_series


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("../../etc/passwd", "etc_passwd"),
        ("1.2.840.113619.2.55.3", "1.2.840.113619.2.55.3"),
        ("CT Abdomen/Pelvis w\\ contrast", "CT_Abdomen_Pelvis_w_contrast"),
        ("Müller^Jürgen", "Muller_Jurgen"),
        ("...", "unnamed"),
        ("", "unnamed"),
        ("-rf", "rf"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("a\x00b\nc", "a_b_c"),
    ],
)
def test_safe_name(text: str, expected: str) -> None:
    assert safe_name(text) == expected


def test_safe_name_keeps_long_names_distinct() -> None:
    first, second = safe_name("x" * 300 + "1"), safe_name("x" * 300 + "2")
    assert len(first) == len(second) == 100
    assert first != second


def test_image_format() -> None:
    assert image_format("a/CT.NII.GZ") == "nifti"
    assert image_format("x.nii") == "nifti"
    assert image_format("x.seg.nrrd") == "nrrd"
    assert image_format("x.nhdr") == "nrrd"
    assert image_format("x.mhd") == "mha"
    assert image_format("x.dcm") is None
    assert image_format("1.2.3") is None


@pytest.mark.parametrize(
    ("kernel", "sharpness"),
    [
        *[("B30f", 0), ("Br38f\\3", 0), ("I70f", 2), ("B70s", 2), ("STANDARD", 0), ("LUNG", 2), ("BONEPLUS", 2)],
        *[("FC08", 0), ("FC52", 2), ("SOFT", 0), ("YA", 1), ("", 1)],
    ],
)
def test_kernel_sharpness(kernel: str, sharpness: int) -> None:
    assert kernel_sharpness(kernel) == sharpness


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """A study folder: soft and sharp kernel CT of one geometry, a localizer, an MR, a dose screen, junk."""
    root = tmp_path / "study"
    volume = ramp_volume((5, 6, 4))
    write_series(root / "s2", volume, kernel="B30f", series_number=2, description="soft")
    write_series(root / "deep" / "s3", volume, kernel="B70f", series_number=3, description="sharp")
    write_series(root / "s1", volume[:1], image_type="ORIGINAL\\PRIMARY\\LOCALIZER", series_number=1)
    write_series(root / "s4", volume, modality="MR", series_number=4, description="t1")
    write_series(root / "s5", volume[:1], sop_class=SECONDARY_CAPTURE, series_number=5, description="dose")
    (root / "DICOMDIR.txt").write_text("not dicom")
    (root / "s2" / "notes").write_bytes(b"\x08\x00 not a dicom file either")
    return root


def test_study_folder_picks_soft_kernel_and_says_why_others_are_skipped(study: Path) -> None:
    found = find_series(study)
    assert sorted(s.description for s in found.series) == ["dose", "sharp", "soft", "synthetic", "t1"]
    chosen = select_series(found)
    assert chosen.description == "soft"
    reasons = {s.description: s.skip_reason for s in found.series}
    assert reasons["soft"] is None
    assert "softer reconstruction kernel" in str(reasons["sharp"])
    assert "localizer" in str(reasons["synthetic"])
    assert "modality MR" in str(reasons["t1"])
    assert "secondary capture" in str(reasons["dose"])
    assert sorted(p.name for p in found.ignored) == ["DICOMDIR.txt", "notes"]


def test_more_slices_and_original_images_rank_first(tmp_path: Path) -> None:
    volume = ramp_volume((6, 4, 4))
    write_series(tmp_path / "short", volume[:4], description="short")
    write_series(tmp_path / "long", volume, description="long")
    write_series(tmp_path / "derived", np.concatenate([volume, volume]), image_type="DERIVED\\SECONDARY\\AXIAL")
    found = find_series(tmp_path)
    assert select_series(found).description == "long"
    reasons = {s.description: s.skip_reason for s in found.series}
    assert "more slices (6 > 4)" in str(reasons["short"])
    assert "ORIGINAL rather than DERIVED" in str(reasons["synthetic"])


def test_thinner_slices_rank_before_thicker(tmp_path: Path) -> None:
    volume = ramp_volume((5, 4, 4))
    write_series(tmp_path / "thick", volume, step=5.0, description="thick")
    write_series(tmp_path / "thin", volume, step=1.0, description="thin")
    found = find_series(tmp_path)
    assert select_series(found).description == "thin"


def test_two_equal_series_are_refused_until_one_is_named(tmp_path: Path) -> None:
    volume = ramp_volume((4, 4, 4))
    write_series(tmp_path / "arterial", volume, series_uid="1.2.3.1", description="arterial")
    write_series(tmp_path / "venous", volume, series_uid="1.2.3.2", description="venous")
    with pytest.raises(InputError, match=r"2 CT series that no rule tells apart.*1\.2\.3\.1.*1\.2\.3\.2"):
        select_series(find_series(tmp_path))
    found = find_series(tmp_path)
    assert select_series(found, series_uid="1.2.3.2").description == "venous"
    assert "1.2.3.2 was asked for" in str(next(s for s in found.series if s.uid == "1.2.3.1").skip_reason)
    with pytest.raises(InputError, match=r"no series with SeriesInstanceUID '9\.9'"):
        select_series(find_series(tmp_path), series_uid="9.9")


def test_files_without_series_uid_group_by_folder(tmp_path: Path) -> None:
    volume = ramp_volume((3, 4, 4))
    write_series(tmp_path / "a", volume, series_uid="")
    write_series(tmp_path / "b", volume, series_uid="")
    found = find_series(tmp_path)
    assert [s.n_files for s in found.series] == [3, 3]
    assert {s.folder.name for s in found.series} == {"a", "b"}


def test_folder_without_dicom(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(InputError, match=r"no DICOM series or image file \(1 other file"):
        select_series(find_series(tmp_path))
    (tmp_path / "CT.nii.gz").write_bytes(b"x")
    with pytest.raises(InputError, match=r"no DICOM series but 1 image file\(s\) \(CT\.nii\.gz\)"):
        select_series(find_series(tmp_path))


def test_truncated_pixel_data_is_noticed_by_the_header_read(tmp_path: Path) -> None:
    path = write_series(tmp_path, ramp_volume((2, 8, 8)))[0]
    full = read_instance(path)
    assert full is not None and full.problem is None
    assert full.pixel_format == PixelFormat(1, "MONOCHROME2", 16, 16, 15, signed=True)
    data = path.read_bytes()
    path.write_bytes(data[:-1])
    truncated = read_instance(path)
    assert truncated is not None
    assert truncated.problem is not None
    assert "truncated" in truncated.problem and "127 of the 128 bytes" in truncated.problem


def test_corrupt_dicom_header_names_the_file(tmp_path: Path) -> None:
    path = write_series(tmp_path, ramp_volume((2, 4, 4)))[0]
    data = path.read_bytes()
    path.write_bytes(data[:200])  # cut inside the file meta / first elements
    with pytest.raises(InputError, match=r"IM0000: is truncated: the file ends inside its DICOM header"):
        read_instance(path)


@pytest.mark.data
def test_ibsi_patient_folder_skips_the_rtstruct(data_root: Path) -> None:
    found = find_series(data_root / "ibsi_sts" / "dicom" / "STS_019")
    chosen = select_series(found)
    assert chosen.n_files == 47 and chosen.modality == "CT" and chosen.slice_step_mm == pytest.approx(3.27)
    rtstruct = next(s for s in found.series if s is not chosen)
    assert rtstruct.modality == "RTSTRUCT"
    assert rtstruct.skip_reason == "modality RTSTRUCT is an RT structure set, not an image"


@pytest.mark.data
def test_series_without_uid_and_file_suffix_is_found(data_root: Path, tmp_path: Path) -> None:
    # example_ct_dicom has a blank SeriesInstanceUID and SOPClassUID; CT5N files have no suffix.
    shutil.copytree(data_root / "pydicom" / "CT5N", tmp_path / "CT5N")
    found = find_series(data_root / "totalsegmentator" / "example_ct_dicom")
    assert [(s.uid, s.n_files, s.skip_reason) for s in found.series] == [("", 20, None)]
    found = find_series(tmp_path)
    assert [(s.n_files, s.skip_reason) for s in found.series] == [(5, None)]


def test_dicom_cd_layout_with_dicomdir(tmp_path: Path) -> None:
    from pydicom.fileset import FileSet

    paths = write_series(tmp_path / "export", ramp_volume((4, 4, 4)), description="cd")
    file_set = FileSet()
    for path in paths:
        file_set.add(path)
    file_set.write(tmp_path / "cd")
    found = find_series(tmp_path / "cd")
    assert [(s.description, s.n_files) for s in found.series] == [("cd", 4)]
    assert [p.name for p in found.ignored] == ["DICOMDIR"]


def test_multi_frame_ct_is_skipped_with_a_reason(tmp_path: Path) -> None:
    import pydicom

    path = write_series(tmp_path, ramp_volume((1, 4, 4)))[0]
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 2
    ds.PixelData = ramp_volume((2, 4, 4)).tobytes()
    ds.save_as(path)
    found = find_series(tmp_path)
    assert "multi-frame (enhanced) CT is not supported" in str(found.series[0].skip_reason)


def test_symlinked_series_folders_are_followed_once(tmp_path: Path) -> None:
    # A patient folder assembled from links, as scripts/demo.sh builds one: the series lies elsewhere, a second
    # link reaches the same folder, and a link back to the study would loop forever if followed blindly.
    write_series(tmp_path / "store" / "series", ramp_volume((4, 4, 4)), description="linked")
    study = tmp_path / "study"
    study.mkdir()
    (study / "CT").symlink_to(tmp_path / "store" / "series", target_is_directory=True)
    (study / "CT_again").symlink_to(tmp_path / "store" / "series", target_is_directory=True)
    (study / "loop").symlink_to(study, target_is_directory=True)
    found = find_series(study)
    assert [(s.description, s.n_files, s.folder) for s in found.series] == [("linked", 4, study / "CT")]
    assert select_series(found).description == "linked"
    assert found.ignored == [] and found.image_files == []
