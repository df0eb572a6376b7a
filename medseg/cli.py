"""The ``medseg`` command: thin subcommands over the library, one module per pipeline stage.

Each stage module exposes ``register(subparsers)``; it adds its subcommands and sets ``func`` on them. Errors
about the user's input (:class:`medseg.errors.MedsegError`) print as one line naming the file and the problem;
``--debug`` (or ``MEDSEG_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from medseg import __version__
from medseg.errors import MedsegError

# Stage modules that contribute subcommands, in the order of the data path.
COMMAND_MODULES = (
    "medseg.io.commands",
    "medseg.datasets.commands",
    "medseg.inference.commands",
    "medseg.evaluation.commands",
    "medseg.pacs.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medseg", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"medseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    debug = args.debug or os.environ.get("MEDSEG_DEBUG") == "1"
    try:
        return int(args.func(args) or 0)
    except MedsegError as err:
        if debug:
            raise
        print(f"medseg {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"medseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
