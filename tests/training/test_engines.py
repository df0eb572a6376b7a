from __future__ import annotations

from pathlib import Path

import pytest
from ignite.engine import Engine
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from medseg.errors import InputError
from medseg.io.monai_reader import MedsegReader
from medseg.training.engines import run_engine

pytestmark = pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader:UserWarning")


def _engine(image: Path) -> Engine:
    chain = Compose([LoadImaged(keys="image", reader=MedsegReader), EnsureChannelFirstd(keys="image")])
    loader = DataLoader(Dataset([{"image": str(image)}], transform=chain), batch_size=1, num_workers=0)
    engine = Engine(lambda engine, batch: None)
    # run_engine calls run() without arguments, as MONAI's engines (which hold their data loader) take it
    engine.run = lambda: Engine.run(engine, loader, max_epochs=1)  # type: ignore[method-assign]
    return engine


def test_a_file_the_reader_refuses_ends_the_run_with_medsegs_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b not a nifti")
    with pytest.raises(RuntimeError, match="applying transform"):  # what MONAI and ignite raise
        _engine(broken).run()
    with pytest.raises(SystemExit) as caught:  # not an Exception: MONAI's ConfigExpression does not wrap it
        run_engine(_engine(broken))
    assert isinstance(caught.value.code, InputError) and "broken.nii.gz" in str(caught.value.code)
    assert isinstance(caught.value.__cause__, RuntimeError)  # the original error stays in the chain


def test_other_errors_pass_unchanged() -> None:
    class Failing:
        def run(self) -> None:
            raise KeyError("not an input problem")

    with pytest.raises(KeyError, match="not an input problem"):
        run_engine(Failing())
