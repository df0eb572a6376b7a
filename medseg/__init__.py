"""medseg: 3D-aware CT segmentation on MONAI.

The data path, one subpackage per stage:

    io/           find the CT series in a folder, read it with its exact geometry, guard that geometry, write masks
    datasets/     data_manifest.json, its validation, importers that make training-ready NIfTI datasets
    transforms/   the few transforms MONAI lacks (HU window presets, 2.5D slice stacks, body crop)
    networks/     network factory (MONAI UNet / DynUNet, FCN-8s)
    inference/    load a bundle once, segment many scans
    evaluation/   Dice / HD95 / NSD tables and plots
    reporting/    per-case summaries, QA flags, quick-look images
"""

__version__ = "0.1.0"
