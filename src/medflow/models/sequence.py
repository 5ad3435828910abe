"""Sequence models over patient event histories (batches from `features.codes.EventTensors`).

Every model embeds each event the same way (`EventEmbedding`): a learned code embedding plus a linear
map of [normalized value, has-value flag, log1p days before the prediction time, log1p days since the
previous event]. Bodies then differ:

* `gru`, `lstm`: a recurrent network over the packed sequence; the last state feeds the head.
* `transformer`: a pre-norm Transformer encoder with a padding mask; masked mean pooling.
* `retain`: RETAIN (Choi et al. 2016): two reverse-time GRUs give an attention weight per event
  (alpha) and a gate per embedding dimension (beta); the logit is exactly the sum over events of
  alpha_i * w . (beta_i * v_i), so each event's contribution is returned as its explanation.
* `bag_of_codes_mlp`: an order-free baseline: the mean event embedding (code and value, no time) into
  an MLP, the deep analogue of count features.

>>> import torch
>>> batch = {"codes": torch.tensor([[2, 3, 0]]), "values": torch.zeros(1, 3), "has_value": torch.zeros(1, 3),
...          "dt": torch.zeros(1, 3), "gap": torch.zeros(1, 3), "mask": torch.tensor([[True, True, False]]),
...          "lengths": torch.tensor([2])}
>>> RNNClassifier(in_dim=5, out_dim=1, d=8)(batch).shape
torch.Size([1, 1])
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

__all__ = ["SequenceConfig", "TransformerConfig", "EventEmbedding", "RNNClassifier", "TransformerClassifier",
           "RETAIN", "BagOfCodesMLP"]

Batch = dict[str, torch.Tensor]


class SequenceConfig(BaseModel):
    """Hyper-parameters of the recurrent models, RETAIN and the bag-of-codes MLP."""

    model_config = ConfigDict(extra="forbid")
    d: int = Field(64, ge=4, le=4096, description="embedding and hidden width")
    layers: int = Field(1, ge=1, le=8)
    dropout: float = Field(0.1, ge=0, lt=1)


class TransformerConfig(BaseModel):
    """Hyper-parameters of the Transformer encoder."""

    model_config = ConfigDict(extra="forbid")
    d: int = Field(64, ge=8, le=4096)
    layers: int = Field(2, ge=1, le=24)
    heads: int = Field(4, ge=1, le=64)
    dropout: float = Field(0.1, ge=0, lt=1)


class EventEmbedding(nn.Module):
    """code embedding + linear(value features [+ time features])."""

    def __init__(self, n_codes: int, d: int, use_time: bool = True) -> None:
        super().__init__()
        self.codes = nn.Embedding(n_codes, d, padding_idx=0)
        self.use_time = use_time
        self.numeric = nn.Linear(4 if use_time else 2, d)

    def forward(self, b: Batch) -> torch.Tensor:
        feats = [b["values"] * b["has_value"], b["has_value"]]
        if self.use_time:
            feats += [b["dt"], b["gap"]]
        x = self.codes(b["codes"]) + self.numeric(torch.stack(feats, dim=-1))
        return x * b["mask"].unsqueeze(-1)


class RNNClassifier(nn.Module):
    """GRU (or LSTM) over the event sequence; the last valid state feeds a linear head."""

    def __init__(self, in_dim: int, out_dim: int, d: int = 64, layers: int = 1, dropout: float = 0.1,
                 cell: str = "gru") -> None:
        super().__init__()
        self.embed = EventEmbedding(in_dim, d)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(d, d, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(d, out_dim)

    def forward(self, b: Batch) -> torch.Tensor:
        x = self.embed(b)
        packed = pack_padded_sequence(x, b["lengths"].cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)
        if isinstance(h, tuple):  # LSTM: (h, c)
            h = h[0]
        return self.head(self.drop(h[-1]))


def build_lstm(in_dim: int, out_dim: int, **params) -> RNNClassifier:
    return RNNClassifier(in_dim, out_dim, cell="lstm", **params)


class TransformerClassifier(nn.Module):
    """Pre-norm Transformer encoder over events (time enters through the event embedding)."""

    def __init__(self, in_dim: int, out_dim: int, d: int = 64, layers: int = 2, heads: int = 4,
                 dropout: float = 0.1) -> None:
        super().__init__()
        if d % heads:
            raise ValueError(f"transformer: d ({d}) must be a multiple of heads ({heads})")
        self.embed = EventEmbedding(in_dim, d)
        layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=2 * d, dropout=dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, out_dim)

    def forward(self, b: Batch) -> torch.Tensor:
        mask = b["mask"]
        h = self.encoder(self.embed(b), src_key_padding_mask=~mask)
        h = self.norm(h) * mask.unsqueeze(-1)
        pooled = h.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return self.head(pooled)


def _reverse(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each left-aligned sequence within its length (padding stays at the end)."""
    width = x.shape[1]
    j = torch.arange(width, device=x.device).unsqueeze(0)
    idx = (lengths.unsqueeze(1) - 1 - j).clamp(min=0)
    idx = torch.where(j < lengths.unsqueeze(1), idx, j)
    return torch.gather(x, 1, idx.unsqueeze(-1).expand_as(x))


class RETAIN(nn.Module):
    """RETAIN: reverse-time attention; `contributions` gives each event's additive share of the logit."""

    def __init__(self, in_dim: int, out_dim: int, d: int = 64, layers: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = EventEmbedding(in_dim, d)
        self.gru_alpha = nn.GRU(d, d, num_layers=layers, batch_first=True)
        self.gru_beta = nn.GRU(d, d, num_layers=layers, batch_first=True)
        self.w_alpha = nn.Linear(d, 1)
        self.w_beta = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(d, out_dim)

    def attention(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        v = self.embed(b)
        lengths, mask = b["lengths"], b["mask"]
        rev = _reverse(v, lengths)
        g, _ = self.gru_alpha(rev)
        h, _ = self.gru_beta(rev)
        g, h = _reverse(g, lengths), _reverse(h, lengths)
        e = self.w_alpha(g).squeeze(-1).masked_fill(~mask, float("-inf"))
        alpha = torch.softmax(e, dim=1).nan_to_num(0.0)
        beta = torch.tanh(self.w_beta(h))
        return alpha, beta, v

    def forward(self, b: Batch) -> torch.Tensor:
        alpha, beta, v = self.attention(b)
        context = (alpha.unsqueeze(-1) * beta * v).sum(1)
        return self.head(self.drop(context))

    @torch.no_grad()
    def contributions(self, b: Batch, output: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha per event, contribution per event to output `output`'s logit; they sum to logit - bias)."""
        alpha, beta, v = self.attention(b)
        w = self.head.weight[output]
        contrib = alpha * ((beta * v) @ w)
        return alpha, contrib


class BagOfCodesMLP(nn.Module):
    """Mean event embedding (codes and values, no order or time) into an MLP."""

    def __init__(self, in_dim: int, out_dim: int, d: int = 64, layers: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = EventEmbedding(in_dim, d, use_time=False)
        blocks: list[nn.Module] = []
        for _ in range(layers):
            blocks += [nn.Linear(d, d), nn.ReLU(), nn.Dropout(dropout)]
        self.mlp = nn.Sequential(*blocks, nn.Linear(d, out_dim))

    def forward(self, b: Batch) -> torch.Tensor:
        x = self.embed(b)
        pooled = x.sum(1) / b["mask"].sum(1, keepdim=True).clamp(min=1)
        return self.mlp(pooled)
