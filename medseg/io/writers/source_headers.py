"""The source CT headers as the DICOM writers need them.

De-identification often removes type-2 patient and study attributes (PatientBirthDate, ReferringPhysicianName...)
that must be present, possibly empty, in an object derived from the series; highdicom reads them from the first
source image and fails with ``AttributeError`` when they are absent. :func:`with_type2_attributes` gives a copy
with the missing ones empty, leaving the caller's dataset as it is.

Person names are single-valued (VM 1, PS3.3 C.7.1.1); exports with several values in PatientName (``Doe^John\\
Roe^Jane``) exist, and highdicom refuses them (``TypeError: Invalid type for a person name``). The copy keeps the
first value, the one a PACS files the patient under.
"""

from __future__ import annotations

from pydicom.dataelem import DataElement
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


# Person-name attributes a derived object copies from the source; each has VM 1.
PERSON_NAMES = ("PatientName", "ReferringPhysicianName")


def _multi_valued(source: Dataset, keyword: str) -> bool:
    if keyword not in source:
        return False
    element = source.data_element(keyword)
    return element is not None and element.VM > 1


def with_type2_attributes(source: Dataset) -> Dataset:
    """``source`` itself when it has every attribute of :data:`TYPE2_PATIENT_STUDY` and single-valued person
    names, else a shallow copy (its own element table, the same elements and file meta) with the missing ones added
    empty and multi-valued person names reduced to their first value."""
    missing = [keyword for keyword in TYPE2_PATIENT_STUDY if keyword not in source]
    several = [keyword for keyword in PERSON_NAMES if _multi_valued(source, keyword)]
    if not missing and not several:
        return source
    copy = Dataset()
    for element in source.elements():  # raw elements stay raw: nothing is decoded or re-validated
        copy[element.tag] = element
    if hasattr(source, "file_meta"):
        copy.file_meta = source.file_meta
    for keyword in missing:
        setattr(copy, keyword, "")
    for keyword in several:
        names = source.data_element(keyword)
        assert names is not None
        # A new element: the copy shares the source's element objects, which must not change.
        copy[names.tag] = DataElement(names.tag, "PN", names.value[0])
    return copy
