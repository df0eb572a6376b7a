"""Read a JSON file that must hold an object, with one-line errors that name the file and the problem."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from medseg.errors import InputError, MedsegError

# JSON's own names for what a file holds instead of an object.
_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true/false"}


def read_json_object(
    path: str | os.PathLike[str],
    what: str,
    error: type[MedsegError] = InputError,
    *,
    not_found: str | None = None,
) -> dict[str, Any]:
    """The JSON object in ``path``.

    Args:
        what: what the file is, for the messages (``"the manifest"``, ``"the bundle metadata"``).
        error: the :class:`MedsegError` subclass to raise.
        not_found: the problem to report when the file does not exist (default: the "cannot read" message).

    Raises:
        error: ``path: cannot read <what> as JSON: <reason>`` when the file is missing, unreadable, not UTF-8 or not
            JSON; ``path: <what> must be a JSON object, got an array`` (or a string...) when it holds no object.
    """
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise error(path, not_found or f"cannot read {what} as JSON: {err.strerror or err}") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(path, f"cannot read {what} as JSON: {err}") from err
    if not isinstance(value, dict):
        raise error(path, f"{what} must be a JSON object, got {_JSON_KINDS.get(type(value), 'null')}")
    return value
