#!/usr/bin/env bash
# The main job on the real sample data in MEDSEG_DATA (default ../shared/data).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
venv="${MEDSEG_VENV:-$root/.venv}"
"$venv/bin/medseg" --help
