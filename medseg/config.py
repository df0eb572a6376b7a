"""Where medseg finds the real data and keeps its caches: one setting each.

``MEDSEG_DATA``  the data root holding the real CT datasets; defaults to ``../shared/data`` beside the repository
                 (or beside the working directory) when that exists.
``MEDSEG_CACHE`` where importers and persistent datasets write; defaults to ``<repo>/.cache`` for a checkout and
                 ``~/.cache/medseg`` otherwise. Never inside git's tracked files (``.cache/`` is ignored).
``MEDSEG_BUNDLE`` the bundle ``medseg segment`` uses when no ``--bundle`` is given; defaults to the bundle shipped
                 inside the package (:func:`medseg.inference.bundle.default_bundle`, where bundles are found).
"""

from __future__ import annotations

import os
from pathlib import Path

from medseg.errors import MedsegError

REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFEST_PATH = REPO_ROOT / "data_manifest.json"


def _is_checkout() -> bool:
    return (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "bundles").is_dir()


def bundle_root() -> str:
    """``bundle_root`` of the bundle configs run with ``python -m monai.bundle``: the working directory when it is a
    bundle folder (the model-zoo way: run from inside the bundle), else the bundle shipped with medseg. MONAI's
    ``--bundle_root PATH`` overrides it for any other bundle."""
    from medseg.inference.bundle import INFERENCE_CONFIG, SHIPPED_BUNDLE

    cwd = Path.cwd()
    return str(cwd if (cwd / INFERENCE_CONFIG).is_file() else SHIPPED_BUNDLE.resolve())


def data_root(required: bool = True) -> Path | None:
    """The real-data root: ``$MEDSEG_DATA``, else the first existing ``../shared/data`` candidate.

    Raises:
        MedsegError: if ``required`` and no data root exists (the message says how to set one).
    """
    env = os.environ.get("MEDSEG_DATA")
    if env:
        path = Path(env).expanduser()
        if path.is_dir():
            return path.resolve()
        if required:
            raise MedsegError(path, "MEDSEG_DATA points to a folder that does not exist")
        return None
    for candidate in (REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate.resolve()
    if required:
        raise MedsegError(None, "no data root: set MEDSEG_DATA to the folder holding the real CT data")
    return None


def cache_root() -> Path:
    """Folder for imported datasets and persistent caches (created on demand)."""
    env = os.environ.get("MEDSEG_CACHE")
    if env:
        path = Path(env).expanduser()
    elif _is_checkout():
        path = REPO_ROOT / ".cache"
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "medseg"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()
