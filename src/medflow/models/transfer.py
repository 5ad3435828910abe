"""Transfer learning: start a deep model from the weights of a model trained in another run.

`models: [{name: small_cnn, init_from: RUN_DIR, freeze: backbone}]` copies, before training, every tensor of
the source run's model (fold 0; the same model name unless `init_model` names another) whose name and shape
match the new module; the output layer is left freshly initialized when its shape differs (another number of
classes). `freeze: backbone` then trains only the output layer (the module's `head_layer`, else its last
`Linear`): a linear probe on the pretrained features. `freeze: none` fine-tunes everything.
BatchNorm statistics of a frozen backbone still adapt to the new data (its layers stay in training mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medflow.errors import ConfigError

__all__ = ["Init", "head_prefix", "fit_frozen_head", "load_checkpoint", "is_checkpoint"]

_WEIGHT_FILES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def head_prefix(module: nn.Module) -> str:
    """The name of the module's output layer: its `head_layer`, else its last `nn.Linear`."""
    named = getattr(module, "head_layer", None)
    if named:
        return str(named)
    linear = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise ConfigError(f"{type(module).__name__} has no output layer to keep trainable; use freeze: none.")
    return linear[-1]


@dataclass
class Init:
    """Weights to start from (their run directory and model name, for the report; `state`, the weights themselves)
    and which layers to freeze. A model never loads a run: the study hands it the weights."""

    run: str
    model: str
    state: dict[str, Any]  # the source model's weights: the caller loads them (`study.transfer_init`)
    freeze: str = "none"
    report: dict[str, Any] = field(default_factory=dict)

    def apply(self, module: nn.Module) -> None:
        """Copy matching tensors into `module`, then freeze the backbone if asked."""
        source = self.state
        target = module.state_dict()
        if self.model == "checkpoint":  # a file from elsewhere: its names may carry a wrapper's prefix
            source = _match_prefix(source, target)
        copied = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
        params = [k for k in target if k.endswith(("weight", "bias"))]
        if self.model == "checkpoint" and sum(k in copied for k in params) < len(params) - 2:  # all but a new head
            missing = sorted(k for k in target if k not in source)
            unexpected = sorted(k for k in source if k not in target)
            shape = sorted(k for k in source if k in target and target[k].shape != source[k].shape)
            raise ConfigError(f"init_from {self.run}: the checkpoint does not fit {type(module).__name__}: "
                              f"{len(missing)} missing key(s) {_few(missing)}, {len(unexpected)} unexpected "
                              f"{_few(unexpected)}, {len(shape)} of another shape {_few(shape)}. Give a checkpoint "
                              "of this architecture (the same model name and parameters), or another model.")
        if not any(k.endswith("weight") for k in copied):
            raise ConfigError(f"init_from {self.run}: no weights of model '{self.model}' fit the new module (an "
                              "architecture or input channel count that differs); nothing could be transferred.")
        module.load_state_dict({**target, **copied})
        head = head_prefix(module)
        if self.freeze in ("backbone", "features"):
            for name, p in module.named_parameters():
                p.requires_grad_(name.startswith(head + "."))
        n_params = sum(1 for k in target if k.endswith(("weight", "bias")))
        self.report = {"source": self.run, "model": self.model, "freeze": self.freeze,
                       "tensors_copied": len(copied), "tensors_total": len(target),
                       "trainable_parameters": sum(p.numel() for p in module.parameters() if p.requires_grad),
                       "parameter_tensors": n_params}


@torch.no_grad()
def fit_frozen_head(module: nn.Module, x: Any, y: np.ndarray, seed: int, class_weight: str | None = None,
                    batch_size: int = 256) -> dict[str, Any]:
    """Frozen features (EHRSHOT's protocol for a pretrained encoder): the module's representations of the training
    records (`module.represent`, computed once, eval mode), standardized, into an L2 logistic regression whose C is
    chosen by stratified cross-validation (log loss); the fitted coefficients become the module's linear head, so
    the result predicts, saves, serves and explains like any network."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    from medflow.train.trainer import take

    module.eval()
    feats = torch.cat([module.represent(take(x, np.arange(i, min(i + batch_size, len(x)))))
                       for i in range(0, len(x), batch_size)]).double().numpy()
    mean, std = feats.mean(0), feats.std(0) + 1e-6
    z = (feats - mean) / std
    y = np.asarray(y).astype(int)
    folds = min(5, int(np.bincount(y).min()) if len(np.unique(y)) > 1 else 0)
    weight = "balanced" if class_weight == "balanced" else None
    if folds >= 2:
        lr = LogisticRegressionCV(Cs=np.logspace(-4, 2, 13), cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                                  scoring="neg_log_loss", max_iter=5000, class_weight=weight).fit(z, y)
        c, how = float(np.ravel(lr.C_)[0]), f"{folds}-fold cross-validation"
    else:  # too few of a class to cross-validate: the default penalty, said so in the report
        lr = LogisticRegression(C=1.0, max_iter=5000, class_weight=weight).fit(z, y)
        c, how = 1.0, "default (too few records of a class to cross-validate)"
    head = getattr(module, getattr(module, "head_layer", "head"))
    w = lr.coef_ / std
    b = lr.intercept_ - (lr.coef_ * (mean / std)).sum(axis=1)
    if head.weight.shape != w.shape:
        raise ConfigError(f"frozen_features: the logistic regression has {w.shape[0]} output(s), the head "
                          f"{head.weight.shape[0]}; use linear_probe for this task.")
    head.weight.copy_(torch.as_tensor(w, dtype=head.weight.dtype))
    head.bias.copy_(torch.as_tensor(b, dtype=head.bias.dtype))
    return {"C": c, "C_chosen_by": how, "representation_width": int(feats.shape[1])}


def _few(keys: list[str], n: int = 4) -> str:
    return "[" + ", ".join(keys[:n]) + (", ..." if len(keys) > n else "") + "]"


def _match_prefix(source: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's names with the wrapper prefix stripped or added that makes most of them match the module's
    (`module.` from DataParallel / DDP, `model.` / `net.` from Lightning or MONAI wrappers)."""
    best, hits = source, sum(k in target for k in source)
    for prefix in ("module.", "model.", "net.", "network.", "backbone."):
        for cand in ({k.removeprefix(prefix): v for k, v in source.items()},
                     {prefix + k: v for k, v in source.items()}):
            n = sum(k in target for k in cand)
            if n > hits:
                best, hits = cand, n
    return best


def is_checkpoint(path: str | Path) -> bool:
    """A weights file (safetensors or a PyTorch state dict) or a MONAI bundle folder (models/model.pt|.ts)."""
    p = Path(path)
    return (p.is_file() and p.suffix in _WEIGHT_FILES) or (p.is_dir() and (p / "configs").is_dir()
                                                            and any((p / "models").glob("model.*")))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The tensors of a weights file or MONAI bundle, as a flat state dict; a ConfigError naming the file otherwise.

    PyTorch files load with `weights_only=True` (no code runs); Lightning / MONAI wrappers (`state_dict`, `model`,
    `network` holding the tensors) are unwrapped."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in (p / "models").glob("model.*") if f.suffix in _WEIGHT_FILES)
        if not files:
            raise ConfigError(f"init_from {p}: the MONAI bundle has no models/model.pt or model.safetensors.")
        p = files[0]
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(p)
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input
        raise ConfigError(f"init_from {p}: not a readable weights file ({type(exc).__name__}: {exc}). Give a "
                          "safetensors file or a PyTorch state dict saved with torch.save(model.state_dict()).") \
            from exc
    for key in ("state_dict", "model", "network", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, dict) else {}
    if not tensors:
        raise ConfigError(f"init_from {p}: holds no tensors by name (a whole pickled model, or an optimizer "
                          "state?); save the weights with torch.save(model.state_dict(), path).")
    return tensors
