"""Models: torch modules by family plus scikit-learn baselines, all in one registry."""

from medflow.models import baselines, tabular
from medflow.models.base import Estimator, ModelSpec, build_estimator, load_estimator
from medflow.registry import models as _registry

__all__ = ["Estimator", "ModelSpec", "build_estimator", "load_estimator", "describe"]

_CLASSIFY = frozenset({"binary", "multiclass"})
_ALL = frozenset({"binary", "multiclass", "regression"})

for _spec in (
    ModelSpec("mlp", "deep", _ALL, tabular.MLPConfig, tabular.MLP,
              "multilayer perceptron (ReLU, dropout), trained with AdamW and early stopping"),
    ModelSpec("resnet_mlp", "deep", _ALL, tabular.ResNetConfig, tabular.ResNetMLP,
              "ResNet for tabular data (Gorishniy et al. 2021): residual MLP blocks with BatchNorm"),
    ModelSpec("logistic_regression", "baseline", _CLASSIFY, baselines.LogisticConfig, baselines.build_logistic,
              "L2-penalized logistic regression (scikit-learn)"),
    ModelSpec("linear_regression", "baseline", frozenset({"regression"}), baselines.RidgeConfig,
              baselines.build_ridge, "ridge regression (scikit-learn)"),
    ModelSpec("gradient_boosting", "baseline", _ALL, baselines.GradientBoostingConfig,
              baselines.build_gradient_boosting, "histogram gradient-boosted trees (scikit-learn)"),
):
    _registry.register(_spec.name)(_spec)


def describe() -> list[dict[str, str]]:
    """One row per registered model, for `medflow models`."""
    return [{"name": n, "family": s.family, "tasks": ", ".join(sorted(s.task_kinds)), "description": s.description}
            for n, s in _registry.items()]
