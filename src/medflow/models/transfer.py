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
from typing import Any

from torch import nn

from medflow.errors import ConfigError

__all__ = ["Init", "head_prefix"]


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
        copied = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
        if not any(k.endswith("weight") for k in copied):
            raise ConfigError(f"init_from {self.run}: no weights of model '{self.model}' fit the new module (an "
                              "architecture or input channel count that differs); nothing could be transferred.")
        module.load_state_dict({**target, **copied})
        head = head_prefix(module)
        if self.freeze == "backbone":
            for name, p in module.named_parameters():
                p.requires_grad_(name.startswith(head + "."))
        n_params = sum(1 for k in target if k.endswith(("weight", "bias")))
        self.report = {"source": self.run, "model": self.model, "freeze": self.freeze,
                       "tensors_copied": len(copied), "tensors_total": len(target),
                       "trainable_parameters": sum(p.numel() for p in module.parameters() if p.requires_grad),
                       "parameter_tensors": n_params}
