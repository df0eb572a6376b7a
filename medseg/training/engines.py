"""Run a MONAI/ignite engine from a bundle config so that a scan the reader refuses ends the run with medseg's own
one-line error (naming the file), not with MONAI's ``RuntimeError("applying transform ...")`` wrapped around it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medseg.errors import MedsegError
from medseg.model_spec import check_model_config
from medseg.training.run_dir import jsonable, log_to_file, write_run_config


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
        from medseg.io.monai_reader import unwrap_medseg_error  # here: training itself never needs the readers

        unwrapped = unwrap_medseg_error(err)
        if not isinstance(unwrapped, MedsegError):
            raise
        raise SystemExit(unwrapped) from err


def run_training(
    trainer: Any,
    evaluator: Any,
    run_dir: str,
    run_config: dict[str, Any],
    handlers: Sequence[Any] = (),
    main_process_handlers: Sequence[Any] = (),
    evaluator_handlers: Sequence[Any] = (),
    early_stop: Any = None,
    is_main_process: bool = True,
) -> None:
    """The bundle's ``training`` step: check ``run_config`` as inference will read it
    (:func:`medseg.model_spec.check_model_config`: a run never trains a model its config cannot describe), log to
    ``run_dir/train.log`` and write ``run_config.json`` (main process), attach the handlers that need the finished
    trainer (resume first, so it restores before the others start), then :func:`run_engine`.

    Args:
        handlers: attached to the trainer in every process, in order (``None`` entries are skipped).
        main_process_handlers: attached to the trainer in the main process only (files, TensorBoard).
        evaluator_handlers: attached to ``evaluator`` (the trainer's validator) in the main process only.
        early_stop: an ``EarlyStopHandler`` (or ``None``) that stops ``trainer``.
    """
    check_model_config(json.loads(json.dumps(run_config, default=jsonable)), Path(run_dir) / "run_config.json")
    if is_main_process:
        log_to_file(run_dir)
        write_run_config(run_dir, run_config)
    chosen = [*handlers, *(main_process_handlers if is_main_process else ())]
    for handler in chosen:
        if handler is not None:
            handler.attach(trainer)
    if is_main_process:
        for handler in evaluator_handlers:
            if handler is not None:
                handler.attach(evaluator)
    if early_stop is not None:
        early_stop.set_trainer(trainer)
    run_engine(trainer)
