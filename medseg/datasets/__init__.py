"""Stage 0: what data exists (data_manifest.json), whether it is intact, and importers that turn raw datasets
(OpenKBP CSV, DICOM + RTSTRUCT, MSD/nnU-Net folders) into training-ready NIfTI in the cache."""

from medseg.datasets.datalist import fold_datalists, label_names, prepare_dataset, spacing_fingerprint

__all__ = ["fold_datalists", "label_names", "prepare_dataset", "spacing_fingerprint"]
