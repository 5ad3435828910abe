"""Text models over `TokenWindows` batches: a note is one or more windows of token ids; each model encodes each
window into a vector, and a note's vector is the element-wise max over its windows (so a long note is read
whole, never truncated). The head is a linear layer on that vector.

- `TextCNN` (Kim 2014): word embeddings, convolutions of widths 3/4/5, max over time.
- `BiLSTMAttention` (Zhou et al. 2016 style): a bidirectional LSTM and additive attention over its states; the
  attention weights are kept (`last_attention`) and are the model's explanation.
- `TextTransformer`: a small pre-norm Transformer encoder trained here (sinusoidal positions, padding mask,
  mean and max pooling).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

__all__ = ["TextCNNConfig", "BiLSTMConfig", "TextTransformerConfig", "TextCNN", "BiLSTMAttention",
           "TextTransformer", "pool_windows"]


class TextCNNConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    d: int = Field(128, ge=8, description="word embedding size")
    filters: int = Field(100, ge=4, description="filters per convolution width")
    widths: list[int] = Field([3, 4, 5], min_length=1)
    dropout: float = Field(0.5, ge=0, lt=1)


class BiLSTMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    d: int = Field(128, ge=8, description="word embedding size")
    hidden: int = Field(128, ge=8, description="LSTM size per direction")
    layers: int = Field(1, ge=1, le=4)
    dropout: float = Field(0.3, ge=0, lt=1)


class TextTransformerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    d: int = Field(128, ge=8)
    heads: int = Field(4, ge=1)
    layers: int = Field(2, ge=1, le=8)
    ff: int = Field(256, ge=8)
    dropout: float = Field(0.1, ge=0, lt=1)


def pool_windows(h: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
    """Element-wise max over each note's windows: (windows, D) -> (n, D)."""
    if h.shape[0] == n:  # one window per note (owner is 0..n-1 in order)
        return h
    out = h.new_full((n, h.shape[1]), float("-inf"))
    return out.scatter_reduce(0, owner[:, None].expand(-1, h.shape[1]), h, reduce="amax", include_self=True)


class _TextModel(nn.Module):
    """Shared: the embedding (index 0 is padding), window pooling, dropout and the linear head. A subclass builds
    its encoder, then calls `_head`, and defines `encode(embeddings, mask) -> (windows, width)`."""

    def __init__(self, in_dim: int, d: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(max(in_dim, 2), d, padding_idx=0)

    def _head(self, width: int, out_dim: int, dropout: float) -> None:
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width, out_dim)

    def forward(self, b: dict[str, Any]) -> torch.Tensor:
        ids = b["ids"]
        mask = ids != 0
        h = self.encode(self.embedding(ids), mask)
        return self.head(self.drop(pool_windows(h, b["owner"], int(b["n"]))))


class TextCNN(_TextModel):
    def __init__(self, in_dim: int, out_dim: int, d: int = 128, filters: int = 100, widths: list[int] | None = None,
                 dropout: float = 0.5) -> None:
        super().__init__(in_dim, d)
        self.widths = list(widths or [3, 4, 5])
        self.convs = nn.ModuleList(nn.Conv1d(d, filters, w) for w in self.widths)
        self._head(filters * len(self.widths), out_dim, dropout)

    def encode(self, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = emb.transpose(1, 2)  # (W, d, L)
        short = max(self.widths) - x.shape[2]
        if short > 0:  # windows shorter than the widest filter: pad (padding never wins the max below)
            x = nn.functional.pad(x, (0, short))
            mask = nn.functional.pad(mask, (0, short))
        outs = []
        for conv in self.convs:
            c = torch.relu(conv(x))  # (W, F, L - w + 1)
            # a position counts when its window starts on a real token
            valid = mask[:, :c.shape[2]].unsqueeze(1)
            outs.append(c.masked_fill(~valid, 0.0).amax(dim=2))
        return torch.cat(outs, dim=1)


class BiLSTMAttention(_TextModel):
    def __init__(self, in_dim: int, out_dim: int, d: int = 128, hidden: int = 128, layers: int = 1,
                 dropout: float = 0.3) -> None:
        super().__init__(in_dim, d)
        self.lstm = nn.LSTM(d, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.att = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1, bias=False))
        self._head(2 * hidden, out_dim, dropout)
        self.last_attention: torch.Tensor | None = None

    def encode(self, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=emb.shape[1])
        score = self.att(h).squeeze(-1).masked_fill(~mask, float("-inf"))
        score = torch.where(mask.any(dim=1, keepdim=True), score, torch.zeros_like(score))
        a = torch.softmax(score, dim=1)
        self.last_attention = a.detach()
        return (a.unsqueeze(-1) * h).sum(dim=1)


class TextTransformer(_TextModel):
    def __init__(self, in_dim: int, out_dim: int, d: int = 128, heads: int = 4, layers: int = 2, ff: int = 256,
                 dropout: float = 0.1) -> None:
        super().__init__(in_dim, d)
        if d % heads:
            from medflow.errors import ConfigError

            raise ConfigError(f"transformer_encoder: d ({d}) must be divisible by heads ({heads}).")
        layer = nn.TransformerEncoderLayer(d, heads, ff, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self._head(2 * d, out_dim, dropout)
        self.d = d
        nn.init.normal_(self.embedding.weight, std=d ** -0.5)  # x sqrt(d) below: unit scale, like the positions
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def _positions(self, length: int, device: torch.device) -> torch.Tensor:
        pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
        div = torch.exp(torch.arange(0, self.d, 2, device=device, dtype=torch.float32) * (-math.log(1e4) / self.d))
        pe = torch.zeros(length, self.d, device=device)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)[:, :self.d // 2]
        return pe

    def encode(self, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = emb * math.sqrt(self.d) + self._positions(emb.shape[1], emb.device)
        h = self.norm(self.encoder(x, src_key_padding_mask=~mask))
        m = mask.unsqueeze(-1)
        mean = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)
        return torch.cat([mean, h.masked_fill(~m, float("-inf")).amax(dim=1)], dim=1)
