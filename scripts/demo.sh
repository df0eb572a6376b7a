#!/usr/bin/env bash
# The main job on real data: batch-segment a sample folder of patients with the shipped model, then score the
# masks against the clinical contours.
#
#   outputs/demo/patients/   the sample patient folder (links into MEDSEG_DATA and the import cache; nothing copied):
#                            the 4 OpenKBP validation patients the shipped model never saw (NIfTI) and one IBSI
#                            DICOM study (CT series + RTSTRUCT: shows series choice and DICOM SEG/RTSTRUCT output)
#   outputs/demo/masks/      medseg segment's output: per case <id>_seg.nii.gz, <id>.seg.nrrd, colour table,
#                            DICOM SEG + RTSTRUCT for DICOM input, quick-look PNG; summary.csv / summary.json
#   outputs/demo/evaluation/ medseg evaluate: Dice, HD95, NSD per organ for the OpenKBP patients
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
venv="${MEDSEG_VENV:-$root/.venv}"
medseg="$venv/bin/medseg"
demo="$root/outputs/demo"

"$medseg" manifest validate --dataset openkbp --dataset ibsi_sts
"$venv/bin/python" - "$demo" <<'PY'
"""Build the sample patient folder from links: OpenKBP validation patients (imported to NIfTI in the cache) and
one IBSI DICOM study straight from the data root."""
import os
import sys
from pathlib import Path

from medseg.config import data_root
from medseg.datasets import fold_datalists, prepare_dataset

demo = Path(sys.argv[1])
patients, references = demo / "patients", demo / "references"
for folder in (patients, references):
    folder.mkdir(parents=True, exist_ok=True)
prepare_dataset("openkbp")
_, validation = fold_datalists("openkbp", fold=-1)
links = {patients / f"{item['case_id']}.nii.gz": item["image"] for item in validation}
links.update({references / f"{item['case_id']}.nii.gz": item["label"] for item in validation})
links[patients / "STS_019"] = str(data_root() / "ibsi_sts" / "dicom" / "STS_019")
for link, target in links.items():
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(target, link)
print(f"sample folder: {patients} ({len(validation)} OpenKBP validation patients + 1 IBSI DICOM study)")
PY
status=0
"$medseg" segment "$demo/patients" "$demo/masks" || status=$?
mkdir -p "$demo/predicted"
for mask in "$demo"/masks/pt_*/pt_*_seg.nii.gz; do ln -sf "$mask" "$demo/predicted/$(basename "$mask")"; done
"$medseg" evaluate "$demo/predicted" "$demo/references" --labels Brainstem=1,SpinalCord=2,RightParotid=3,LeftParotid=4,Esophagus=5,Larynx=6,Mandible=7 \
    --out "$demo/evaluation"
echo "masks: $demo/masks (open <case>_seg.nii.gz or <case>.seg.nrrd in 3D Slicer over the scan)"
exit $status
