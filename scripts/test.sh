#!/usr/bin/env bash
# The whole test suite on a fresh machine: virtual environment, lint, type check, tests (CPU is enough).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
venv="${MEDSEG_VENV:-$root/.venv}"
"$venv/bin/ruff" check medseg pipelines tests benchmarks
"$venv/bin/ruff" format --check medseg pipelines tests benchmarks
"$venv/bin/mypy" medseg pipelines
# pytest exits 5 when it collected nothing; --strict-markers and the collection check in conftest.py keep
# that from passing silently.
"$venv/bin/python" -m pytest "$@"
