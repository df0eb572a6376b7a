"""Shared fixtures. Real-data tests take ``data_root``; they skip when no data root exists, except under CI
(``CI=true``), where missing data is a failure rather than a silent skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medseg.config import data_root as _data_root


def pytest_collection_finish(session: pytest.Session) -> None:
    # pytest's exit code 5 ("no tests ran") must never pass as green.
    if not session.items and not session.config.option.collectonly:
        raise pytest.UsageError("no tests were collected: check the test paths and -k/-m filters")


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root(required=False)
    if root is None:
        if os.environ.get("CI"):
            pytest.fail("CI has no data root: shared/data must sit beside the clone or MEDSEG_DATA be set")
        pytest.skip("no real data (set MEDSEG_DATA)")
    assert root is not None
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never write into the user's cache unless they ask for it; the session cache is shared by tests.
    if "MEDSEG_CACHE" not in os.environ:
        monkeypatch.setenv("MEDSEG_CACHE", str(_session_cache(tmp_path_factory)))


_CACHE: dict[str, Path] = {}


def _session_cache(factory: pytest.TempPathFactory) -> Path:
    if "path" not in _CACHE:
        _CACHE["path"] = factory.mktemp("medseg-cache")
    return _CACHE["path"]
