"""Outputs of a segmented case, each in the exact geometry of the input scan:

    nifti.py        <case>_seg.nii.gz   uint8 label map (Slicer opens it as a label map)
    seg_nrrd.py     <case>.seg.nrrd     Slicer segmentation with segment names, colours and codes
    color_table.py  <case>_seg.ctbl     Slicer colour table for the NIfTI label map
    dicom_seg.py    <case>_seg.dcm      DICOM SEG referencing the CT series (DICOM input only)
    rtstruct.py     <case>_rtstruct.dcm RTSTRUCT referencing the CT series (DICOM input only)

``labels.py`` holds the label table (name, colour, SNOMED-CT codes) they share, ``geometry.py`` the label map <->
source DICOM slice correspondence. The case folder, with its id checked, is :func:`medseg.io.files.case_output_dir`.
"""

from medseg.io.writers.color_table import write_color_table
from medseg.io.writers.dicom_seg import write_dicom_seg
from medseg.io.writers.labels import HEAD_NECK_LABELS, LabelInfo, label_info_for, label_table
from medseg.io.writers.nifti import write_label_nifti
from medseg.io.writers.rtstruct import write_rtstruct
from medseg.io.writers.seg_nrrd import write_seg_nrrd

__all__ = [
    "HEAD_NECK_LABELS",
    "LabelInfo",
    "label_info_for",
    "label_table",
    "write_color_table",
    "write_dicom_seg",
    "write_label_nifti",
    "write_rtstruct",
    "write_seg_nrrd",
]
