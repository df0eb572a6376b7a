"""Import the manifest's training datasets into the cache, check them, and (re)compute their fingerprints.

    python pipelines/prepare_datasets.py                         # openkbp and ibsi_sts
    python pipelines/prepare_datasets.py --datasets openkbp      # only OpenKBP
    python pipelines/prepare_datasets.py --write-fingerprint     # store fresh fingerprints in data_manifest.json

Steps per dataset: validate its files against ``data_manifest.json`` (sizes + sha256, grids, label values, folds;
``--no-checksums`` skips sha256), import it into ``<MEDSEG_CACHE>/datasets/<name>`` in MSD layout (a no-op when the
cache is already complete), print the importer's findings (partial fields of view, Dice of rasterised RTSTRUCTs
against the reference masks), and compute the nnU-Net-style fingerprint from the imported NIfTI (over the dataset's
cross-validation cases: for OpenKBP the 34 fully contoured ones, see ``Dataset.fingerprint_case_ids``). A fingerprint
that differs from the stored one is reported (exit status 1) unless ``--write-fingerprint`` stores it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from medseg.config import MANIFEST_PATH
from medseg.datasets.commands import import_report_lines
from medseg.datasets.datalist import prepare_dataset
from medseg.datasets.fingerprint import compute_fingerprint, fingerprint_to_json, store_fingerprint
from medseg.datasets.manifest import load_manifest
from medseg.datasets.validate import validate_manifest
from medseg.errors import MedsegError

DEFAULT_DATASETS = ("openkbp", "ibsi_sts")


def prepare(names: Sequence[str], checksums: bool, write_fingerprint: bool, manifest_path: Path) -> int:
    """Run the steps of the module docstring for ``names``; return the exit status (0 all good)."""
    status = 0
    problems = validate_manifest(manifest_path, checksums=checksums, datasets=names)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    manifest = load_manifest(manifest_path)
    for name in names:
        start = time.perf_counter()
        folder = Path(prepare_dataset(name))
        print(
            f"{name}: {len(manifest.dataset(name).cases)} cases ready in {folder} ({time.perf_counter() - start:.1f} s)"
        )
        for line in import_report_lines(folder):
            print(line)
        fingerprint = compute_fingerprint(folder, manifest.dataset(name).fingerprint_case_ids())
        fresh = fingerprint_to_json(fingerprint)
        stored = manifest.dataset(name).fingerprint
        print(f"  fingerprint: median spacing RAS {fresh['median_spacing_ras']} mm, intensity {fresh['intensity']}")
        if write_fingerprint:
            store_fingerprint(manifest_path, name, fingerprint)
            print(f"  fingerprint stored in {manifest_path}")
        elif stored is None or [round(s, 4) for s in stored.median_spacing_ras] != fresh["median_spacing_ras"]:
            print(f"  fingerprint differs from the manifest's ({stored}); rerun with --write-fingerprint")
            status = 1
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS), help="manifest dataset names")
    parser.add_argument("--no-checksums", action="store_true", help="compare file sizes only")
    parser.add_argument("--write-fingerprint", action="store_true", help="store the computed fingerprints")
    parser.add_argument("--manifest", type=Path, default=MANIFEST_PATH, help="manifest file")
    args = parser.parse_args(argv)
    try:
        return prepare(args.datasets, not args.no_checksums, args.write_fingerprint, args.manifest)
    except MedsegError as err:
        print(f"prepare_datasets: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
