"""What ``medseg serve`` is: its AE title and port, who may call it, where it keeps what it received, when a series
counts as complete, and where the results go; read from a JSON file, command-line options winning.

Example ``node.json``::

    {
      "ae_title": "MEDSEG",
      "host": "0.0.0.0",
      "port": 11112,
      "allowed_callers": ["ORTHANC", "CT_SCANNER_1"],
      "storage": "/var/lib/medseg",
      "quiet_seconds": 10,
      "destination": "ORTHANC@pacs.example.org:4242",
      "bundle": "bundles/ct_unet",
      "device": "auto"
    }

``destination`` is ``AET@host:port`` (C-STORE) or an ``http(s)://`` DICOMweb root (STOW-RS). The file is data: it
is read as JSON and checked key by key, never executed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from medseg.errors import InputError
from medseg.io.files import read_json_object
from medseg.pacs.destination import Destination, check_ae_title, check_port


@dataclass(frozen=True)
class NodeConfig:
    """The settings of one ``medseg serve`` (see the module notes).

    Attributes:
        allowed_callers: calling AE titles whose associations are accepted; every other caller is refused.
        quiet_seconds: a series is complete when no instance of it arrived for this long.
        retry_seconds: wait before sending results again after the destination failed.
    """

    ae_title: str = "MEDSEG"
    host: str = "127.0.0.1"
    port: int = 11112
    allowed_callers: tuple[str, ...] = ()
    storage: Path = Path("medseg-node")
    quiet_seconds: float = 10.0
    retry_seconds: float = 30.0
    destination: Destination | None = None
    calling_ae_title: str = ""
    bundle: str = "bundles/ct_unet"
    model: str | None = None
    device: str = "auto"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "node config") -> NodeConfig:
        """A config from JSON-like values, each checked; unknown keys are refused (a typo must not be ignored).

        Raises:
            InputError: an unknown key or a bad value, naming it.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            listed = ", ".join(sorted(known))
            raise InputError(None, f"{where}: unknown setting(s) {', '.join(unknown)}; known: {listed}")
        config = cls()
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if value is None:
                continue
            if key in ("ae_title", "calling_ae_title"):
                changes[key] = check_ae_title(value, f"{where}: {key}")
            elif key == "port":
                changes[key] = check_port(value, f"{where}: port")
            elif key == "allowed_callers":
                items = [value] if isinstance(value, str) else value
                if not isinstance(items, list | tuple):
                    raise InputError(None, f"{where}: allowed_callers must be a list of AE titles")
                changes[key] = tuple(check_ae_title(item, f"{where}: allowed_callers") for item in items)
            elif key in ("quiet_seconds", "retry_seconds"):
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 86400:
                    raise InputError(None, f"{where}: {key} must be a number of seconds (0-86400), got {value!r}")
                changes[key] = float(value)
            elif key == "destination":
                changes[key] = value if isinstance(value, Destination) else Destination.parse(value, where)
            elif key == "storage":
                changes[key] = Path(value)
            elif isinstance(value, str | os.PathLike):
                changes[key] = str(value)
            else:
                raise InputError(None, f"{where}: {key} must be a string, got {value!r}")
        return replace(config, **changes)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None, overrides: Mapping[str, Any] | None = None) -> NodeConfig:
        """The config of the JSON file ``path`` (none: the defaults) with ``overrides`` (command-line options; a
        ``None`` value keeps the file's setting).

        Raises:
            InputError: the file cannot be read, or a setting is unknown or bad.
        """
        values: dict[str, Any] = {}
        where = "options"
        if path is not None:
            values = read_json_object(path, "the node config")
            where = str(path)
        values.update({key: value for key, value in (overrides or {}).items() if value is not None})
        return cls.from_mapping(values, where)

    def require_callers(self) -> None:
        """Raises InputError when no calling AE title is allowed: a node that accepts anybody is not offered."""
        if not self.allowed_callers:
            raise InputError(
                None, "no calling AE title is allowed: give --allow AET (repeatable) or allowed_callers in the config"
            )
