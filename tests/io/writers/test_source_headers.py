from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from medseg.io.writers.source_headers import TYPE2_PATIENT_STUDY, with_type2_attributes
from tests.io.dicom_factory import write_series


def test_missing_type2_attributes_are_added_empty_on_a_copy(tmp_path: Path) -> None:
    (path,) = write_series(tmp_path, np.zeros((1, 3, 4), dtype=np.int16))
    source = pydicom.dcmread(path)  # written without PatientBirthDate, PatientSex, ReferringPhysicianName
    keywords = source.dir()
    completed = with_type2_attributes(source)
    assert completed is not source
    assert all(completed[keyword].value == "" for keyword in ("PatientBirthDate", "PatientSex"))
    assert all(keyword in completed for keyword in TYPE2_PATIENT_STUDY)
    assert completed.StudyID == "1" and completed.PatientName == "Synthetic^Test"  # present values kept
    assert completed.file_meta is source.file_meta
    np.testing.assert_array_equal(completed.pixel_array, source.pixel_array)
    assert source.dir() == keywords and "PatientBirthDate" not in source  # the caller's dataset is untouched
    # nothing missing: no copy
    assert with_type2_attributes(completed) is completed


def test_multi_valued_person_names_keep_their_first_value_on_a_copy(tmp_path: Path) -> None:
    (path,) = write_series(tmp_path, np.zeros((1, 3, 4), dtype=np.int16))
    source = pydicom.dcmread(path)
    source.PatientName = ["Doe^John", "Roe^Jane"]
    completed = with_type2_attributes(source)
    assert completed is not source
    assert str(completed.PatientName) == "Doe^John" and completed.data_element("PatientName").VM == 1
    assert source.data_element("PatientName").VM == 2
