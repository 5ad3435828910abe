"""A causal Transformer over whole patient timelines: pretrained by next-code prediction, then used by studies.

`TimelineEncoder` reads event windows (`features.codes.EventTensors` batches) left to right: each event is its
code embedding + a linear map of [normalized value, has-value flag, log1p days since the previous event] + a
learned position embedding, and causal self-attention lets position i see events 0..i only. The hidden state
at an event therefore summarizes the history up to it, whatever comes after: the property that lets one
network be pretrained on timelines (`NextCodeObjective`, CLMBR-style autoregressive next-code prediction, or
`MotorObjective`, MOTOR-style piecewise-exponential time to the next occurrence of frequent codes) and
then represent a patient at any prediction time (`TimelineClassifier`: the state at the last event before the
prediction time, with the days since that event, into a linear head).

The encoder never reads `dt` (days before the prediction time): during pretraining there is no prediction
time, and that feature would tell each position how far the future events lie. The classifier's head gets
the one `dt` that is known at prediction time, the last event's.

>>> import torch
>>> b = {"codes": torch.tensor([[2, 3, 4]]), "values": torch.zeros(1, 3), "has_value": torch.zeros(1, 3),
...      "dt": torch.zeros(1, 3), "gap": torch.zeros(1, 3), "mask": torch.tensor([[True, True, True]]),
...      "lengths": torch.tensor([3])}
>>> TimelineClassifier(in_dim=6, out_dim=1, d=8, heads=2)(b).shape
torch.Size([1, 1])
>>> NextCodeObjective(n_codes=6, d=8, heads=2)(b).shape  # per window: NLL sum, targets, top-1 hits, top-10 hits
torch.Size([1, 4])
>>> b["days"] = torch.tensor([[3.0, 1.0, 0.0]])
>>> MotorObjective(n_codes=6, task_codes=[2, 3], d=8, heads=2)(b).shape  # NLL sum, pairs, events, 0
torch.Size([1, 4])
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F

__all__ = ["TimelineConfig", "TimelineEncoder", "NextCodeObjective", "MotorObjective", "TimelineClassifier",
           "next_code_loss", "next_code_accuracy", "motor_targets", "PIECES_DAYS"]

# starts of the time pieces (days) of the time-to-event objective: 1 h, 1 day, 1 week, 30 days, 90 days, 1 year, 5 years
PIECES_DAYS = (0.0, 1 / 24, 1.0, 7.0, 30.0, 90.0, 365.0, 1826.0)

Batch = dict[str, torch.Tensor]


class TimelineConfig(BaseModel):
    """Hyper-parameters of the timeline Transformer (`timeline_transformer`; `medflow pretrain`'s `model:`)."""

    model_config = ConfigDict(extra="forbid")
    d: int = Field(64, ge=8, le=4096, description="embedding and hidden width")
    layers: int = Field(2, ge=1, le=24)
    heads: int = Field(4, ge=1, le=64)
    dropout: float = Field(0.1, ge=0, lt=1)
    max_positions: int = Field(512, ge=4, le=100_000, description="positions with their own embedding; later "
                                                                     "positions share the last one")


class TimelineEncoder(nn.Module):
    """Causal pre-norm Transformer over events; returns the normalized hidden state of every position."""

    def __init__(self, n_codes: int, d: int = 64, layers: int = 2, heads: int = 4, dropout: float = 0.1,
                 max_positions: int = 512) -> None:
        super().__init__()
        if d % heads:
            raise ValueError(f"timeline_transformer: d ({d}) must be a multiple of heads ({heads})")
        self.codes = nn.Embedding(n_codes, d, padding_idx=0)
        self.numeric = nn.Linear(3, d)
        self.positions = nn.Embedding(max_positions, d)
        layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=2 * d, dropout=dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, b: Batch) -> torch.Tensor:
        mask = b["mask"]
        width = mask.shape[1]
        pos = torch.arange(width, device=mask.device).clamp(max=self.positions.num_embeddings - 1)
        feats = torch.stack([b["values"] * b["has_value"], b["has_value"], b["gap"]], dim=-1)
        x = self.codes(b["codes"]) + self.numeric(feats) + self.positions(pos)
        causal = torch.ones(width, width, dtype=torch.bool, device=mask.device).triu(1)  # True: may not attend
        h = self.encoder(self.drop(x), mask=causal, src_key_padding_mask=~mask, is_causal=True)
        return self.norm(h) * mask.unsqueeze(-1)


class NextCodeObjective(nn.Module):
    """Autoregressive next-code prediction: from the state at event i, the code of event i + 1.

    The output is per window (so the Trainer concatenates it like any prediction): [summed negative
    log-likelihood of its next codes, number of next codes, top-1 hits, top-10 hits]. `next_code_loss` turns
    a batch of those into the mean NLL per predicted code; exp of it is the perplexity.
    """

    def __init__(self, n_codes: int, d: int = 64, layers: int = 2, heads: int = 4, dropout: float = 0.1,
                 max_positions: int = 512) -> None:
        super().__init__()
        self.encoder = TimelineEncoder(n_codes, d, layers, heads, dropout, max_positions)
        self.head = nn.Linear(d, n_codes)

    def forward(self, b: Batch) -> torch.Tensor:
        h = self.encoder(b)[:, :-1]
        valid = b["mask"][:, 1:]
        win, pos = valid.nonzero(as_tuple=True)  # logits only where a next code exists (no padding)
        hv, target = h[win, pos], b["codes"][:, 1:][win, pos]
        # evaluation bounds the logits held at once (tokens x vocabulary); training needs them all for backward
        step = max(len(hv), 1) if self.training else 8192
        parts = []
        for i in range(0, max(len(hv), 1), step):
            logits, t = self.head(hv[i:i + step]), target[i:i + step]
            nll = F.cross_entropy(logits, t, reduction="none")
            with torch.no_grad():
                top = logits.topk(min(10, logits.shape[-1]), dim=-1).indices
                hit1 = (top[:, 0] == t).to(nll.dtype)
                hit10 = (top == t.unsqueeze(-1)).any(-1).to(nll.dtype)
            parts.append(torch.stack([nll, torch.ones_like(nll), hit1, hit10], dim=1))
        per_token = torch.cat(parts)
        out = torch.zeros(h.shape[0], 4, dtype=h.dtype, device=h.device).index_add(0, win, per_token)
        return out + 0.0 * h.sum()  # a batch of one-event windows still has a graph to call backward on


def motor_targets(b: Batch, task_codes: torch.Tensor, starts: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Time-to-event targets at every timed position i of a window, for each task code c: the days until c next
    occurs after i (observed), else the days to the window's end (censored); with each piece's exposure.

    Returns (exposure B x L x K x P: days at risk inside each piece, piece of the event B x L x K, observed
    B x L x K, usable B x L: timed positions)."""
    days = b["days"]
    usable = b["mask"] & (days >= 0)
    t = -days  # later events have larger t; the window ends at 0
    inf = torch.tensor(float("inf"), dtype=t.dtype, device=t.device)
    hit = (b["codes"].unsqueeze(-1) == task_codes) & usable.unsqueeze(-1)
    occ = torch.where(hit, t.unsqueeze(-1), inf)
    after = torch.flip(torch.cummin(torch.flip(occ, [1]), dim=1).values, [1])  # first occurrence at j >= i
    after = torch.cat([after[:, 1:], torch.full_like(after[:, :1], float("inf"))], dim=1)  # ... at j > i
    observed = torch.isfinite(after) & usable.unsqueeze(-1)
    until = torch.where(observed, after - t.unsqueeze(-1), days.clamp(min=0).unsqueeze(-1)).clamp(min=0)
    ends = torch.cat([starts[1:], inf.view(1)])
    exposure = torch.minimum((until.unsqueeze(-1) - starts).clamp(min=0), ends - starts)
    piece = ((until.unsqueeze(-1) >= starts).sum(-1) - 1).clamp(min=0)
    return exposure, piece, observed, usable


class MotorObjective(nn.Module):
    """MOTOR-style time-to-event pretraining (Steinberg et al. 2023): from the state at each event, a piecewise-
    exponential hazard for the next occurrence of each of the K most frequent codes, over the pieces
    `PIECES_DAYS`; censored at the window's end. Output per window: [summed negative log-likelihood,
    position-code pairs, observed events, 0] (the Trainer's loss is `next_code_loss`, the mean NLL per pair)."""

    def __init__(self, n_codes: int, task_codes: list[int], d: int = 64, layers: int = 2, heads: int = 4,
                 dropout: float = 0.1, max_positions: int = 512, pieces: tuple[float, ...] = PIECES_DAYS) -> None:
        super().__init__()
        self.encoder = TimelineEncoder(n_codes, d, layers, heads, dropout, max_positions)
        self.register_buffer("task_codes", torch.as_tensor(task_codes, dtype=torch.long))
        self.register_buffer("starts", torch.as_tensor(pieces, dtype=torch.float32))
        self.head = nn.Linear(d, len(task_codes) * len(pieces))

    def forward(self, b: Batch) -> torch.Tensor:
        h = self.encoder(b)
        exposure, piece, observed, usable = motor_targets(b, self.task_codes, self.starts)
        log_h = self.head(h).view(*h.shape[:2], len(self.task_codes), len(self.starts)).clamp(-20, 10)
        ll = observed * log_h.gather(-1, piece.unsqueeze(-1)).squeeze(-1) - (log_h.exp() * exposure).sum(-1)
        ll = ll * usable.unsqueeze(-1)
        k = usable.sum(1).to(h.dtype) * len(self.task_codes)
        return torch.stack([-ll.sum((1, 2)), k, observed.sum((1, 2)).to(h.dtype), torch.zeros_like(k)], dim=1)


def next_code_loss(out: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood per predicted next code over the windows of `out` (NextCodeObjective's)."""
    return out[:, 0].sum() / out[:, 1].sum().clamp(min=1)


def next_code_accuracy(_y, out) -> float:
    """Top-1 next-code accuracy over the windows of `out` (the Trainer's validation metric signature)."""
    return float(out[:, 2].sum() / max(float(out[:, 1].sum()), 1.0))


class TimelineClassifier(nn.Module):
    """The timeline encoder's state at the last event before the prediction time, and log1p(days since that
    event), into a linear head: what a study trains (from scratch or from a pretrained encoder)."""

    head_layer = "head"

    def __init__(self, in_dim: int, out_dim: int, d: int = 64, layers: int = 2, heads: int = 4,
                 dropout: float = 0.1, max_positions: int = 512) -> None:
        super().__init__()
        self.encoder = TimelineEncoder(in_dim, d, layers, heads, dropout, max_positions)
        self.head = nn.Linear(d + 1, out_dim)

    @property
    def embed(self) -> TimelineEncoder:
        """Where the code embedding lives (`embed.codes`), as in the other sequence models (explanations)."""
        return self.encoder

    def represent(self, b: Batch) -> torch.Tensor:
        """Per sample: [hidden state at its last event, log1p days from that event to the prediction time]."""
        h = self.encoder(b)
        rows = torch.arange(h.shape[0], device=h.device)
        last = (b["lengths"] - 1).clamp(min=0)
        return torch.cat([h[rows, last], b["dt"][rows, last].unsqueeze(-1)], dim=1)

    def forward(self, b: Batch) -> torch.Tensor:
        return self.head(self.represent(b))
