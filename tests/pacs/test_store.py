"""SeriesStore: atomic instances grouped by series, statuses kept on disk, restart resumes."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.io.files import TMP_PREFIX
from medseg.pacs.store import SeriesStore

STUDY, SERIES, OTHER = "1.2.3", "1.2.3.4", "1.2.3.5"


def test_instances_are_grouped_by_series_and_resumed_after_a_restart(tmp_path: Path) -> None:
    store = SeriesStore.open(tmp_path)
    store.add_instance(STUDY, SERIES, "1.2.3.4.1", b"one")
    store.add_instance(STUDY, SERIES, "1.2.3.4.2", b"two")
    store.add_instance(STUDY, OTHER, "1.2.3.5.1", b"three")
    assert store.instance_count(SERIES) == 2
    assert (store.instances_dir(SERIES) / "1.2.3.4.2.dcm").read_bytes() == b"two"
    assert store.due_for_segmentation(quiet_seconds=3600) == []
    assert {s.series_uid for s in store.due_for_segmentation(quiet_seconds=0)} == {SERIES, OTHER}
    arrivals = store.state(SERIES).arrivals  # type: ignore[union-attr]
    assert store.finish(SERIES, arrivals, "segmented", results=[f"{SERIES}/{SERIES}_seg.dcm"])
    (store.series_root / OTHER / "instances" / f"{TMP_PREFIX}1234-x.dcm").write_bytes(b"half")  # a crash's leftover

    reopened = SeriesStore.open(tmp_path)
    assert reopened.state(SERIES).status == "segmented"  # type: ignore[union-attr]
    assert [s.series_uid for s in reopened.due_for_sending()] == [SERIES]
    assert [s.series_uid for s in reopened.due_for_segmentation(quiet_seconds=0)] == [OTHER]
    assert reopened.instance_count(OTHER) == 1
    assert not list(tmp_path.rglob(f"{TMP_PREFIX}*"))


def test_an_instance_arriving_during_segmentation_makes_it_run_again(tmp_path: Path) -> None:
    store = SeriesStore.open(tmp_path)
    store.add_instance(STUDY, SERIES, "1.2.3.4.1", b"one")
    arrivals = store.state(SERIES).arrivals  # type: ignore[union-attr]
    store.add_instance(STUDY, SERIES, "1.2.3.4.2", b"two")
    assert not store.finish(SERIES, arrivals, "segmented", results=["x"])
    assert store.state(SERIES).status == "received"  # type: ignore[union-attr]


def test_a_done_series_that_grows_is_segmented_again(tmp_path: Path) -> None:
    store = SeriesStore.open(tmp_path)
    store.add_instance(STUDY, SERIES, "1.2.3.4.1", b"one")
    store.finish(SERIES, 1, "failed", error="missing slice")
    assert store.due_for_segmentation(quiet_seconds=0) == []
    store.add_instance(STUDY, SERIES, "1.2.3.4.2", b"two")
    assert store.state(SERIES).status == "received"  # type: ignore[union-attr]
    assert store.state(SERIES).error == ""  # type: ignore[union-attr]


def test_an_interrupted_series_is_held_until_delivered(tmp_path: Path) -> None:
    store = SeriesStore.open(tmp_path)
    store.add_instance(STUDY, SERIES, "1.2.3.4.1", b"one")
    store.mark_interrupted({SERIES})
    assert store.due_for_segmentation(quiet_seconds=0) == []
    assert SeriesStore.open(tmp_path).state(SERIES).status == "interrupted"  # type: ignore[union-attr]
    store.mark_delivered({SERIES})
    assert [s.series_uid for s in store.due_for_segmentation(quiet_seconds=0)] == [SERIES]


def test_a_failed_send_is_retried_later(tmp_path: Path) -> None:
    store = SeriesStore.open(tmp_path)
    store.add_instance(STUDY, SERIES, "1.2.3.4.1", b"one")
    store.finish(SERIES, 1, "segmented", results=["x"])
    store.sent(SERIES, False, "peer down", retry_seconds=3600)
    assert store.due_for_sending() == []
    assert store.state(SERIES).error == "peer down"  # type: ignore[union-attr]
    store.sent(SERIES, True)
    assert store.state(SERIES).status == "sent"  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["../../etc/passwd", "1.2.x", "", "1." + "2" * 70])
def test_uids_that_are_not_uids_never_name_files(tmp_path: Path, bad: str) -> None:
    store = SeriesStore.open(tmp_path)
    with pytest.raises(ValueError, match="not a valid UID"):
        store.add_instance(STUDY, bad, "1.2.3.4.1", b"x")
    with pytest.raises(ValueError, match="not a valid UID"):
        store.add_instance(STUDY, SERIES, bad, b"x")
    assert not list((tmp_path / "series").iterdir())
