"""Lazy re-exports for package ``__init__`` files (PEP 562).

``from medseg.inference import Segmenter`` keeps working, while importing a light submodule such as
``medseg.inference.options`` (what ``medseg --help`` needs) no longer imports torch and MONAI through its package.
A package lists its exports twice: under ``TYPE_CHECKING`` for type checkers, and in the mapping given here.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_getattr(package: str, exports: Mapping[str, Sequence[str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: each name of ``exports[module]`` is imported from ``module`` on
    first use and then kept in the package, so later look-ups do not come back here."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
