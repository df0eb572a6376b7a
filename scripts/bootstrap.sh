#!/usr/bin/env bash
# Creates (or reuses) .venv and installs medseg into it: torch first, pinned through a constraints file, then
# the rest under the same constraint, so pip never swaps in a CUDA build behind your back.
# MEDSEG_CONSTRAINTS picks the constraints file (default constraints/cpu.txt); MEDSEG_VENV the folder.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MEDSEG_VENV:-$root/.venv}"
constraints="${MEDSEG_CONSTRAINTS:-$root/constraints/cpu.txt}"
stamp="$venv/.medseg-installed"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# Reinstall only when the project's requirements changed since the last install.
want="$(cat "$root/pyproject.toml" "$constraints" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -U pip
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -c "$constraints" torch
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -c "$constraints" -e "$root[dev]"
  echo "$want" > "$stamp"
fi
