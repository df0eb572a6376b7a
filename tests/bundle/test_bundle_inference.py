"""The bundle's own ``inference.json`` (on its own, as ``python -m monai.bundle run`` parses it) on a real scan far
smaller than the sliding window, with a tiny random network and no data manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from medseg.model_spec import MODEL_KEYS
from tests.bundle.conftest import CONFIGS
from tests.inference.helpers import MODEL_CONFIG

ORGANS: dict[str, int] = MODEL_CONFIG["labels"]


def bundle_run_parser(tmp_path: Path, inputs: Path, **changes: Any) -> ConfigParser:
    """``inference.json`` as ``python -m monai.bundle run`` parses it, on ``inputs``, with seeded
    random weights in ``tmp_path/models`` beside their model config (:data:`MODEL_CONFIG` with the model-key
    ``changes``; other ``changes`` override bundle keys)."""
    models = tmp_path / "models"
    models.mkdir()
    model_config = {**MODEL_CONFIG, **{key: value for key, value in changes.items() if key in MODEL_KEYS}}
    (models / "model_config.json").write_text(json.dumps(model_config))
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser.update(
        {
            "ckpt_path": str(models / "model.pt"),
            "dataset_dir": str(inputs),
            "output_dir": str(tmp_path / "out"),
            "device": "cpu",
            **{key: value for key, value in changes.items() if key not in MODEL_KEYS},
        }
    )
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), models / "model.pt")
    return parser


@pytest.mark.data
def test_a_scan_smaller_than_a_third_of_the_window_comes_back_on_its_grid(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # IBSI STS_019 is a 136 x 134 x 47 crop at 0.98 x 0.98 x 3.27 mm: at 4.688 x 4.688 x 2.5 mm its body crop is
    # about 29 x 25 x 61 voxels, against 96^3 windows. torch's "reflect" padding in the sliding window cannot pad
    # more than the image size; the chain's symmetric SpatialPadd can, and Invertd undoes it.
    monkeypatch.setattr("medseg.config.MANIFEST_PATH", tmp_path / "no" / "data_manifest.json")
    scan = data_root / "ibsi_sts" / "nifti" / "STS_019" / "CT_image.nii.gz"
    inputs = tmp_path / "scans"
    inputs.mkdir()
    (inputs / "STS_019.nii.gz").symlink_to(scan)
    parser = bundle_run_parser(tmp_path, inputs, patch_size=[96, 96, 96], channels=[4, 8, 16])
    preprocessed = parser.get_parsed_content("preprocessing")({"image": str(scan)})["image"]
    assert tuple(preprocessed.shape[1:]) == (96, 96, 96)  # mirror-padded up to the window
    assert preprocessed.applied_operations[-2]["class"] == "CropForeground"
    body_crop = preprocessed.applied_operations[-1]["orig_size"]
    assert all(n < 96 / 3 for n in body_crop[:2]), body_crop  # reflect padding would have failed
    parser.get_parsed_content("run")

    source = nib.load(scan)
    mask = nib.load(tmp_path / "out" / "STS_019_seg.nii.gz")
    assert mask.shape == source.shape == (136, 134, 47) and mask.get_data_dtype() == np.uint8
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-5)
    values = np.unique(np.asarray(mask.dataobj))
    assert set(values.tolist()) <= set(ORGANS.values()) and values.max() > 0


@pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader:UserWarning")
def test_a_file_medsegs_reader_refuses_ends_the_run_with_its_one_line_error(tmp_path: Path) -> None:
    inputs = tmp_path / "scans"
    inputs.mkdir()
    (inputs / "broken.nii.gz").write_bytes(b"\x1f\x8b not a nifti")
    parser = bundle_run_parser(
        tmp_path,
        inputs,
        labels={"background": 0, "Organ": 1},
        spacing=[4.0, 4.0, 4.0],
        patch_size=[16, 16, 16],
        channels=[4, 8],
        image_reader="medseg.io.monai_reader.MedsegReader",
    )
    with pytest.raises(SystemExit) as caught:  # what `python -m monai.bundle run` prints as its last line
        parser.get_parsed_content("run")
    assert str(caught.value.code).startswith(f"{inputs / 'broken.nii.gz'}: ")
