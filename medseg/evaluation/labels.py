"""Which label ids to evaluate and what to call them: ``--labels`` given as a JSON file, JSON text or
``NAME=ID,...``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medseg.errors import InputError
from medseg.io.files import read_json_object


def parse_label_spec(spec: str | None) -> dict[int, str] | None:
    """Turn a ``--labels`` value into ``{label_id: name}`` (background 0 never included).

    Accepted forms:

    * ``None`` or ``""``: no list; the caller evaluates every label found in either label map.
    * a JSON file or inline JSON object, either ``{"1": "spleen", ...}`` (TotalSegmentator's ``labels_total.json``)
      or ``{"spleen": 1, ...}`` (nnU-Net ``dataset.json`` ``labels``; a whole ``dataset.json`` works too);
      a ``background``/0 entry is dropped.
    * ``NAME=ID,...`` such as ``liver=5,spleen=1``; a bare ``ID`` is named ``label_ID``.

    Raises:
        InputError: unreadable JSON, an id that is not a positive integer, the same id twice, or region labels
            (nnU-Net's lists of ids), naming the bad item.
    """
    if spec is None or not spec.strip():
        return None
    text = spec.strip()
    source: str | None = None
    if text.startswith("{"):
        return _from_mapping(_load_json(text, None), None)
    if text.lower().endswith(".json") or Path(text).is_file():
        source = text
        path = Path(text)
        if not path.is_file():
            raise InputError(path, "label file does not exist")
        mapping = _load_json(path.read_text(encoding="utf-8"), path)
        if isinstance(mapping, dict) and isinstance(mapping.get("labels"), dict):
            mapping = mapping["labels"]  # a whole nnU-Net dataset.json
        return _from_mapping(mapping, source)
    return _from_pairs(text)


def _load_json(text: str, path: Path | None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(path, f"labels are not valid JSON: {err}") from None


def _as_label_id(value: Any, source: str | None, item: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InputError(source, f"label id must be a positive integer, got {item!r}")
    try:
        label_id = int(value)
    except ValueError:
        raise InputError(source, f"label id must be a positive integer, got {item!r}") from None
    if label_id < 0:
        raise InputError(source, f"label id must be a positive integer, got {item!r}")
    return label_id


def _from_mapping(mapping: Any, source: str | None) -> dict[int, str]:
    if not isinstance(mapping, dict) or not mapping:
        raise InputError(source, 'labels JSON must be a non-empty object such as {"1": "spleen"}')
    labels: dict[int, str] = {}
    keys_are_ids = all(str(key).strip().isdigit() for key in mapping)
    for key, value in mapping.items():
        if keys_are_ids:
            label_id, name = _as_label_id(key, source, f"{key}: {value}"), str(value)
        else:
            if isinstance(value, list):
                raise InputError(source, f"region labels (lists of ids) are not supported: {key!r}: {value}")
            label_id, name = _as_label_id(value, source, f"{key}: {value}"), str(key)
        _add(labels, label_id, name, source)
    return _checked(labels, source)


def _from_pairs(text: str) -> dict[int, str]:
    labels: dict[int, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.rpartition("=")
        if not sep:
            name, value = "", item
        label_id = _as_label_id(value.strip(), None, item)
        _add(labels, label_id, name.strip() or f"label_{label_id}", None)
    return _checked(labels, None)


def _add(labels: dict[int, str], label_id: int, name: str, source: str | None) -> None:
    if label_id == 0:
        return  # background is never scored
    if label_id in labels:
        raise InputError(source, f"label id {label_id} given twice ({labels[label_id]!r} and {name!r})")
    labels[label_id] = name


def _checked(labels: dict[int, str], source: str | None) -> dict[int, str]:
    if not labels:
        raise InputError(source, "no foreground label ids given")
    return dict(sorted(labels.items()))


def parse_contoured(
    path: str | os.PathLike[str] | None, labels: Mapping[int, str] | None
) -> dict[str, set[int]] | None:
    """Read ``--contoured FILE``: a JSON object ``{"case_id": ["Brainstem", 2, ...]}`` naming, per case, the organs
    drawn in its (partially contoured) reference, by name (resolved through ``labels``) or by id.

    Raises:
        InputError: the file is unreadable, not such an object, or names an organ that ``labels`` lacks.
    """
    if path is None:
        return None
    content = read_json_object(Path(path), "the contoured-organs file")
    ids = {name: label_id for label_id, name in (labels or {}).items()}
    result: dict[str, set[int]] = {}
    for case_id, organs in content.items():
        if not isinstance(organs, list):
            raise InputError(path, f"case {case_id!r}: expected a list of organ names or ids, got {organs!r}")
        drawn = set()
        for organ in organs:
            if isinstance(organ, int) and not isinstance(organ, bool):
                drawn.add(organ)
            elif isinstance(organ, str) and organ in ids:
                drawn.add(ids[organ])
            else:
                raise InputError(path, f"case {case_id!r}: unknown organ {organ!r} (pass --labels to name them)")
        result[str(case_id)] = drawn
    return result
