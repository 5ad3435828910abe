import numpy as np
import pandas as pd
import pytest

from medflow.data.splits import ByPatient, KFold
from medflow.errors import DataError
from tests.conftest import make_frame


def _patients(frame, idx):
    return set(frame["pid"].iloc[idx])


def test_holdout_keeps_patients_together():
    frame = make_frame(300, rows_per_patient=3)
    fold = ByPatient(test=0.2, valid=0.1).make(frame["pid"], frame["y"], seed=0)[0]
    parts = [_patients(frame, i) for i in (fold.train, fold.valid, fold.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert len(fold.train) + len(fold.valid) + len(fold.test) == len(frame)
    assert abs(len(parts[2]) - 20) <= 1 and abs(len(parts[1]) - 10) <= 1


def test_holdout_is_seeded_and_stratified():
    frame = make_frame(400)
    a = ByPatient().make(frame["pid"], frame["y"], seed=3)[0]
    b = ByPatient().make(frame["pid"], frame["y"], seed=3)[0]
    c = ByPatient().make(frame["pid"], frame["y"], seed=4)[0]
    assert np.array_equal(a.test, b.test) and not np.array_equal(a.test, c.test)
    overall = frame["y"].mean()
    assert abs(frame["y"].iloc[a.test].mean() - overall) < 0.02


def test_kfold_tests_every_patient_once():
    frame = make_frame(200, rows_per_patient=2)
    folds = KFold(k=4).make(frame["pid"], frame["y"], seed=0)
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested.tolist()) == list(range(len(frame)))
    for f in folds:
        assert not (_patients(frame, f.train) & _patients(frame, f.test))
        assert not (_patients(frame, f.valid) & _patients(frame, f.test))


def test_stratify_needs_two_patients_per_class():
    frame = pd.DataFrame({"pid": range(10), "y": [0] * 9 + [1]})
    with pytest.raises(DataError, match="occurs in only 1 patient"):
        ByPatient().make(frame["pid"], frame["y"], seed=0)


def test_early_stopping_part_is_a_seeded_patient_split_of_validation():
    pid = pd.Series(np.repeat([f"p{i}" for i in range(200)], 2))
    fold = ByPatient(test=0.2, valid=0.2).make(pid, None, seed=0)[0]
    split = fold.with_stopping_part(pid, 0.5, seed=0)
    stop_p, sel_p = set(pid.iloc[split.stop]), set(pid.iloc[split.valid])
    assert not stop_p & sel_p and stop_p | sel_p == set(pid.iloc[fold.valid])  # whole patients, disjoint
    assert len(stop_p) == 20 and len(sel_p) == 20
    assert np.array_equal(split.train, fold.train) and np.array_equal(split.test, fold.test)
    again = fold.with_stopping_part(pid, 0.5, seed=0)
    assert np.array_equal(again.stop, split.stop)  # seeded
    assert fold.with_stopping_part(pid, 1.0, seed=0) is fold  # 1 = the old behaviour: all validation does both
    assert split.sizes(pid)["early_stopping"]["patients"] == 20
    label = pd.Series(np.repeat(np.arange(200) % 10 == 0, 2).astype(int))  # 10% positives
    strat = fold.with_stopping_part(pid, 0.5, seed=0, strata=label)
    for part in (strat.stop, strat.valid):  # both halves keep the rare class
        assert label.iloc[part].sum() > 0
