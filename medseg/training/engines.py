"""Run a MONAI/ignite engine from a bundle config so that a scan the reader refuses ends the run with medseg's own
one-line error (naming the file), not with MONAI's ``RuntimeError("applying transform ...")`` wrapped around it."""

from __future__ import annotations

from typing import Any

from medseg.errors import MedsegError
from medseg.io.monai_reader import unwrap_medseg_error


def run_engine(engine: Any) -> None:
    """``engine.run()``; when it fails because of a :class:`medseg.errors.MedsegError` (found in the chain of the
    error by :func:`medseg.io.monai_reader.unwrap_medseg_error`), end with ``SystemExit(that_error)``. Other errors
    pass unchanged.

    Used by the bundle's ``training``, ``evaluating`` and ``inferring`` steps
    (``"$medseg.training.run_engine(@evaluator)"``), where the reader may be
    :class:`medseg.io.monai_reader.MedsegReader` (``--image_reader medseg.io.monai_reader.MedsegReader``). MONAI's
    ``ConfigExpression`` wraps every ``Exception`` raised in a ``$`` expression in ``RuntimeError("Failed to
    evaluate ...")``; ``SystemExit`` is not an ``Exception``, so ``python -m monai.bundle run`` ends with exit status
    1 and the error's one line (``<file>: <problem>``) as its last output. In-process callers find the
    :class:`MedsegError` in the ``SystemExit``'s ``code``.
    """
    try:
        engine.run()
    except Exception as err:
        unwrapped = unwrap_medseg_error(err)
        if not isinstance(unwrapped, MedsegError):
            raise
        raise SystemExit(unwrapped) from err
