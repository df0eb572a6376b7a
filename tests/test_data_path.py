"""The data path stays short and documented: the medseg modules whose code runs while ``medseg segment`` turns one
real DICOM study into its mask, in the order they first run, are few, and the README's data-path section names
each of them.

The trace records, with ``sys.setprofile``, every medseg function called after start-up; code that runs while a
module is being imported (constants, class bodies) is not part of the way a scan goes. "Up to the mask" ends where
the writers start (:mod:`medseg.inference.outputs`).
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import medseg
from medseg.cli import main
from medseg.config import REPO_ROOT

PACKAGE = Path(medseg.__file__).resolve().parent
# At most half of the ~40 modules the way went through before issue 10 (a DICOM folder to its mask).
MAX_MODULES_TO_MASK = 20


def _at_import(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def trace_modules(argv: list[str]) -> list[str]:
    """The medseg modules (paths relative to the package) whose functions run during ``medseg argv``, in the order
    they first run."""
    order: dict[str, None] = {}
    prefix = str(PACKAGE) + "/"

    def profile(frame: FrameType, event: str, _: Any) -> None:
        if event != "call":
            return
        filename = frame.f_code.co_filename
        if filename.startswith(prefix):
            module = filename[len(prefix) :]
            if module not in order and not _at_import(frame):
                order[module] = None

    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        assert main(argv) == 0
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    return list(order)


@pytest.fixture(scope="module")
def dicom_trace(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    patients = tmp_path_factory.mktemp("patients")
    (patients / "STS_003").symlink_to(data_root / "ibsi_sts" / "dicom" / "STS_003", target_is_directory=True)
    return trace_modules(["segment", str(patients), str(tmp_path_factory.mktemp("out")), "-q"])


def test_a_dicom_study_reaches_its_mask_through_few_modules(dicom_trace: list[str]) -> None:
    assert "inference/outputs.py" in dicom_trace, dicom_trace
    to_mask = dicom_trace[: dicom_trace.index("inference/outputs.py")]
    assert {"io/readers.py", "transforms/preprocessing.py", "inference/model_grid.py"} <= set(to_mask), to_mask
    assert len(to_mask) <= MAX_MODULES_TO_MASK, f"{len(to_mask)} modules on the way to the mask: {to_mask}"


def test_the_readme_names_every_module_of_the_way_in_order(dicom_trace: list[str]) -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The data path", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"`medseg/([\w/]+\.py)`", section)
    missing = [module for module in dicom_trace if module not in named]
    assert not missing, f"the README's data-path section does not name {missing}"
    # The steps follow the scan: read, back to the scan's grid, postprocess, write, each naming its module.
    steps = re.split(r"\n\d+\. ", section)
    stages = [
        ("io/readers.py", "read_scan"),
        ("inference/model_grid.py", "labels_on_grid"),
        ("inference/postprocess.py", "clean_label_map"),
        ("inference/outputs.py", "write_case_outputs"),
    ]
    where = []
    for module, function in stages:
        (step,) = [i for i, text in enumerate(steps) if f"`{function}`" in text]
        assert f"`medseg/{module}`" in steps[step], (module, steps[step])
        where.append(step)
    assert where == sorted(where) and len(set(where)) == len(where), where
