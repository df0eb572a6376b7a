from __future__ import annotations

import re
from pathlib import Path

import pytest

from medseg.errors import InputError, ManifestError
from medseg.io.json_file import read_json_object


def test_reads_an_object(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('{"labels": {"1": "spleen"}}', encoding="utf-8")
    assert read_json_object(path, "the labels") == {"labels": {"1": "spleen"}}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{", r"cannot read the thing as JSON: Expecting property name"),
        (b"\xff\xfe{}", r"cannot read the thing as JSON: 'utf-8' codec can't decode"),
        (b"[1, 2]", r"the thing must be a JSON object, got an array"),
        (b'"text"', r"the thing must be a JSON object, got a string"),
        (b"3.5", r"the thing must be a JSON object, got a number"),
        (b"true", r"the thing must be a JSON object, got true/false"),
        (b"null", r"the thing must be a JSON object, got null"),
    ],
)
def test_names_the_file_and_the_problem(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: {problem}"):
        read_json_object(path, "the thing")


def test_missing_file_and_error_class(tmp_path: Path) -> None:
    path = tmp_path / "missing.json"
    with pytest.raises(InputError, match=r"missing\.json: cannot read the thing as JSON: No such file or directory$"):
        read_json_object(path, "the thing")
    with pytest.raises(ManifestError, match=r"missing\.json: manifest not found$"):
        read_json_object(path, "the manifest", ManifestError, not_found="manifest not found")
    with pytest.raises(ManifestError, match="cannot read the manifest as JSON"):
        read_json_object(tmp_path, "the manifest", ManifestError)  # a folder: IsADirectoryError
