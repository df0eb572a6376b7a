from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

import medseg
from medseg.cli import COMMAND_MODULES, build_parser, main
from medseg.config import REPO_ROOT
from medseg.datasets.openkbp import LABELS as OPENKBP_LABELS


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


def test_a_named_subcommand_imports_its_own_command_module_alone() -> None:
    code = (
        "import sys, medseg.cli; medseg.cli.build_parser('segment'); "
        "print(' '.join(sorted(m for m in sys.modules if m.endswith('.commands'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["medseg.inference.commands"]


def test_every_subcommand_is_declared_with_the_module_that_adds_it() -> None:
    parser = build_parser()
    (subparsers,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    declared = [command for commands in COMMAND_MODULES.values() for command in commands]
    assert sorted(subparsers.choices) == sorted(declared)
    for command in declared:
        (only,) = [a for a in build_parser(command)._actions if isinstance(a, argparse._SubParsersAction)]
        assert command in only.choices


def test_version_names_the_default_model_without_importing_torch() -> None:
    metadata = json.loads((REPO_ROOT / "bundles" / "ct_unet" / "configs" / "metadata.json").read_text(encoding="utf-8"))
    code = "import sys, medseg.cli; print(medseg.cli.version_text()); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    *lines, torch_imported = result.stdout.strip().splitlines()
    assert torch_imported == "False"
    assert lines[0] == f"medseg {medseg.__version__}"
    assert lines[1].startswith(f"default model: {metadata['name']}, version {metadata['version']} (bundles/ct_unet")
    assert "MONAI " in lines[2] and "PyTorch " in lines[2]


def test_list_labels_needs_no_input_or_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["segment", "--list-labels"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"labels of the model ({REPO_ROOT / 'bundles' / 'ct_unet' / 'models' / 'model_config.json'}):"
    assert [line.split()[:2] for line in out[1:]] == [
        ["0", "background"],
        *[[str(i), n] for n, i in OPENKBP_LABELS.items()],
    ]
    assert out[2].split()[2] == "#e6194b"  # the colour the Slicer and DICOM outputs give label 1

    # Another model's labels: its model config beside the weights (options before or after --list-labels).
    weights = tmp_path / "run" / "model.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"")
    config = json.loads((REPO_ROOT / "bundles" / "ct_unet" / "models" / "model_config.json").read_text("utf-8"))
    config["labels"] = {"background": 0, "Liver": 1, "Spleen": 2}
    config.pop("class_names"), config.pop("num_classes")
    (weights.parent / "model_config.json").write_text(json.dumps(config), encoding="utf-8")
    assert main(["segment", "--list-labels", "--model", str(weights)]) == 0
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]] == ["background", "Liver", "Spleen"]

    assert main(["segment", "--model", str(tmp_path / "missing.pt"), "--list-labels"]) == 2
    assert capsys.readouterr().err.strip() == f"medseg segment: error: {tmp_path / 'missing.pt'}: does not exist"


def test_common_options_go_before_or_after_the_command() -> None:
    parser = build_parser()
    for argv in (["--quiet", "segment", "in", "out"], ["segment", "in", "out", "-q"]):
        args = parser.parse_args(argv)
        assert args.quiet and not args.debug
    assert parser.parse_args(["--debug", "inspect", "x"]).debug
    assert parser.parse_args(["inspect", "x", "--debug"]).debug


# A command that talks the way libraries and medseg do; run in a fresh interpreter, as the terminal runs medseg.
_NOISY = """
import argparse, logging, sys, warnings
from medseg.cli import run
def noisy(args):
    warnings.warn("LIBRARY-FUTUREWARNING", FutureWarning)
    logging.getLogger("monai.data.plugin").warning("LIBRARY-LOG")
    logging.getLogger("medseg.inference").warning("MEDSEG-WARNING")
    print("CASE-LINE")
    return int(sys.argv[1])
flags = sys.argv[2:]
sys.exit(run(argparse.Namespace(command="demo", func=noisy, debug="--debug" in flags, quiet="-q" in flags)))
"""


def _noisy(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _NOISY, *argv], capture_output=True, text=True)


def test_library_warnings_only_with_debug() -> None:
    plain = _noisy("0")
    assert plain.returncode == 0
    assert plain.stdout == "CASE-LINE\n"
    assert plain.stderr == "WARNING medseg.inference: MEDSEG-WARNING\n"
    debug = _noisy("0", "--debug")
    assert "LIBRARY-FUTUREWARNING" in debug.stderr and "LIBRARY-LOG" in debug.stderr
    assert "MEDSEG-WARNING" in debug.stderr


def test_quiet_prints_nothing_unless_the_command_fails() -> None:
    success = _noisy("0", "-q")
    assert (success.returncode, success.stdout, success.stderr) == (0, "", "")
    failure = _noisy("1", "-q")
    assert (failure.returncode, failure.stdout) == (1, "")
    assert failure.stderr == "CASE-LINE\n"  # what was held back, so the failure is explained


def test_quiet_keeps_the_tail_of_a_long_output() -> None:
    from medseg.cli import HELD_CHARACTERS, _HeldOutput

    held = _HeldOutput()
    for index in range(HELD_CHARACTERS // 10):
        held.write(f"line {index:04d}\n")  # 10 characters each, twice the limit in all
    text = held.getvalue()
    assert HELD_CHARACTERS - 10 <= len(text) <= HELD_CHARACTERS
    assert text.endswith(f"line {HELD_CHARACTERS // 10 - 1:04d}\n")
