"""dciodvfy (dicom3tools) on medseg's DICOM SEG and RTSTRUCT: no error of medseg's own making.

An error dciodvfy also reports, word for word, for the source CT image (the IBSI series' 17-character StudyID,
copied as it is so that the objects file under the same study) is the source's; every other error fails the test.
Warnings are allowed and printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

from medseg.io.writers.dicom import write_dicom_seg, write_rtstruct
from tests.io.writers.conftest import Case
from tests.tooling import skip_or_fail


def _dciodvfy() -> str:
    program = shutil.which("dciodvfy")
    if program is None:
        skip_or_fail("dciodvfy is not installed (Debian: apt-get install -y dicom3tools; .ci/run installs it)")
    assert program is not None
    return program


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """The error and the warning lines dciodvfy reports for ``path``."""
    run = subprocess.run([_dciodvfy(), str(path)], capture_output=True, text=True, timeout=120, check=False)
    lines = [line.strip() for line in (run.stdout + run.stderr).splitlines()]
    return [line for line in lines if line.startswith("Error")], [line for line in lines if line.startswith("Warn")]


def assert_no_errors_of_our_making(result: Path, source: pydicom.Dataset, tmp_path: Path) -> list[str]:
    """dciodvfy finds no error in ``result`` that it does not also find in the ``source`` image; the warnings."""
    source_file = tmp_path / "source.dcm"
    source.save_as(source_file, enforce_file_format=True)
    inherited = set(dciodvfy(source_file)[0])
    errors, warnings = dciodvfy(result)
    assert [line for line in errors if line not in inherited] == [], f"dciodvfy {result}"
    print(f"dciodvfy {result.name}: {len(errors)} error(s) of the source", *errors, *warnings, sep="\n  ")
    return errors


def _check_both(case: Case, tmp_path: Path) -> list[str]:
    seg = write_dicom_seg(case.labels, case.table, case.sources, tmp_path / "seg.dcm")
    rtstruct = write_rtstruct(case.labels, case.table, case.sources, tmp_path / "rtstruct.dcm")
    assert seg is not None
    errors = assert_no_errors_of_our_making(seg, case.sources[0], tmp_path)
    return errors + assert_no_errors_of_our_making(rtstruct, case.sources[0], tmp_path)


def test_oblique_synthetic_series(oblique_case: Case, tmp_path: Path) -> None:
    # The synthetic CT has no PositionReferenceIndicator: the RTSTRUCT still has it, empty (type 2).
    assert _check_both(oblique_case, tmp_path) == []


def test_dciodvfy_check_can_fail(oblique_case: Case, tmp_path: Path) -> None:
    rtstruct = write_rtstruct(oblique_case.labels, oblique_case.table, oblique_case.sources, tmp_path / "rt.dcm")
    broken = pydicom.dcmread(rtstruct)
    del broken.StructureSetLabel  # type 1
    broken.save_as(tmp_path / "broken.dcm")
    with pytest.raises(AssertionError, match="StructureSetLabel"):
        assert_no_errors_of_our_making(tmp_path / "broken.dcm", oblique_case.sources[0], tmp_path)


@pytest.mark.data
def test_real_deidentified_series(sts019: Case, tmp_path: Path) -> None:
    """IBSI STS_019: PatientIdentityRemoved YES (DeidentificationMethod must come along) and an over-long StudyID
    (the source's error, the only one)."""
    errors = _check_both(sts019, tmp_path)
    assert all("Study ID" in line or "invalid data values" in line for line in errors)


@pytest.mark.data
def test_real_jpeg2000_series_with_five_organs(totalseg: Case, tmp_path: Path) -> None:
    assert _check_both(totalseg, tmp_path) == []
