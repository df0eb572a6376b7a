"""Outputs of a segmented case, each in the exact geometry of the input scan:

    slicer.py  <case>_seg.nii.gz    uint8 label map (Slicer opens it as a label map)
               <case>.seg.nrrd      Slicer segmentation with segment names, colours and codes
               <case>_seg.ctbl      Slicer colour table for the NIfTI label map
    dicom.py   <case>_seg.dcm       DICOM SEG referencing the CT series (DICOM input only)
               <case>_rtstruct.dcm  RTSTRUCT referencing the CT series (DICOM input only)

``labels.py`` holds the label table (name, colour, SNOMED-CT codes) they share, ``geometry.py`` the label map <->
source DICOM slice correspondence. The case folder, with its id checked, is :func:`medseg.io.files.case_output_dir`.
"""

from medseg.io.writers.dicom import write_dicom_seg, write_rtstruct
from medseg.io.writers.labels import HEAD_NECK_LABELS, LabelInfo, label_info_for, label_table
from medseg.io.writers.slicer import write_color_table, write_label_nifti, write_seg_nrrd

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
