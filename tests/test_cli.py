from __future__ import annotations

import subprocess
import sys

import pytest

from medseg.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert "medseg" in capsys.readouterr().out


def test_console_entry_point_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "medseg", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "COMMAND" in result.stdout


def test_building_the_parser_imports_no_heavy_library() -> None:
    # `medseg --help` and argument errors must not wait for torch / MONAI / matplotlib (seconds on a busy CPU):
    # command modules import them inside their handlers, and packages re-export lazily.
    heavy = ("torch", "monai", "matplotlib", "SimpleITK")
    code = (
        "import sys, medseg.cli; medseg.cli.build_parser(); "
        f"print(' '.join(name for name in {heavy!r} if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"build_parser() imported {result.stdout.strip()}: check the command modules"
