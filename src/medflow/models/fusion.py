"""Multimodal fusion: one encoder per modality (any registered deep model of that modality, with its last layer
giving a `d`-wide embedding), joined in one of three ways:

* `fusion_late`: each modality's own evidence (a linear head on its embedding, a logit), summed over the modalities
  the patient has, plus one shared bias (late fusion as a product of experts: an absent modality adds no evidence,
  and a patient with more modalities gets a sharper prediction; averaging would blunt it).
* `fusion_masked`: intermediate fusion: the embeddings concatenated, a learned "missing" vector in place of each
  absent modality, the presence flags beside them, into an MLP; trained with modality dropout (each present
  modality hidden with probability `modality_dropout`, never all of a patient's), so the model learns to predict
  for patients who lack some modalities.
* `fusion_attention`: a learned query token attends over the present modalities' tokens (embedding + a learned
  modality-type embedding) in a small Transformer encoder; absent modalities are masked out of the attention;
  modality dropout as above.

Inputs come from `features.multimodal.MultiInputs`: per batch, `present` (batch x modalities) and each modality's
own batch for the samples that have it. The layout (each modality's kind and input shape) is saved with the model.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from medflow.errors import ConfigError

__all__ = ["FusionConfig", "FusionNet", "build_late", "build_masked", "build_attention", "DEFAULT_ENCODERS"]

# a small encoder per modality kind (the registry name and its params); `encoders:` overrides by modality or kind
DEFAULT_ENCODERS: dict[str, dict[str, Any]] = {
    # the Transformer over events: 0.640 AUROC alone on the simulator's 2,000 patients where a GRU early-stopped at
    # 0.580 (oracle 0.649; benchmarks/README.md (w))
    "events": {"name": "transformer", "params": {"d": 32, "layers": 1, "heads": 4, "dropout": 0.1}},
    "text": {"name": "text_cnn", "params": {"d": 32, "filters": 32, "dropout": 0.2}},
    "images": {"name": "small_cnn", "params": {"channels": [8, 16], "dropout": 0.1}},
    "tabular": {"name": "mlp", "params": {"hidden": 32, "depth": 1, "dropout": 0.1}},
}


class FusionConfig(BaseModel):
    """Hyper-parameters of the fusion models."""

    model_config = ConfigDict(extra="forbid")
    d: int = Field(32, ge=4, le=1024, description="each modality's embedding width")
    encoders: dict[str, str | dict[str, Any]] = Field(
        {}, description="per modality name or kind: a registry model name, or {name, params}; default: transformer "
                        "for events, text_cnn for notes, small_cnn for images, mlp for tables")
    hidden: int = Field(64, ge=4, le=4096, description="width of the fusion MLP (fusion_masked)")
    dropout: float = Field(0.1, ge=0, lt=1)
    modality_dropout: float = Field(0.2, ge=0, lt=1, description="training: hide each present modality with this "
                                                                  "probability (never all of a patient's)")
    heads: int = Field(4, ge=1, le=16, description="attention heads (fusion_attention)")
    layers: int = Field(1, ge=1, le=6, description="Transformer layers over modality tokens (fusion_attention)")


def encoder_spec(name: str, kind: str, encoders: dict[str, Any]) -> dict[str, Any]:
    """The registry model and params that encode modality `name` of `kind`."""
    given = encoders.get(name, encoders.get(kind))
    if given is None:
        if kind not in DEFAULT_ENCODERS:
            raise ConfigError(f"fusion: no default encoder for modality '{name}' ({kind}); name one under "
                              f"params.encoders.{name}.")
        return DEFAULT_ENCODERS[kind]
    return {"name": given, "params": {}} if isinstance(given, str) else {"name": given["name"],
                                                                         "params": dict(given.get("params", {}))}


def _encoder(name: str, part: dict[str, Any], d: int, encoders: dict[str, Any]) -> nn.Module:
    from medflow.registry import models

    spec_d = encoder_spec(name, part["kind"], encoders)
    if spec_d["name"] not in models:
        raise ConfigError(f"fusion: encoder '{spec_d['name']}' of modality '{name}' is not a registered model.")
    spec = models.get(spec_d["name"])
    reads = {"tabular": "tabular", "events": "events", "images": "images", "text": "text"}.get(part["kind"])
    if spec.family != "deep" or spec.inputs != reads:
        raise ConfigError(f"fusion: modality '{name}' holds {part['kind']}; its encoder must be a deep model that "
                          f"reads {reads} (got '{spec.name}', which reads {spec.inputs}).")
    kwargs = spec.params(**spec_d["params"]).model_dump()
    if "input_shape" in inspect.signature(spec.build).parameters:
        kwargs["input_shape"] = part["input_shape"]
    return spec.build(in_dim=part["in_dim"], out_dim=d, **kwargs)


class FusionNet(nn.Module):
    """Per-modality encoders joined late, by a masked MLP, or by attention over modality tokens."""

    def __init__(self, in_dim: int, out_dim: int, layout: dict[str, Any] | None = None, mode: str = "masked",
                 d: int = 32, encoders: dict[str, Any] | None = None, hidden: int = 64, dropout: float = 0.1,
                 modality_dropout: float = 0.2, heads: int = 4, layers: int = 1) -> None:
        super().__init__()
        if not layout:
            raise ConfigError("fusion models read several modalities per patient (a multimodal dataset).")
        self.names = list(layout["modalities"])
        self.mode, self.p_drop = mode, modality_dropout
        self.encoders = nn.ModuleDict({k: _encoder(k, v, d, encoders or {})
                                       for k, v in layout["modalities"].items()})
        self.norms = nn.ModuleDict({k: nn.LayerNorm(d) for k in self.names})
        m = len(self.names)
        if mode == "late":
            self.heads = nn.ModuleDict({k: nn.Linear(d, out_dim, bias=False) for k in self.names})
            self.bias = nn.Parameter(torch.zeros(out_dim))
        elif mode == "masked":
            self.missing = nn.Parameter(torch.zeros(m, d))
            self.mlp = nn.Sequential(nn.Linear(m * d + m, hidden), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, out_dim))
        elif mode == "attention":
            self.kind = nn.Parameter(torch.randn(m, d) * 0.02)
            self.query = nn.Parameter(torch.randn(1, 1, d) * 0.02)
            layer = nn.TransformerEncoderLayer(d, heads if d % heads == 0 else 1, 2 * d, dropout, batch_first=True,
                                               norm_first=True)
            self.attend = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, out_dim))
        else:
            raise ConfigError(f"fusion mode '{mode}': choose late, masked or attention.")

    def embed(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each modality's normalized embedding (batch x modalities x d; zeros where absent) and `present`."""
        present = batch["present"]
        b = present.shape[0]
        out = []
        for j, k in enumerate(self.names):
            full = torch.zeros(b, self.norms[k].normalized_shape[0], device=present.device)
            if batch.get(k) is not None:
                full = full.index_put((present[:, j].nonzero(as_tuple=True)[0],), self.norms[k](self.encoders[k](
                    batch[k])))
            out.append(full)
        return torch.stack(out, dim=1), present

    def _dropped(self, present: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p_drop == 0:
            return present
        keep = present & (torch.rand(present.shape, device=present.device) >= self.p_drop)
        lost = ~keep.any(dim=1) & present.any(dim=1)  # never hide all of a patient's modalities
        return torch.where(lost[:, None], present, keep)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        emb, present = self.embed(batch)
        present = self._dropped(present)
        mask = present.float()
        if self.mode == "late":
            logits = torch.stack([self.heads[k](emb[:, j]) for j, k in enumerate(self.names)], dim=1)
            return (logits * mask[..., None]).sum(dim=1) + self.bias
        if self.mode == "masked":
            filled = torch.where(present[..., None], emb, self.missing[None].expand_as(emb))
            return self.mlp(torch.cat([filled.flatten(1), mask], dim=1))
        tokens = torch.cat([self.query.expand(len(emb), -1, -1), emb + self.kind[None]], dim=1)
        pad = torch.cat([torch.zeros(len(emb), 1, dtype=torch.bool, device=emb.device), ~present], dim=1)
        return self.out(self.attend(tokens, src_key_padding_mask=pad)[:, 0])


def _builder(mode: str):
    def build(in_dim: int, out_dim: int, layout: dict[str, Any] | None = None, **params: Any) -> FusionNet:
        return FusionNet(in_dim, out_dim, layout, mode, **params)

    build.__name__ = f"build_{mode}"
    return build


build_late, build_masked, build_attention = _builder("late"), _builder("masked"), _builder("attention")
