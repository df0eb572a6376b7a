#!/usr/bin/env bash
# The main job on real data: batch-segment a sample folder of patients with the shipped model, then score the
# masks against the clinical contours.
#
#   outputs/demo/patients/   the sample patient folder (links into MEDSEG_DATA and the import cache; nothing copied):
#                            the 33 OpenKBP validation patients the shipped model never saw (NIfTI) and one IBSI
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
"""Build the sample patient folder from links: the OpenKBP validation patients (imported to NIfTI in the cache,
with contoured.json naming the organs drawn for each; pipelines/score_validation.py does the same) and one IBSI
DICOM study straight from the data root."""
import os
import sys
from pathlib import Path

from medseg.config import data_root
from pipelines.score_validation import prepare

demo = Path(sys.argv[1])
_, count = prepare(demo)
study = demo / "patients" / "STS_019"
if study.is_symlink() or study.exists():
    study.unlink()
os.symlink(data_root() / "ibsi_sts" / "dicom" / "STS_019", study)
print(f"sample folder: {demo / 'patients'} ({count} OpenKBP validation patients + 1 IBSI DICOM study)")
PY
status=0
"$medseg" segment "$demo/patients" "$demo/masks" || status=$?
mkdir -p "$demo/predicted"
for mask in "$demo"/masks/pt_*/pt_*_seg.nii.gz; do ln -sf "$mask" "$demo/predicted/$(basename "$mask")"; done
"$medseg" evaluate "$demo/predicted" "$demo/references" --labels Brainstem=1,SpinalCord=2,RightParotid=3,LeftParotid=4,Esophagus=5,Larynx=6,Mandible=7 \
    --contoured "$demo/contoured.json" --out "$demo/evaluation"
echo "masks: $demo/masks (open <case>_seg.nii.gz or <case>.seg.nrrd in 3D Slicer over the scan)"
exit $status
