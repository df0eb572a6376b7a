"""Subcommands of this stage (filled in as the stage lands)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add this stage's subcommands to ``subparsers``."""
