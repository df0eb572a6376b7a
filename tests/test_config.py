from __future__ import annotations

from pathlib import Path

import pytest

from medseg.config import cache_root, data_root
from medseg.errors import MedsegError


def test_data_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDSEG_DATA", str(tmp_path))
    assert data_root() == tmp_path.resolve()


def test_missing_data_root_names_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("MEDSEG_DATA", str(missing))
    with pytest.raises(MedsegError, match=r"nowhere.*does not exist"):
        data_root()
    assert data_root(required=False) is None


def test_cache_root_is_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDSEG_CACHE", str(tmp_path / "c"))
    assert cache_root().is_dir()


def test_default_data_root_is_the_shared_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDSEG_DATA", raising=False)
    root = data_root(required=False)
    if root is not None:
        assert root.name == "data" and root.parent.name == "shared"


def test_errors_survive_pickling() -> None:
    import pickle

    from medseg.errors import GeometryError

    err = pickle.loads(pickle.dumps(GeometryError("/scan/a.dcm", "slice gap of 202.5 mm")))
    assert isinstance(err, GeometryError)
    assert str(err) == "/scan/a.dcm: slice gap of 202.5 mm"
