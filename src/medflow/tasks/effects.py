"""Treatment effects: who benefits from a treatment, estimated from observational (or trial) data.

`TreatmentEffect` is a task kind beside binary, multiclass, regression and survival. Its targets are an
``(n, 7)`` float array ``[t, y, true_effect, e_hat, mu0_hat, mu1_hat, sign]``: the treatment (0/1), the observed
outcome, the true individual effect where the data know it (simulations, ACIC 2016; NaN otherwise) and
three *nuisance* estimates fitted once per study by cross-fitting (`prepare`, `medflow.tasks.nuisances`):
the propensity and the two outcome regressions; `sign` is +1 when a higher outcome is better, else -1.
Models never read the last five columns; the evaluator uses
them for the doubly robust pseudo-outcome that scores effect estimates when the truth is unknown.

A model's predictions are ``(n, 3)``: ``[mu0, mu1, cate]`` in outcome units (probabilities for a binary
outcome, so the CATE is a risk difference). Deep models (TARNet and its relatives) output the two potential
outcomes on the link scale; the task owns their factual loss.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator
from torch import nn

from medflow.errors import ConfigError, DataError, shown
from medflow.evaluate.effects import NUISANCE_COLUMNS, effect_evaluation
from medflow.tasks.base import Task
from medflow.tasks.nuisances import prepare_effects

__all__ = ["TreatmentEffect", "NUISANCE_COLUMNS"]


class TreatmentEffect(Task):
    """Conditional average treatment effect (CATE) of a binary `treatment` on an `outcome`.

    `outcome_direction` says which way is good for the patient (it sets the sign of the benefit used by the
    uplift curve and the recommendation); `benefit_threshold` is the smallest benefit, in outcome units, for
    which treatment is recommended. Overlap: patients whose cross-fitted propensity lies outside `trim` are
    dropped (and the report says how many); a study is refused when more than `max_without_overlap` of the
    patients have a propensity below `overlap_bound` or above 1 - `overlap_bound`.
    """

    kind: Literal["treatment_effect"] = "treatment_effect"
    treatment: str
    outcome: str
    outcome_kind: Literal["continuous", "binary"] = "continuous"
    outcome_direction: Literal["higher_is_better", "lower_is_better"] = "higher_is_better"
    true_effect: str | None = None
    benefit_threshold: float = 0.0
    trim: tuple[float, float] | None = None
    overlap_bound: float = Field(0.01, ge=0, lt=0.5)
    max_without_overlap: float = Field(0.05, ge=0, le=1)
    min_arm: int = Field(20, ge=2)
    post_treatment: list[str] = Field(default_factory=list)
    nuisance_folds: int = Field(5, ge=2, le=20)
    monitor_metric: ClassVar[str] = "loss"
    primary_metric: ClassVar[str] = "tau_risk"
    table_layout: ClassVar[str] = "matrix"  # predictions.parquet: target_0..6 and out_0..2 (evaluator)

    @model_validator(mode="after")
    def _check_trim(self) -> TreatmentEffect:
        if self.trim is not None and not 0 <= self.trim[0] < self.trim[1] <= 1:
            raise ValueError(f"task.trim must be [low, high] with 0 <= low < high <= 1, got {list(self.trim)}")
        return self

    @property
    def label_columns(self) -> list[str]:
        return [self.treatment, self.outcome] + ([self.true_effect] if self.true_effect else [])

    @property
    def default_metrics(self) -> list[str]:  # type: ignore[override]
        truth = ["sqrt_pehe", "ate_error"] if self.true_effect else []
        return ["ate", "tau_risk", "qini", "factual_rmse", *truth]

    @property
    def classes(self) -> list[Any]:
        return []

    @property
    def sign(self) -> float:
        """+1 when a higher outcome is better for the patient, else -1: benefit = sign * CATE."""
        return 1.0 if self.outcome_direction == "higher_is_better" else -1.0

    # -- checks ------------------------------------------------------------------------------------------
    def _column(self, frame: pd.DataFrame, col: str, role: str, source: str) -> pd.Series:
        if col not in frame.columns:
            raise DataError(f"{source}: {role} column '{col}' is missing; columns are {list(frame.columns)}. "
                            f"Fix task.{role} in the study.")
        return frame[col]

    def treatment_codes(self, frame: pd.DataFrame, source: str) -> np.ndarray:
        t = self._column(frame, self.treatment, "treatment", source)
        if t.isna().any():
            row = int(np.flatnonzero(t.isna().to_numpy())[0]) + 1
            raise DataError(f"{source}: treatment column '{self.treatment}' is empty at row {row}; every patient "
                            "needs an arm (0 = control, 1 = treated).")
        values = sorted(t.unique().tolist(), key=str)
        ok = {str(v).lower() for v in values} <= {"0", "1", "0.0", "1.0", "true", "false"}
        if not ok or len(values) > 2:
            raise DataError(f"{source}: treatment column '{self.treatment}' must be binary (0 = control, 1 = "
                            f"treated) but holds {len(values)} distinct values, e.g. {values[:6]}. Recode it to 0/1 "
                            "(one treatment against one comparator).")
        return t.astype(str).str.lower().isin(["1", "1.0", "true"]).to_numpy().astype(np.int64)

    def check(self, frame: pd.DataFrame, source: str) -> None:
        t = self.treatment_codes(frame, source)
        y = self._column(frame, self.outcome, "outcome", source)
        parsed = pd.to_numeric(y, errors="coerce")
        bad = y.notna() & parsed.isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{source}: outcome column '{self.outcome}' holds {shown(y.iloc[row])} at row {row + 1};"
                            " outcomes must be numbers.")
        for arm, name in ((1, "treated"), (0, "control")):
            n = int((t == arm).sum())
            observed = int(parsed[t == arm].notna().sum())
            if observed == 0:
                raise DataError(f"{source}: outcome '{self.outcome}' is missing for every {name} patient "
                                f"({n} of them); an effect needs outcomes in both arms.")
            if observed < self.min_arm:
                raise DataError(f"{source}: only {observed} {name} patient(s) with an outcome (treatment "
                                f"'{self.treatment}' = {arm}); at least task.min_arm = {self.min_arm} are needed. "
                                "Pool more data, or lower task.min_arm if you accept very wide intervals.")
        if parsed.isna().any():
            row = int(np.flatnonzero(parsed.isna().to_numpy())[0]) + 1
            raise DataError(f"{source}: outcome '{self.outcome}' is empty in {int(parsed.isna().sum())} record(s), "
                            f"first at row {row}; drop those records or impute the outcome before estimating effects.")
        if self.outcome_kind == "binary" and not set(parsed.unique()) <= {0.0, 1.0}:
            raise DataError(f"{source}: outcome_kind is binary but outcome '{self.outcome}' holds "
                            f"{sorted(parsed.unique())[:6]}; recode it to 0/1 or use outcome_kind: continuous.")
        if self.outcome_kind == "continuous" and parsed.nunique() < 3:
            raise ConfigError(f"{source}: outcome '{self.outcome}' has {parsed.nunique()} distinct values; set "
                              "task.outcome_kind: binary.")
        if self.true_effect:
            self._column(frame, self.true_effect, "true_effect", source)

    def check_features(self, features: list[str], source: str) -> None:
        """Refuse adjustment for covariates the user declared as measured after the treatment."""
        used = [c for c in self.post_treatment if c in features]
        if used:
            raise ConfigError(f"{source}: column(s) {used} are declared post-treatment (task.post_treatment) but are "
                              "used as covariates; adjusting for a variable the treatment can change biases the "
                              "effect. Add them to data.drop.")

    # -- state and targets -------------------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> TreatmentEffect:
        y = frame[self.outcome].astype(float)
        t = self.treatment_codes(frame, "training data")
        std = float(y.std(ddof=0)) or 1.0
        self._state = {"mean": float(y.mean()), "std": std if self.outcome_kind == "continuous" else 1.0,
                       "treated_share": float(t.mean())}
        return self

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        n = len(frame)
        cols = [self.treatment_codes(frame, "data").astype(float), frame[self.outcome].astype(float).to_numpy()]
        cols.append(frame[self.true_effect].astype(float).to_numpy() if self.true_effect else np.full(n, np.nan))
        for c in NUISANCE_COLUMNS:
            cols.append(frame[c].astype(float).to_numpy() if c in frame.columns else np.full(n, np.nan))
        cols.append(np.full(n, self.sign))
        return np.column_stack(cols)

    def strata(self, frame: pd.DataFrame) -> pd.Series | None:
        return pd.Series(self.treatment_codes(frame, "data"), index=frame.index)

    # -- the default head (TARNet): two potential-outcome columns on the link scale ---------------------
    @property
    def output_dim(self) -> int:
        return 2

    def scaled_outcome(self, y: torch.Tensor) -> torch.Tensor:
        if self.outcome_kind == "binary":
            return y
        return (y - self._state["mean"]) / self._state["std"]

    def factual_loss(self, outputs: torch.Tensor, target: torch.Tensor,
                     weights: torch.Tensor | None = None) -> torch.Tensor:
        """Loss of the potential outcome each patient actually received (the other one is never observed)."""
        t, y = target[:, 0], self.scaled_outcome(target[:, 1].to(outputs.dtype))
        factual = torch.where(t > 0.5, outputs[:, 1], outputs[:, 0])
        if self.outcome_kind == "binary":
            per = nn.functional.binary_cross_entropy_with_logits(factual, y, reduction="none")
        else:
            per = (factual - y) ** 2
        return per.mean() if weights is None else (weights * per).sum() / weights.sum()

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.factual_loss(outputs, target)

    def outcome_scale(self, link: np.ndarray) -> np.ndarray:
        """Link-scale outputs (logits, or standardized values) to outcome units."""
        z = np.asarray(link, dtype=np.float64)
        if self.outcome_kind == "binary":
            return 1.0 / (1.0 + np.exp(-z))
        return z * self._state["std"] + self._state["mean"]

    def predict_from_outputs(self, outputs: np.ndarray) -> np.ndarray:
        out = np.asarray(outputs, dtype=np.float64)
        mu0, mu1 = self.outcome_scale(out[:, 0]), self.outcome_scale(out[:, 1])
        return np.column_stack([mu0, mu1, mu1 - mu0])

    def effect_module(self, module: nn.Module) -> nn.Module:
        """The module whose single output is attributed by explanations: mu1 - mu0 on the link scale."""
        return _EffectOutput(module)

    explain_column: ClassVar[int] = 2  # the CATE column of the predictions

    def decisions(self, score: np.ndarray) -> np.ndarray:
        """Whether treatment is recommended: benefit (signed CATE) above `benefit_threshold`."""
        return self.sign * np.asarray(score, dtype=float)[:, 2] > self.benefit_threshold

    def prediction_columns(self, score: np.ndarray, entry: dict[str, Any]) -> dict[str, Any]:
        """What `Run.predict` returns per patient: both potential outcomes, the CATE with its interval, the
        benefit (CATE signed so that higher is better) and the recommendation at `benefit_threshold`."""
        s = np.asarray(score, dtype=float)
        cate = s[:, 2]
        out: dict[str, Any] = {"outcome_if_control": s[:, 0], "outcome_if_treated": s[:, 1], "cate": cate}
        iv = entry.get("interval")
        if iv:
            pct = f"{iv['coverage']:.0%}"
            out[f"cate_low_{pct}"], out[f"cate_high_{pct}"] = cate - iv["qhat"], cate + iv["qhat"]
        benefit = self.sign * cate
        out["benefit"] = benefit
        out["recommendation"] = np.where(benefit > self.benefit_threshold, "treat", "do not treat")
        return out

    # -- study-level steps -------------------------------------------------------------------------------
    def prepare(self, ds: Any, features: list[str], cfg: Any, console: Any) -> tuple[Any, Any]:
        """Overlap check, trimming and the cross-fitted nuisance estimates (see `tasks.nuisances.prepare_effects`)."""
        self.check_features(features, ds.source)
        return prepare_effects(self, ds, features, cfg, console)

    def evaluate_extra(self, valid_y: np.ndarray, valid_s: np.ndarray, test_y: np.ndarray, test_s: np.ndarray,
                       pid: np.ndarray, cfg: Any, seed: int) -> dict[str, Any]:
        return effect_evaluation(self, valid_y, valid_s, test_y, test_s, pid, cfg, seed)


class _EffectOutput(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.module(x)
        return (out[:, 1] - out[:, 0]).unsqueeze(-1)
