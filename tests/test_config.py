from __future__ import annotations

from pathlib import Path

import pytest

from medseg.config import REPO_ROOT, bundle_root, cache_root, data_root
from medseg.errors import MedsegError
from medseg.inference.bundle import SHIPPED_BUNDLE


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


def test_the_shipped_bundle_is_the_repository_bundle_in_a_checkout() -> None:
    assert SHIPPED_BUNDLE.resolve() == (REPO_ROOT / "bundles" / "ct_unet").resolve()
    assert (SHIPPED_BUNDLE / "models" / "model.pt").is_file()


def test_bundle_root_of_the_configs_is_the_working_directory_only_inside_a_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert bundle_root() == str(SHIPPED_BUNDLE.resolve())  # elsewhere, as from the repository root
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "inference.json").write_text("{}")
    assert bundle_root() == str(tmp_path)  # the model-zoo way: run from inside the bundle
