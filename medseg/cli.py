"""The ``medseg`` command: thin subcommands over the library, one module per pipeline stage.

Each stage module exposes ``register(subparsers)``; it adds its subcommands and sets ``func`` on them. Errors
about the user's input (:class:`medseg.errors.MedsegError`) print as one line naming the file and the problem.

What the terminal shows is meant for the user: warnings that the libraries address to their own developers
(``FutureWarning`` from MONAI's transforms, the nvImageCodec plugin notice...) and log records of other libraries
below ERROR are not shown. ``--debug`` (or ``MEDSEG_DEBUG=1``) shows them, medseg's debug log and the traceback of
an input error. ``--quiet`` prints nothing when the command succeeds (no progress bars, no per-case lines); when it
fails, what it held back is printed on stderr, so a failure never goes unexplained. The common options
(``--debug``, ``--quiet``, ``--verbose``) are taken before or after the subcommand's name.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib
import importlib.metadata
import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from medseg import __version__
from medseg.errors import MedsegError

# Stage modules that contribute subcommands, in the order of the data path, with the subcommands each adds. A
# command line that names its subcommand imports that module alone (``medseg segment`` does not load the PACS or
# the dataset importers); ``medseg --help`` and a mistyped name load them all.
COMMAND_MODULES = {
    "medseg.io.commands": ("inspect", "convert"),
    "medseg.datasets.commands": ("manifest", "import"),
    "medseg.inference.commands": ("segment",),
    "medseg.evaluation.commands": ("evaluate",),
    "medseg.pacs.commands": ("serve", "dicomweb"),
}
LIST_LABELS = "--list-labels"
# What --quiet holds back, at most (the tail is kept): enough for a batch's case lines, bounded for a service.
HELD_CHARACTERS = 1_000_000


class _VersionAction(argparse.Action):
    """``--version``: medseg's version, the default model (name, version and weights, from the bundle's
    ``configs/metadata.json``) and the versions of the libraries that make the masks."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(version_text())
        parser.exit()


def version_text() -> str:
    """What ``medseg --version`` prints (no torch import: metadata and package versions only)."""
    lines = [f"medseg {__version__}", f"default model: {default_model_text()}"]
    libraries = []
    for name, package in (("MONAI", "monai"), ("PyTorch", "torch"), ("SimpleITK", "SimpleITK")):
        try:
            libraries.append(f"{name} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            libraries.append(f"{name} not installed")
    lines.append(", ".join(libraries))
    return "\n".join(lines)


def default_model_text() -> str:
    """The default bundle's model name and version, where it is, and whether its weights are there."""
    from medseg.inference.bundle import METADATA, MODEL_FILE, read_metadata, resolve_bundle, shown_path

    try:
        bundle_dir = resolve_bundle()  # $MEDSEG_BUNDLE, else the shipped bundle: what `medseg segment` uses
        metadata = read_metadata(bundle_dir)
    except MedsegError as err:
        return f"not found ({err})"
    name = str(metadata.get("name") or bundle_dir.name)
    version = metadata.get("version")
    weights = "weights present" if (bundle_dir / MODEL_FILE).is_file() else f"no weights in {MODEL_FILE.as_posix()}"
    shown = f"version {version}" if version else f"no version in {METADATA.as_posix()}"
    return f"{name}, {shown} ({shown_path(bundle_dir)}, {weights})"


def model_labels(
    bundle: str | os.PathLike[str] | None, model_file: str | os.PathLike[str] | None
) -> tuple[dict[int, str], Path]:
    """``{label value: organ name}`` a model predicts (background left out) and the file that says so: the
    ``labels`` of the model config beside the weights, as :class:`~medseg.inference.segmenter.Segmenter` reads
    them, else the bundle metadata's channel definition.

    Raises:
        MedsegError: the bundle is missing, or its model config or metadata is invalid.
    """
    from medseg.inference.bundle import METADATA, MODEL_FILE, label_names_from_metadata, read_metadata, resolve_bundle
    from medseg.model_spec import find_model_config, read_model_config

    bundle_dir = resolve_bundle(bundle)
    weights = Path(model_file).expanduser() if model_file is not None else bundle_dir / MODEL_FILE
    if model_file is not None and not weights.is_file():
        raise MedsegError(weights, "does not exist")
    config = find_model_config(weights)
    if config is not None:
        labels = read_model_config(config)["labels"]
        return {int(index): str(name) for name, index in labels.items() if int(index) > 0}, config
    return label_names_from_metadata(read_metadata(bundle_dir), bundle_dir / METADATA), bundle_dir / METADATA


def list_labels(argv: Sequence[str]) -> int:
    """``medseg segment --list-labels [--bundle B] [--model M]``: the labels the model writes, one per line with
    the colour the Slicer and DICOM outputs give it."""
    from medseg.io.writers.labels import label_table

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--bundle")
    parser.add_argument("--model", type=Path)
    options, _ = parser.parse_known_args(argv)
    names, source = model_labels(options.bundle, options.model)
    print(f"labels of the model ({source}):")
    print("  0  background")
    for value, info in label_table(names).items():
        red, green, blue = info.color
        print(f"  {value}  {info.name:<24} #{red:02x}{green:02x}{blue:02x}")
    return 0


def _common_options(parser: argparse.ArgumentParser, on_subcommand: bool) -> None:
    """``--debug``, ``--quiet``, ``--verbose``; on a subcommand without defaults, so that one given before the
    subcommand's name is not reset by the subcommand's parser."""
    extra: dict[str, Any] = {"default": argparse.SUPPRESS} if on_subcommand else {}
    options = (
        (("--debug",), "show tracebacks of input errors, the libraries' warnings and medseg's debug log"),
        (("-q", "--quiet"), "print nothing unless the command fails (then what was held back goes to stderr)"),
        (("-v", "--verbose"), "log progress at INFO level"),
    )
    for flags, text in options:
        free = [flag for flag in flags if flag not in parser._option_string_actions]
        if free:
            parser.add_argument(*free, dest=flags[-1].lstrip("-"), action="store_true", help=text, **extra)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``medseg``; with ``command`` (a subcommand's name), only the module that adds it is
    imported and registered (all of them for ``None`` or a name no module adds)."""
    parser = argparse.ArgumentParser(prog="medseg", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=_VersionAction, help="show medseg's version and the default model's")
    _common_options(parser, on_subcommand=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = [name for name, commands in COMMAND_MODULES.items() if command in commands] or list(COMMAND_MODULES)
    for name in modules:
        importlib.import_module(name).register(subparsers)
    for command, subparser in subparsers.choices.items():
        _common_options(subparser, on_subcommand=True)
        if command == "segment":
            subparser.add_argument(
                LIST_LABELS,
                action="store_true",
                help="list the labels the model writes (with --bundle/--model: that model's) and exit",
            )
    return parser


class _LibraryFilter(logging.Filter):
    """Passes medseg's records at the handler's level and other libraries' from ERROR up."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == "medseg" or record.name.startswith("medseg.") or record.levelno >= logging.ERROR


class _HeldOutput(io.StringIO):
    """A text stream that keeps the last :data:`HELD_CHARACTERS` written to it (``--quiet``)."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: collections.deque[str] = collections.deque()
        self._size = 0

    def write(self, text: str) -> int:
        self._chunks.append(text)
        self._size += len(text)
        while self._size > HELD_CHARACTERS and len(self._chunks) > 1:
            self._size -= len(self._chunks.popleft())
        return len(text)

    def getvalue(self) -> str:
        return "".join(self._chunks)


@contextlib.contextmanager
def _terminal_logging(debug: bool, verbose: bool, quiet: bool) -> Iterator[None]:
    """medseg's log at the level the options ask, other libraries' from WARNING (``debug``) or ERROR up, on stderr;
    the logging state is restored afterwards. Where logging is already set up (an application or a test harness
    calling :func:`main`), its handlers are left as they are and only medseg's level is set."""
    root, ours = logging.getLogger(), logging.getLogger("medseg")
    saved = root.level, ours.level
    handler: logging.Handler | None = None
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        if not debug:
            handler.addFilter(_LibraryFilter())
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    ours.setLevel(logging.DEBUG if debug else logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING)
    try:
        yield
    finally:
        if handler is not None:
            root.removeHandler(handler)
        root.setLevel(saved[0])
        ours.setLevel(saved[1])


@contextlib.contextmanager
def _library_warnings(show: bool) -> Iterator[None]:
    """Hide Python warnings raised outside medseg unless ``show`` (restored afterwards)."""
    with warnings.catch_warnings():
        if not show:
            warnings.filterwarnings("ignore")
            warnings.filterwarnings("default", module=r"medseg(\.|$)")
        yield


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), None)
    parser = build_parser(None if command is None else argv[command])
    if command is not None and argv[command] == "segment" and LIST_LABELS in argv[command:]:
        # Before parse_args: INPUT and OUTPUT are not needed to list the labels (as --version needs no COMMAND).
        flags = set(argv)
        args = argparse.Namespace(command="segment", debug="--debug" in flags, quiet=bool(flags & {"-q", "--quiet"}))
        args.func = lambda _: list_labels(argv[command + 1 :])
    else:
        args = parser.parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run ``args.func`` as the options ask: library warnings hidden unless ``--debug``, output held back with
    ``--quiet`` (and shown on stderr if the command fails), input errors as one line (exit code 2)."""
    debug = bool(getattr(args, "debug", False)) or os.environ.get("MEDSEG_DEBUG") == "1"
    quiet = bool(getattr(args, "quiet", False)) and not debug
    if quiet and hasattr(args, "progress"):
        args.progress = False
    held = _HeldOutput() if quiet else None
    code = 2
    try:
        with (
            _terminal_logging(debug, bool(getattr(args, "verbose", False)), quiet),
            _library_warnings(show=debug),
            contextlib.redirect_stdout(held) if held else contextlib.nullcontext(),
        ):
            try:
                code = int(args.func(args) or 0)
            except MedsegError as err:
                if debug:
                    raise
                print(f"medseg {args.command}: error: {err}", file=sys.stderr)
                code = 2
            except KeyboardInterrupt:
                print(f"medseg {args.command}: interrupted", file=sys.stderr)
                code = 130
    finally:
        if held is not None and code != 0:
            sys.stderr.write(held.getvalue())
            sys.stderr.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
