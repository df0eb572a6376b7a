"""K-fold cross-validation splits, made exactly as nnU-Net v2 makes ``splits_final.json``.

nnU-Net v2 (``nnunetv2.utilities.crossval_split.generate_crossval_split``) sorts the case ids, then runs
scikit-learn ``KFold(n_splits=5, shuffle=True, random_state=12345)``. KFold shuffles ``arange(n)`` with
``numpy.random.RandomState(seed).shuffle`` and cuts it into consecutive chunks, the first ``n % k`` one longer.
This module reproduces that with numpy alone, so medseg folds and nnU-Net folds of the same cases agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medseg.datasets.manifest import Fold, Folds

NNUNET_SEED = 12345
FOLD_METHOD = (
    "nnU-Net v2 generate_crossval_split: sort case ids (string order), sklearn KFold(shuffle=True, "
    "random_state=seed) == numpy RandomState(seed).shuffle(arange(n)), consecutive chunks, the first n % k one longer"
)


def make_folds(case_ids: Sequence[str], n_folds: int = 5, seed: int = NNUNET_SEED) -> Folds:
    """Split ``case_ids`` into ``n_folds`` folds whose validation parts partition the cases.

    Args:
        case_ids: unique ids; their order does not matter (they are sorted first).
        n_folds: number of folds, 2 <= n_folds <= len(case_ids).
        seed: RandomState seed (nnU-Net's default 12345).

    Returns:
        Folds with each fold's train and validation ids in sorted order.

    Raises:
        ValueError: duplicate ids or an impossible fold count.
    """
    ids = sorted(case_ids)
    if len(set(ids)) != len(ids):
        raise ValueError(f"case ids are not unique: {ids}")
    if not 2 <= n_folds <= len(ids):
        raise ValueError(f"cannot make {n_folds} folds from {len(ids)} cases")
    order = np.arange(len(ids))
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(n_folds, len(ids) // n_folds)
    sizes[: len(ids) % n_folds] += 1
    folds = []
    start = 0
    for size in sizes:
        val_idx = set(order[start : start + size].tolist())
        start += size
        folds.append(
            Fold(
                train=tuple(ids[i] for i in range(len(ids)) if i not in val_idx),
                validation=tuple(ids[i] for i in sorted(val_idx)),
            )
        )
    return Folds(n_folds=n_folds, seed=seed, method=FOLD_METHOD, cases=tuple(ids), folds=tuple(folds))


def fold_problems(folds: Folds, known_cases: Sequence[str]) -> list[str]:
    """Everything wrong with ``folds`` as a list of sentences (empty when they are a proper K-fold split).

    Checks: fold count, every referenced id is a known case, each fold's train and validation are disjoint and
    together cover ``folds.cases``, the validation parts partition ``folds.cases``, and the folds equal those
    :func:`make_folds` makes from the same ids and seed (so they are reproducible).
    """
    problems = []
    known = set(known_cases)
    scope = set(folds.cases)
    if len(scope) != len(folds.cases):
        problems.append("folds.cases lists an id twice")
    for case_id in sorted(scope - known):
        problems.append(f"folds.cases names {case_id!r}, which is not a case of the dataset")
    if len(folds.folds) != folds.n_folds:
        problems.append(f"n_folds is {folds.n_folds} but {len(folds.folds)} folds are listed")
    seen: dict[str, int] = {}
    for i, fold in enumerate(folds.folds):
        train, val = set(fold.train), set(fold.validation)
        for case_id in sorted((train | val) - known):
            problems.append(f"fold {i} names {case_id!r}, which is not a case of the dataset")
        for case_id in sorted(train & val):
            problems.append(f"fold {i} has {case_id!r} in both train and validation")
        missing = scope - train - val
        if missing:
            problems.append(f"fold {i} uses neither for training nor validation: {sorted(missing)}")
        extra = (train | val) - scope
        if extra and not extra - known:
            problems.append(f"fold {i} names cases outside folds.cases: {sorted(extra)}")
        for case_id in val:
            seen[case_id] = seen.get(case_id, 0) + 1
    twice = sorted(c for c, n in seen.items() if n > 1)
    if twice:
        problems.append(f"cases validated in more than one fold: {twice}")
    never = sorted(scope - set(seen))
    if never:
        problems.append(f"cases validated in no fold: {never}")
    if not problems and len(scope) >= folds.n_folds >= 2:
        expected = make_folds(folds.cases, folds.n_folds, folds.seed)
        got = [(sorted(f.train), sorted(f.validation)) for f in folds.folds]
        want = [(list(f.train), list(f.validation)) for f in expected.folds]
        if got != want:
            problems.append(f"folds differ from make_folds(seed={folds.seed}): they are not reproducible")
    return problems
