"""Deep tabular networks: an MLP and the ResNet-style MLP of Gorishniy et al. (2021).

Both are built from plain dimensions, never from a dataset object:

>>> import torch
>>> net = ResNetMLP(in_dim=8, out_dim=1, d=32, n_blocks=2)
>>> net(torch.zeros(4, 8)).shape
torch.Size([4, 1])
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

__all__ = ["MLP", "MLPConfig", "ResNetMLP", "ResNetConfig", "LateFusionNet", "LateFusionConfig"]


class MLPConfig(BaseModel):
    """Hyper-parameters of `MLP` (YAML: models: [{name: mlp, params: {...}}])."""

    model_config = ConfigDict(extra="forbid")
    hidden: int = Field(128, ge=1, le=8192)
    depth: int = Field(2, ge=1, le=32)
    dropout: float = Field(0.1, ge=0, lt=1)
    batch_norm: bool = False


class MLP(nn.Module):
    """`depth` hidden layers of width `hidden` with ReLU and dropout, then a linear head.

    Args:
        in_dim: number of input features.
        out_dim: number of outputs (1 for binary/regression, k for k classes).
        hidden, depth, dropout, batch_norm: see `MLPConfig`.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 128, depth: int = 2, dropout: float = 0.1,
                 batch_norm: bool = False) -> None:
        super().__init__()
        if in_dim < 1 or out_dim < 1:
            raise ValueError(f"MLP needs in_dim >= 1 and out_dim >= 1, got {in_dim} and {out_dim}")
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(depth):
            layers.append(nn.Linear(width, hidden))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden))
            layers += [nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ResNetConfig(BaseModel):
    """Hyper-parameters of `ResNetMLP`."""

    model_config = ConfigDict(extra="forbid")
    d: int = Field(128, ge=1, le=4096)
    n_blocks: int = Field(2, ge=1, le=32)
    hidden_factor: float = Field(2.0, gt=0, le=8)
    dropout: float = Field(0.15, ge=0, lt=1)
    residual_dropout: float = Field(0.0, ge=0, lt=1)


class _Block(nn.Module):
    def __init__(self, d: int, d_hidden: int, dropout: float, residual_dropout: float) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(d)
        self.fc1 = nn.Linear(d, d_hidden)
        self.fc2 = nn.Linear(d_hidden, d)
        self.dropout = nn.Dropout(dropout)
        self.residual_dropout = nn.Dropout(residual_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.dropout(torch.relu(self.fc1(self.norm(x))))
        return x + self.residual_dropout(self.fc2(z))


class ResNetMLP(nn.Module):
    """ResNet for tabular data (Gorishniy, Rubachev, Khrulkov & Babenko, NeurIPS 2021).

    Linear(in, d) -> n_blocks x [BatchNorm -> Linear -> ReLU -> Dropout -> Linear -> Dropout, + skip]
    -> BatchNorm -> ReLU -> Linear(d, out). A strong deep baseline on tabular benchmarks.
    """

    def __init__(self, in_dim: int, out_dim: int, d: int = 128, n_blocks: int = 2, hidden_factor: float = 2.0,
                 dropout: float = 0.15, residual_dropout: float = 0.0) -> None:
        super().__init__()
        if in_dim < 1 or out_dim < 1:
            raise ValueError(f"ResNetMLP needs in_dim >= 1 and out_dim >= 1, got {in_dim} and {out_dim}")
        self.first = nn.Linear(in_dim, d)
        d_hidden = max(1, int(d * hidden_factor))
        self.blocks = nn.Sequential(*[_Block(d, d_hidden, dropout, residual_dropout) for _ in range(n_blocks)])
        self.head = nn.Sequential(nn.BatchNorm1d(d), nn.ReLU(), nn.Linear(d, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.first(x)))


class LateFusionConfig(BaseModel):
    """Hyper-parameters of `LateFusionNet`: `blocks` maps a block name to its raw columns."""

    model_config = ConfigDict(extra="forbid")
    blocks: dict[str, list[str]]
    hidden: int = Field(32, ge=1, le=4096)
    dropout: float = Field(0.1, ge=0, lt=1)


class LateFusionNet(nn.Module):
    """Late fusion: one encoder (Linear -> ReLU -> Dropout) per block of inputs, concatenated, then a
    linear head. Columns that belong to no named block form a block of their own ("other").

    Args:
        in_dim, out_dim: input and output widths.
        sources: the raw column of each input column (from the featurizer).
        blocks: block name -> raw columns.
    """

    def __init__(self, in_dim: int, out_dim: int, sources: list[str], blocks: dict[str, list[str]],
                 hidden: int = 32, dropout: float = 0.1) -> None:
        super().__init__()
        if len(sources) != in_dim:
            raise ValueError(f"LateFusionNet: {len(sources)} sources for {in_dim} inputs")
        owner = {c: b for b, cols in blocks.items() for c in cols}
        names = list(blocks) + (["other"] if any(s not in owner for s in sources) else [])
        index = [[i for i, s in enumerate(sources) if owner.get(s, "other") == b] for b in names]
        empty = [b for b, idx in zip(names, index, strict=True) if not idx]
        if empty:
            raise ValueError(f"LateFusionNet: block(s) {empty} match no input column")
        self.block_names = names
        for i, idx in enumerate(index):
            self.register_buffer(f"index_{i}", torch.tensor(idx, dtype=torch.long))
        self.encoders = nn.ModuleList(nn.Sequential(nn.Linear(len(idx), hidden), nn.ReLU(), nn.Dropout(dropout))
                                      for idx in index)
        self.head = nn.Linear(hidden * len(index), out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [enc(x[:, getattr(self, f"index_{i}")]) for i, enc in enumerate(self.encoders)]
        return self.head(torch.cat(parts, dim=1))
