"""The source CT headers as the DICOM writers need them.

De-identification often removes type-2 patient and study attributes (PatientBirthDate, ReferringPhysicianName...)
that must be present, possibly empty, in an object derived from the series; highdicom reads them from the first
source image and fails with ``AttributeError`` when they are absent. :func:`with_type2_attributes` gives a copy
with the missing ones empty, leaving the caller's dataset as it is.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

# Type-2 attributes of the Patient and General Study modules (PS3.3 C.7.1.1, C.7.2.1) that a derived object copies.
TYPE2_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


def with_type2_attributes(source: Dataset) -> Dataset:
    """``source`` itself when it has every attribute of :data:`TYPE2_PATIENT_STUDY`, else a shallow copy (its own
    element table, the same elements and file meta) with the missing ones added empty."""
    missing = [keyword for keyword in TYPE2_PATIENT_STUDY if keyword not in source]
    if not missing:
        return source
    copy = Dataset()
    for element in source.elements():  # raw elements stay raw: nothing is decoded or re-validated
        copy[element.tag] = element
    if hasattr(source, "file_meta"):
        copy.file_meta = source.file_meta
    for keyword in missing:
        setattr(copy, keyword, "")
    return copy
