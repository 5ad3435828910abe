"""The sections of the study steps and applications that a study YAML configures (`compare_blocks:`,
`compare_modalities:`, `tune:`, `federated:`): here, so the config layer holds them without importing the code that
runs them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medflow.train.federated import FederatedConfig

__all__ = ["BlocksConfig", "ModalitiesConfig", "SearchDim", "TuneConfig", "SitesConfig", "FederateConfig"]


class BlocksConfig(BaseModel):
    """The YAML's `compare_blocks:` section; `blocks` defaults to the blocks the dataset declares."""

    model_config = ConfigDict(extra="forbid")
    blocks: dict[str, list[str]] | None = None
    model: str = "deepsurv"
    params: dict[str, Any] = {}
    k: int = Field(5, ge=2, le=20)
    repeats: int = Field(2, ge=1, le=20)
    valid: float = Field(0.15, ge=0.05, lt=0.5)
    n_bootstrap: int = Field(1000, ge=50)
    metric: str | None = None  # default: the task's primary metric (e.g. sqrt_pehe where the true effect is known)


class SearchDim(BaseModel):
    """One searched parameter: a numeric range (optionally log-scaled or integer) or a list of choices."""

    model_config = ConfigDict(extra="forbid")
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: list[Any] | None = None


class TuneConfig(BaseModel):
    """Nested hyper-parameter search (YAML: `tune:`). `space` maps a model name to its parameters, each
    `[low, high]` (integers if both are), `{low, high, log, integer}` or `{choices: [...]}`; a parameter
    named `train.<key>` (e.g. `train.lr`) searches the training options of that model."""

    model_config = ConfigDict(extra="forbid")
    trials: int = Field(20, ge=1, le=10_000)
    inner_folds: int = Field(3, ge=2, le=20)
    metric: str | None = None
    timeout_s: float | None = Field(None, gt=0)
    space: dict[str, dict[str, Any]] = {}


class SitesConfig(BaseModel):
    """Sites drawn from one dataset (when no site files are given): by a column, or label-skewed parts."""

    model_config = ConfigDict(extra="forbid")
    column: str | None = None  # one site per value (e.g. a hospital column)
    n: int = Field(3, ge=1, le=100)  # otherwise: n sites whose label mix is drawn from Dirichlet(skew)
    skew: float = Field(0.5, gt=0)  # smaller: sites more different (0.1 very non-IID; 100 nearly IID)


class FederateConfig(FederatedConfig):
    """`federated:` in a study: Flower's options, plus how to form sites from one dataset."""

    sites: SitesConfig = SitesConfig()
    model: str | None = None  # the model entry to federate (its key); default: the first deep model listed




class ModalitiesConfig(BaseModel):
    """The YAML's `compare_modalities:` section: each modality alone, each left out and all together, on shared
    repeated patient folds (docs/multimodal.md)."""

    model_config = ConfigDict(extra="forbid")
    model: str = "fusion_masked"
    params: dict[str, Any] = {}
    k: int = Field(5, ge=2, le=20)
    repeats: int = Field(1, ge=1, le=20)
    valid: float = Field(0.15, ge=0.05, lt=0.5)
    n_bootstrap: int = Field(1000, ge=50)
    metric: str | None = None  # default: the task's primary metric
    leave_one_out: bool = Field(True, description="also train every set that leaves one modality out")
