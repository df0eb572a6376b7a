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
