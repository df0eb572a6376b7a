from __future__ import annotations

import pytest

from medseg.datasets.folds import fold_problems, make_folds
from medseg.datasets.manifest import Fold, Folds


def test_matches_nnunet_kfold_reference() -> None:
    # nnU-Net v2 generate_crossval_split(["case_0".."case_6"], seed=12345, n_splits=3), computed with
    # scikit-learn's KFold(n_splits=3, shuffle=True, random_state=12345) on the sorted ids.
    folds = make_folds([f"case_{i}" for i in reversed(range(7))], n_folds=3)
    assert [(list(f.train), list(f.validation)) for f in folds.folds] == [
        (["case_0", "case_1", "case_2", "case_5"], ["case_3", "case_4", "case_6"]),
        (["case_2", "case_3", "case_4", "case_5", "case_6"], ["case_0", "case_1"]),
        (["case_0", "case_1", "case_3", "case_4", "case_6"], ["case_2", "case_5"]),
    ]


def test_folds_partition_and_are_deterministic() -> None:
    ids = [f"pt_{i}" for i in range(34)]
    folds = make_folds(ids, 5, seed=7)
    validated = [c for f in folds.folds for c in f.validation]
    assert sorted(validated) == sorted(ids)
    assert sorted(len(f.validation) for f in folds.folds) == [6, 7, 7, 7, 7]
    for fold in folds.folds:
        assert set(fold.train) | set(fold.validation) == set(ids)
        assert not set(fold.train) & set(fold.validation)
    assert make_folds(list(reversed(ids)), 5, seed=7) == folds
    assert make_folds(ids, 5, seed=8).folds != folds.folds
    assert fold_problems(folds, ids) == []


def test_impossible_fold_counts_raise() -> None:
    with pytest.raises(ValueError, match="cannot make 5 folds from 3 cases"):
        make_folds(["a", "b", "c"], 5)
    with pytest.raises(ValueError, match="not unique"):
        make_folds(["a", "a", "b"], 2)


def test_fold_problems_lists_each_fault() -> None:
    good = make_folds(["a", "b", "c", "d"], 2, seed=1)
    shuffled = Folds(2, 1, good.method, good.cases, tuple(reversed(good.folds)))
    assert any("not reproducible" in p for p in fold_problems(shuffled, ["a", "b", "c", "d"]))
    bad = Folds(
        n_folds=3,
        seed=1,
        method="hand-made",
        cases=("a", "b", "c", "d"),
        folds=(Fold(("a", "b"), ("b", "x")), Fold(("a",), ("b",))),
    )
    problems = fold_problems(bad, ["a", "b", "c", "d"])
    text = "\n".join(problems)
    assert "n_folds is 3 but 2 folds" in text
    assert "fold 0 names 'x'" in text
    assert "fold 0 has 'b' in both" in text
    assert "fold 1 uses neither for training nor validation: ['c', 'd']" in text
    assert "validated in more than one fold: ['b']" in text
    assert "validated in no fold: ['a', 'c', 'd']" in text
