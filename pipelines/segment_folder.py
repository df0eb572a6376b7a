"""Segment a folder of patients: the job ``medseg segment INPUT OUTPUT`` runs, as a script.

    python pipelines/segment_folder.py /data/patients outputs/
    torchrun --standalone --nproc_per_node 2 pipelines/segment_folder.py /data/patients outputs/

Same arguments, same function (:func:`medseg.inference.commands.run_segment`), same exit codes as the command:
0 all cases segmented, 1 some case failed, 2 an input error (printed as one line).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from medseg.errors import MedsegError
from medseg.inference.commands import DESCRIPTION, add_segment_arguments, run_segment


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="segment_folder.py", description=DESCRIPTION)
    add_segment_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    args = parser.parse_args(argv)
    try:
        return run_segment(args)
    except MedsegError as err:
        if args.debug:
            raise
        print(f"segment_folder: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("segment_folder: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
