"""Non-deep baselines from scikit-learn, registered beside the deep models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medflow.tasks.base import Task

__all__ = ["LogisticConfig", "GradientBoostingConfig", "RidgeConfig", "RandomForestConfig", "build_logistic",
           "build_gradient_boosting", "build_ridge", "build_random_forest"]


class LogisticConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    C: float = Field(1.0, gt=0)
    max_iter: int = Field(2000, ge=10)


class RidgeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alpha: float = Field(1.0, ge=0)


class GradientBoostingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_iter: int = Field(200, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    max_leaf_nodes: int = Field(15, ge=2)
    min_samples_leaf: int = Field(10, ge=1)
    l2_regularization: float = Field(0.0, ge=0)


class RandomForestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_estimators: int = Field(500, ge=1)
    max_features: float | str | None = Field(1.0, description="features tried per split: a share, 'sqrt', or None")
    min_samples_leaf: int = Field(1, ge=1)
    n_jobs: int = Field(-1, description="cores to use (-1: all)")


def _class_weight(task: Task) -> Any:
    return "balanced" if getattr(task, "class_weight", "none") == "balanced" else None


def build_logistic(task: Task, seed: int, **params: Any):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(class_weight=_class_weight(task), random_state=seed, **params)
    if task.kind == "multilabel":
        from sklearn.multiclass import OneVsRestClassifier

        return OneVsRestClassifier(model)
    return model


def build_ridge(task: Task, seed: int, **params: Any):
    from sklearn.linear_model import Ridge

    return Ridge(**params)


def build_gradient_boosting(task: Task, seed: int, **params: Any):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    if task.kind == "regression":
        return HistGradientBoostingRegressor(random_state=seed, early_stopping=False, **params)
    return HistGradientBoostingClassifier(random_state=seed, early_stopping=False, class_weight=_class_weight(task),
                                          **params)


def build_random_forest(task: Task, seed: int, **params: Any):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    if task.kind == "regression":
        return RandomForestRegressor(random_state=seed, **params)
    return RandomForestClassifier(random_state=seed, class_weight=_class_weight(task), **params)
