"""``medseg serve`` (a DICOM node that segments what it receives) and ``medseg dicomweb`` (pull a study from a
DICOMweb server, segment it, push the results back).

Examples::

    medseg serve --ae-title MEDSEG --port 11112 --allow ORTHANC --destination ORTHANC@127.0.0.1:4242
    medseg serve --config node.json
    medseg dicomweb http://127.0.0.1:8042/dicom-web 1.2.840.113619.2.55.3.1234
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", help="MONAI bundle folder (default $MEDSEG_BUNDLE, else the shipped bundle)")
    parser.add_argument("--model", help="weights to use instead of the bundle's models/model.pt")
    parser.add_argument("--device", help="auto (CUDA when available), cpu, cuda or cuda:N (default auto)")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``serve`` and ``dicomweb`` to ``subparsers``."""
    serve = subparsers.add_parser(
        "serve",
        help="DICOM node: receive CT series (C-STORE), segment each, send DICOM SEG + RTSTRUCT on",
        description="Listen as a DICOM C-STORE SCP; store every instance on disk (a restart resumes pending series); "
        "segment a series once no instance of it arrived for the quiet time; send the DICOM SEG and RTSTRUCT to the "
        "destination (C-STORE, or STOW-RS for an http(s) URL). Only the allowed calling AE titles may connect. "
        "Options override the config file's settings.",
    )
    serve.add_argument("--config", type=Path, help="JSON config file (see medseg.pacs.config)")
    serve.add_argument("--ae-title", help="this node's AE title (default MEDSEG)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 11112)")
    serve.add_argument(
        "--allow", action="append", metavar="AET", help="calling AE title allowed to connect (repeatable; required)"
    )
    serve.add_argument("--storage", type=Path, help="folder for received instances and results (default medseg-node)")
    serve.add_argument("--quiet-seconds", type=float, help="a series is complete after this long without an instance")
    serve.add_argument("--retry-seconds", type=float, help="wait before sending results again after a failure")
    serve.add_argument("--destination", help="where results go: AET@host:port or an http(s):// DICOMweb root")
    serve.add_argument("--calling-ae-title", help="AE title used when sending (default: --ae-title)")
    _model_arguments(serve)
    serve.set_defaults(func=run_serve)

    web = subparsers.add_parser(
        "dicomweb",
        help="pull a study from a DICOMweb server, segment it, push DICOM SEG + RTSTRUCT back (STOW-RS)",
        description="Find the study's CT series (QIDO-RS), retrieve them (WADO-RS), segment each, and store the DICOM "
        "SEG and RTSTRUCT with STOW-RS on the same server or --destination. Exit code 1 when a series failed.",
    )
    web.add_argument("url", help="DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    web.add_argument("study", help="StudyInstanceUID")
    web.add_argument(
        "--storage", type=Path, default=Path("medseg-dicomweb"), help="working folder (default %(default)s)"
    )
    web.add_argument("--destination", help="DICOMweb root to push the results to (default: url)")
    _model_arguments(web)
    web.set_defaults(func=run_dicomweb)


def _segmenter(bundle: str | None, model: str | None, device: str | None) -> Any:
    from medseg.inference.segmenter import Segmenter

    return Segmenter(bundle, device=device or "auto", model_file=model, progress=False)


def _log_info() -> None:
    logging.getLogger("medseg").setLevel(logging.INFO)


def run_serve(args: argparse.Namespace) -> int:
    """Run the node until SIGINT or SIGTERM."""
    from medseg.pacs.config import NodeConfig
    from medseg.pacs.node import DicomNode

    config = NodeConfig.load(
        args.config,
        {
            "ae_title": args.ae_title,
            "host": args.host,
            "port": args.port,
            "allowed_callers": args.allow,
            "storage": args.storage,
            "quiet_seconds": args.quiet_seconds,
            "retry_seconds": args.retry_seconds,
            "destination": args.destination,
            "calling_ae_title": args.calling_ae_title,
            "bundle": args.bundle,
            "model": args.model,
            "device": args.device,
        },
    )
    config.require_callers()
    _log_info()
    node = DicomNode(config, _segmenter(config.bundle, config.model, config.device))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    node.start()
    print(
        f"medseg serve: {config.ae_title} on {config.host}:{node.port}, accepting {', '.join(config.allowed_callers)}; "
        f"results to {config.destination or config.storage / 'results'}",
        flush=True,
    )
    node.serve_forever(stop)
    print("medseg serve: stopped", file=sys.stderr)
    return 0


def run_dicomweb(args: argparse.Namespace) -> int:
    """Pull, segment, push one study; 0 when every CT series was sent, 1 otherwise."""
    from medseg.pacs.destination import Destination
    from medseg.pacs.dicomweb import segment_dicomweb_study

    destination = Destination.parse(args.destination) if args.destination else None
    _log_info()
    result = segment_dicomweb_study(
        args.url,
        args.study,
        _segmenter(args.bundle, args.model, args.device),
        args.storage,
        destination,
    )
    for series_uid, status in result.series.items():
        error = result.errors.get(series_uid)
        print(f"series {series_uid}: {status}" + (f": {error}" if error else ""))
    return 0 if result.ok else 1
