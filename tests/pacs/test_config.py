"""NodeConfig: JSON file + options, every setting checked, no node without allowed callers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.errors import InputError
from medseg.pacs.config import NodeConfig
from medseg.pacs.destination import Destination


def test_file_settings_with_options_winning(tmp_path: Path) -> None:
    path = tmp_path / "node.json"
    path.write_text(
        json.dumps(
            {
                "ae_title": "SEGNODE",
                "port": 11113,
                "allowed_callers": ["ORTHANC", "CT01"],
                "quiet_seconds": 5,
                "destination": "PACS@10.0.0.5:104",
            }
        )
    )
    config = NodeConfig.load(path, {"port": 4000, "ae_title": None, "storage": tmp_path / "store"})
    assert config.ae_title == "SEGNODE"
    assert config.port == 4000
    assert config.allowed_callers == ("ORTHANC", "CT01")
    assert config.quiet_seconds == 5.0
    assert config.destination == Destination("PACS", "10.0.0.5", 104)
    assert config.storage == tmp_path / "store"


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"ae_titel": "X"}, "unknown setting(s) ae_titel"),
        ({"ae_title": "A_VERY_LONG_AE_TITLE"}, "is not a DICOM AE title"),
        ({"ae_title": "BAD\\AET"}, "is not a DICOM AE title"),
        ({"port": 70000}, "is not a TCP port number"),
        ({"port": "http"}, "is not a TCP port number"),
        ({"allowed_callers": 7}, "must be a list of AE titles"),
        ({"quiet_seconds": -1}, "quiet_seconds must be a number of seconds"),
        ({"destination": "pacs.example.org"}, "neither AET@host:port nor an http(s):// DICOMweb URL"),
        ({"bundle": ["a"]}, "bundle must be a string"),
    ],
)
def test_bad_settings_are_named(values: dict[str, object], problem: str) -> None:
    with pytest.raises(InputError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        NodeConfig.from_mapping(values)


def test_a_node_needs_allowed_callers() -> None:
    with pytest.raises(InputError, match="no calling AE title is allowed"):
        NodeConfig().require_callers()
    NodeConfig(allowed_callers=("ORTHANC",)).require_callers()


def test_destinations() -> None:
    assert str(Destination.parse("ORTHANC@127.0.0.1:4242")) == "ORTHANC@127.0.0.1:4242"
    web = Destination.parse("http://127.0.0.1:8042/dicom-web/")
    assert web.url == "http://127.0.0.1:8042/dicom-web"
    assert not web.ae_title


def test_unreadable_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "node.json"
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match=r"node\.json: the node config must be a JSON object"):
        NodeConfig.load(path)
