"""Patient-level splits: hold-out (train/valid/test) and k-fold, seeded and stratified; scaffold (group) splits.

Rows are never split independently: all records of a patient land in the same part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.model_selection import KFold as _KFold
from sklearn.model_selection import StratifiedKFold, train_test_split

from medflow.errors import ConfigError, DataError, shown

__all__ = ["Fold", "ByPatient", "KFold", "Scaffold", "Group", "SplitConfig"]


@dataclass(frozen=True)
class Fold:
    """Row indices of one train/valid/test assignment.

    `stop`, when set, holds the validation patients that early stopping watches; `valid` then holds the
    others, which no model saw during training: they choose the model, the threshold and the conformal
    quantiles (`with_stopping_part`).
    """

    index: int
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    stop: np.ndarray | None = None

    @property
    def early_stopping(self) -> np.ndarray:
        """The rows deep models stop on: `stop`, or the whole validation part when it is not split."""
        return self.valid if self.stop is None else self.stop

    def sizes(self, patient_ids: pd.Series) -> dict[str, dict[str, int]]:
        parts = [("train", self.train), ("valid", self.valid), ("test", self.test)]
        parts += [("early_stopping", self.stop)] if self.stop is not None else []
        return {part: {"rows": int(len(idx)), "patients": int(patient_ids.iloc[idx].nunique())} for part, idx in parts}

    def with_stopping_part(self, patient_ids: pd.Series, share: float, seed: int,
                           strata: pd.Series | None = None) -> Fold:
        """This fold with `share` of its validation patients set aside for early stopping (seeded, by patient,
        within each stratum when `strata` is given, so both parts keep every class)."""
        if self.stop is not None or share >= 1 or len(self.valid) == 0:
            return self
        pids = patient_ids.iloc[self.valid]
        first = ~pids.duplicated()
        patients = pids[first].to_numpy()
        if len(patients) < 4:
            return self
        groups = (strata.iloc[self.valid][first].astype(str).to_numpy() if strata is not None
                  else np.zeros(len(patients), dtype=str))
        rng = np.random.default_rng(seed + 7919 * (self.index + 1))
        chosen: set = set()
        for g in np.unique(groups):
            members = patients[groups == g]
            k = int(round(share * len(members)))
            chosen |= set(rng.choice(members, size=k, replace=False).tolist()) if k else set()
        in_stop = pids.isin(chosen).to_numpy()
        if in_stop.all() or not in_stop.any():
            return self
        return Fold(self.index, self.train, self.valid[~in_stop], self.test, self.valid[in_stop])


def _patient_strata(patient_ids: pd.Series, strata: pd.Series | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Unique patients (in first-seen order) and one stratum per patient (its first record's)."""
    first = ~patient_ids.duplicated()
    patients = patient_ids[first].to_numpy()
    if strata is None:
        return patients, None
    per_patient = strata[first].to_numpy()
    values, counts = np.unique(per_patient.astype(str), return_counts=True)
    if counts.min() < 2:
        raise DataError(
            f"cannot stratify: label value '{values[counts.argmin()]}' occurs in only "
            f"{counts.min()} patient(s). Add data, merge rare classes, or set split.stratify: false."
        )
    return patients, per_patient.astype(str)


def _rows_of(patient_ids: pd.Series, chosen: np.ndarray) -> np.ndarray:
    return np.flatnonzero(patient_ids.isin(set(chosen.tolist())).to_numpy())


def _split_patients(patients: np.ndarray, strata: np.ndarray | None, size: float, seed: int):

    if size <= 0:
        return patients, patients[:0], strata
    try:
        if strata is None:
            a, b = train_test_split(patients, test_size=size, random_state=seed)
            return a, b, None
        a, b, sa, _ = train_test_split(patients, strata, test_size=size, random_state=seed, stratify=strata)
        return a, b, sa
    except ValueError as exc:
        raise DataError(f"cannot split {len(patients)} patients with fraction {size}: {exc}") from exc


STOP_HELP = ("share of the validation patients that early stopping watches when a study has deep models; the "
             "rest, unseen in training, select the model, the threshold and the conformal sets (1 = all do both)")


class ByPatient(BaseModel):
    """Hold-out split by patient: `test` and `valid` are fractions of patients."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["holdout"] = "holdout"
    test: float = Field(0.2, gt=0, lt=1)
    valid: float = Field(0.1, ge=0, lt=1)
    stratify: bool = True
    early_stopping: float = Field(0.5, gt=0, le=1, description=STOP_HELP)

    def make(self, patient_ids: pd.Series, strata: pd.Series | None, seed: int,
             frame: pd.DataFrame | None = None) -> list[Fold]:
        if self.test + self.valid >= 0.9:
            raise ConfigError(f"split.test + split.valid = {self.test + self.valid:.2f}; leave at least 10% "
                              "of patients for training.")
        patients, ps = _patient_strata(patient_ids, strata if self.stratify else None)
        rest, test, rs = _split_patients(patients, ps, self.test, seed)
        train, valid, _ = _split_patients(rest, rs, self.valid / (1 - self.test), seed + 1)
        return [Fold(0, _rows_of(patient_ids, train), _rows_of(patient_ids, valid), _rows_of(patient_ids, test))]


class KFold(BaseModel):
    """k-fold cross-validation by patient; each fold's training part gives up `valid` for early stopping."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["kfold"] = "kfold"
    k: int = Field(5, ge=2, le=50)
    valid: float = Field(0.1, ge=0, lt=0.5)
    stratify: bool = True
    early_stopping: float = Field(0.5, gt=0, le=1, description=STOP_HELP)

    def make(self, patient_ids: pd.Series, strata: pd.Series | None, seed: int,
             frame: pd.DataFrame | None = None) -> list[Fold]:
        patients, ps = _patient_strata(patient_ids, strata if self.stratify else None)
        if len(patients) < self.k:
            raise DataError(f"split.k = {self.k} folds but only {len(patients)} patients.")

        if ps is None:
            splitter = _KFold(self.k, shuffle=True, random_state=seed).split(patients)
        else:
            splitter = StratifiedKFold(self.k, shuffle=True, random_state=seed).split(patients, ps)
        folds = []
        for i, (tr, te) in enumerate(splitter):
            train, valid, _ = _split_patients(patients[tr], None if ps is None else ps[tr], self.valid, seed + 1 + i)
            folds.append(Fold(i, _rows_of(patient_ids, train), _rows_of(patient_ids, valid),
                              _rows_of(patient_ids, patients[te])))
        return folds


class Scaffold(BaseModel):
    """Hold-out split by a grouping column, by default the molecules' Bemis-Murcko scaffold: every molecule
    sharing a scaffold lands in one part, so the test set asks about unseen chemotypes.

    `balanced` (chemprop v1's `scaffold_balanced`): groups larger than half the validation or test size are
    shuffled and placed first, then the small groups shuffled, each group filling train, then valid, then
    test, so the big scaffolds do not all end up in training. Without `balanced`, groups are placed largest
    first (the deterministic Bemis-Murcko split of MoleculeNet).
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["scaffold", "group"] = "scaffold"  # "group": the same split by any column (split.column)
    test: float = Field(0.1, gt=0, lt=1)
    valid: float = Field(0.1, ge=0, lt=1)
    column: str = Field("scaffold", description="the column whose values group records (molecules: scaffold)")
    balanced: bool = True
    stratify: Literal[False] = False
    early_stopping: float = Field(0.5, gt=0, le=1, description=STOP_HELP)

    def make(self, patient_ids: pd.Series, strata: pd.Series | None, seed: int,
             frame: pd.DataFrame | None = None) -> list[Fold]:
        if frame is None or self.column not in frame.columns:
            raise ConfigError(f"split.kind scaffold groups records by column '{self.column}', which the data do not "
                              "have; molecule data have 'scaffold', or set split.column.")
        if self.test + self.valid >= 0.9:
            raise ConfigError(f"split.test + split.valid = {self.test + self.valid:.2f}; leave at least 10% "
                              "of records for training.")
        groups = frame[self.column].fillna("").astype(str).to_numpy()
        pids = patient_ids.to_numpy()
        per_patient = pd.Series(groups).groupby(pids, sort=False).nunique()
        if (per_patient > 1).any():
            raise DataError(f"split.column '{self.column}': patient {shown(per_patient.index[per_patient > 1][0])} "
                            "has records in several groups; a group split would separate them.")
        members: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            members.setdefault(g, []).append(i)
        sets = list(members.values())
        n = len(groups)
        n_train, n_valid = (1 - self.test - self.valid) * n, self.valid * n
        if self.balanced:
            rng = np.random.default_rng(seed)
            big = [m for m in sets if len(m) > n_valid / 2 or len(m) > self.test * n / 2]
            small = [m for m in sets if not (len(m) > n_valid / 2 or len(m) > self.test * n / 2)]
            sets = [big[i] for i in rng.permutation(len(big))] + [small[i] for i in rng.permutation(len(small))]
        else:
            sets = sorted(sets, key=len, reverse=True)
        parts: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
        for m in sets:
            part = ("train" if len(parts["train"]) + len(m) <= n_train else
                    "valid" if len(parts["valid"]) + len(m) <= n_valid else "test")
            parts[part] += m
        if not parts["test"] or not parts["train"]:
            raise DataError(f"a scaffold split of {n} records in {len(members)} groups left no "
                            f"{'test' if not parts['test'] else 'training'} records; lower split.test or use "
                            "split.kind: holdout.")
        return [Fold(0, *(np.array(sorted(parts[p]), dtype=np.int64) for p in ("train", "valid", "test")))]


def Group(column: str, **kw: Any) -> Scaffold:  # noqa: N802 - reads like the split classes
    """Hold out whole groups: every record sharing `column`'s value lands in one part (drug-target pairs:
    `Group("target_id")` tests on unseen targets, `Group("drug_id")` on unseen drugs)."""
    return Scaffold(kind="group", column=column, **kw)


SplitConfig = ByPatient | KFold | Scaffold
