"""Graph networks over molecules (`features.molecule.MolGraphs` batches): chemprop's directed message passing
network (D-MPNN, Yang et al. 2019) and a GIN with edge features (GINE, Hu et al. 2020).

Both read one batch dict: `atoms` (atoms x 72), `bonds` (directed bonds x 14), `src` / `dst` (each directed
bond's atoms), `rev` (its reverse bond), `mol` (each atom's molecule), `n_atoms` and `descriptors`
(molecules x d, scaled RDKit descriptors). Aggregation uses `index_add_`, so a batch of molecules of any
sizes is one set of dense matrix products, no padding. Gathers use `index_select`, whose backward (`index_add_`)
is deterministic on CPU; advanced indexing's backward (`index_put_` with accumulation) is not, and made two
trainings with one seed differ.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from medflow.features.molecule import ATOM_DIM, BOND_DIM

__all__ = ["MPNNConfig", "GINConfig", "DMPNN", "GIN"]


class MPNNConfig(BaseModel):
    """D-MPNN hyper-parameters; the defaults are chemprop v2's. `descriptors: true` concatenates the scaled RDKit
    2-D descriptors to the readout (chemprop's `--features-generators rdkit_2d_normalized`): much better on
    random splits of FreeSolv, worse on its unseen scaffolds (benchmarks/README.md, m), so off by default."""

    model_config = ConfigDict(extra="forbid")
    hidden: int = Field(300, ge=8)
    depth: int = Field(3, ge=1, le=10)
    dropout: float = Field(0.0, ge=0, lt=1)
    ffn_hidden: int = Field(300, ge=8)
    ffn_layers: int = Field(1, ge=0, le=5)
    aggregation: Literal["mean", "sum", "norm"] = "norm"
    descriptors: bool = Field(False, description="concatenate the scaled RDKit 2-D descriptors to the readout")


class GINConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hidden: int = Field(200, ge=8)
    layers: int = Field(4, ge=1, le=10)
    dropout: float = Field(0.1, ge=0, lt=1)
    ffn_hidden: int = Field(200, ge=8)
    aggregation: Literal["mean", "sum", "norm"] = "sum"
    descriptors: bool = True


def _pool(h: torch.Tensor, mol: torch.Tensor, n_mols: int, n_atoms: torch.Tensor, how: str) -> torch.Tensor:
    out = torch.zeros(n_mols, h.shape[1], dtype=h.dtype, device=h.device).index_add_(0, mol, h)
    if how == "mean":
        return out / n_atoms.clamp(min=1).unsqueeze(1).to(h.dtype)
    return out / 100.0 if how == "norm" else out  # chemprop's "norm": the sum scaled by 1/100


def _ffn(in_dim: int, hidden: int, layers: int, out_dim: int, dropout: float) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers):
        mods += [nn.Dropout(dropout), nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    return nn.Sequential(*mods, nn.Dropout(dropout), nn.Linear(d, out_dim))


class DMPNN(nn.Module):
    """Directed message passing: hidden states live on directed bonds u->v; each step sums the messages into
    u except the one coming back from v; atom states read the incoming bond states after `depth` steps."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 300, depth: int = 3, dropout: float = 0.0,
                 ffn_hidden: int = 300, ffn_layers: int = 1, aggregation: str = "norm", descriptors: bool = False):
        super().__init__()
        self.depth, self.aggregation, self.use_descriptors = depth, aggregation, descriptors
        self.w_i = nn.Linear(ATOM_DIM + BOND_DIM, hidden, bias=False)
        self.w_h = nn.Linear(hidden, hidden, bias=False)
        self.w_o = nn.Linear(ATOM_DIM + hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.ffn = _ffn(hidden + (in_dim if descriptors else 0), ffn_hidden, ffn_layers, out_dim, dropout)

    def encode(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        atoms, src, dst = b["atoms"], b["src"], b["dst"]
        h0 = self.w_i(torch.cat([atoms.index_select(0, src), b["bonds"]], dim=1))
        h = torch.relu(h0)
        for _ in range(self.depth - 1):
            into = h.new_zeros(len(atoms), h.shape[1]).index_add_(0, dst, h)  # messages into atoms
            h = self.dropout(torch.relu(h0 + self.w_h(into.index_select(0, src) - h.index_select(0, b["rev"]))))
        into = h.new_zeros(len(atoms), h.shape[1]).index_add_(0, dst, h)
        atom_h = self.dropout(torch.relu(self.w_o(torch.cat([atoms, into], dim=1))))
        mol = _pool(atom_h, b["mol"], len(b["n_atoms"]), b["n_atoms"], self.aggregation)
        return torch.cat([mol, b["descriptors"]], dim=1) if self.use_descriptors else mol

    def forward(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.ffn(self.encode(b))


class _GINELayer(nn.Module):
    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        self.edge = nn.Linear(BOND_DIM, hidden)
        self.eps = nn.Parameter(torch.zeros(1))
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden))
        self.norm = nn.BatchNorm1d(hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, b: dict[str, torch.Tensor]) -> torch.Tensor:
        msg = torch.relu(h.index_select(0, b["src"]) + self.edge(b["bonds"]))
        agg = torch.zeros_like(h).index_add_(0, b["dst"], msg)
        return self.dropout(torch.relu(self.norm(self.mlp((1 + self.eps) * h + agg)))) + h


class GIN(nn.Module):
    """Graph isomorphism network with bond features (GINE): atom states updated from their neighbours' states
    plus the bond between them, residual layers with batch norm, sum readout."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 200, layers: int = 4, dropout: float = 0.1,
                 ffn_hidden: int = 200, aggregation: str = "sum", descriptors: bool = True):
        super().__init__()
        self.aggregation, self.use_descriptors = aggregation, descriptors
        self.embed = nn.Linear(ATOM_DIM, hidden)
        self.layers = nn.ModuleList(_GINELayer(hidden, dropout) for _ in range(layers))
        self.ffn = _ffn(hidden + (in_dim if descriptors else 0), ffn_hidden, 1, out_dim, dropout)

    def encode(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.embed(b["atoms"])
        for layer in self.layers:
            h = layer(h, b)
        mol = _pool(h, b["mol"], len(b["n_atoms"]), b["n_atoms"], self.aggregation)
        return torch.cat([mol, b["descriptors"]], dim=1) if self.use_descriptors else mol

    def forward(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.ffn(self.encode(b))
