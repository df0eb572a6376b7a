"""System tools some tests need (Orthanc, dciodvfy, Chromium): such a test skips with the reason when its tool is
missing, except where ``.ci/run`` installed them (``MEDSEG_REQUIRE_TOOLS=1``) or under ``CI``, where a missing tool
is a failure."""

from __future__ import annotations

import os

import pytest


def tools_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("MEDSEG_REQUIRE_TOOLS") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip the test for ``reason``, or fail it where the tools are required."""
    if tools_required():
        pytest.fail(f"{reason}; this run requires it (CI or MEDSEG_REQUIRE_TOOLS=1)")
    pytest.skip(reason)
