"""Drug-target interaction: a two-tower network over (molecule, protein sequence) pairs.

The drug tower is chemprop's D-MPNN encoder (`graph.DMPNN.encode`: atom and bond features, directed message
passing, pooled) or an MLP over the 2,048 Morgan bits; the target tower is DeepDTA's (Ozturk et al. 2018):
residue embeddings, three 1-D convolutions, a max over the sequence (padding masked out). The two vectors are
concatenated and a feed-forward head gives the affinity (regression) or the interaction logit (binary).

It reads `features.molecule.MolGraphs` batches built with a `protein_column` (`protein`: the batch's distinct
sequences as residue tokens, `protein_of`: each pair's sequence); the target tower runs once per distinct
target. Without it the model stops with a ConfigError naming the setting.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from medflow.errors import ConfigError
from medflow.features.molecule import FP_BITS, N_RESIDUE_TOKENS
from medflow.models.graph import DMPNN, _ffn

__all__ = ["DTIConfig", "DTINet"]


class DTIConfig(BaseModel):
    """Two-tower DTI hyper-parameters: the drug tower (`mpnn` or `morgan`) and DeepDTA's protein CNN."""

    model_config = ConfigDict(extra="forbid")
    drug: Literal["mpnn", "morgan"] = Field("mpnn", description="drug tower: D-MPNN over the graph, or an MLP over "
                                                                "Morgan bits")
    hidden: int = Field(300, ge=8, description="drug tower width")
    depth: int = Field(3, ge=1, le=10, description="message-passing steps (drug: mpnn)")
    embed: int = Field(64, ge=4, description="residue embedding size")
    filters: int = Field(32, ge=4, description="first convolution's filters; then 2x and 3x (DeepDTA)")
    kernel: int = Field(7, ge=3, le=31, description="convolution width over residues (odd)")
    ffn_hidden: int = Field(512, ge=8)
    ffn_layers: int = Field(2, ge=1, le=5)
    dropout: float = Field(0.1, ge=0, lt=1)
    descriptors: bool = Field(False, description="add the drug's scaled RDKit 2-D descriptors to its tower's output")


class _ProteinCNN(nn.Module):
    def __init__(self, embed: int, filters: int, kernel: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(N_RESIDUE_TOKENS, embed, padding_idx=0)
        widths = [embed, filters, 2 * filters, 3 * filters]
        self.convs = nn.ModuleList(nn.Conv1d(a, b, kernel, padding="same")
                                   for a, b in zip(widths, widths[1:], strict=False))
        self.out_dim = widths[-1]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens).transpose(1, 2)  # batch x embed x length
        for conv in self.convs:
            h = torch.relu(conv(h))
        pad = (tokens == 0).unsqueeze(1)
        return h.masked_fill(pad, float("-inf")).amax(dim=2)


class DTINet(nn.Module):
    """Drug tower + protein tower, concatenated, feed-forward head."""

    def __init__(self, in_dim: int, out_dim: int, drug: str = "mpnn", hidden: int = 300, depth: int = 3,
                 embed: int = 64, filters: int = 32, kernel: int = 7, ffn_hidden: int = 512, ffn_layers: int = 2,
                 dropout: float = 0.1, descriptors: bool = False) -> None:
        super().__init__()
        self.drug_kind, self.use_descriptors = drug, descriptors
        if drug == "mpnn":
            self.drug = DMPNN(in_dim, 1, hidden=hidden, depth=depth, dropout=dropout)
            self.drug.ffn = nn.Identity()  # only its encoder is used (descriptors added below)
        else:
            self.drug = nn.Sequential(nn.Linear(FP_BITS, hidden), nn.ReLU(), nn.Dropout(dropout),
                                      nn.Linear(hidden, hidden), nn.ReLU())
        self.protein = _ProteinCNN(embed, filters, kernel)
        self.head = _ffn(hidden + (in_dim if descriptors else 0) + self.protein.out_dim, ffn_hidden, ffn_layers,
                         out_dim, dropout)

    def forward(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        if "protein" not in b:
            raise ConfigError("model 'dti' scores drug-target pairs: give the data a protein column "
                              "(data.molecules.protein_column) or use the built-in dti_sim.")
        d = self.drug.encode(b) if self.drug_kind == "mpnn" else self.drug(b["fp"])
        if self.use_descriptors:
            d = torch.cat([d, b["descriptors"]], dim=1)
        t = self.protein(b["protein"]).index_select(0, b["protein_of"])  # once per distinct target in the batch
        return self.head(torch.cat([d, t], dim=1))
