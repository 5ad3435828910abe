"""Token language models: a recurrent network over token sequences, trained on the core Trainer and sampled token
by token. Shared by the event-sequence generator (`synth.events`: patients as MEDS tokens) and the molecule
generator (`molgen`: SMILES tokens).

Sequences start with a begin token and end with an end token; index 0 is padding (ignored by the loss). Batches
are cut to their longest sequence and drawn in length buckets (`TokenBatches.sizes`), so short sequences do not
pay for long ones. A tenth of the sequences watch for early stopping.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["TokenLM", "TokenBatches", "pad_tokens", "fit_token_lm", "sample_token_lm"]


class TokenLM(nn.Module):
    """Embedding, a GRU or LSTM of `layers` x `hidden`, a linear layer to next-token logits."""

    def __init__(self, vocab: int, d: int, hidden: int, layers: int, dropout: float, cell: str = "gru") -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d, padding_idx=0)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(d, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor, h: Any = None) -> Any:
        y, h = self.rnn(self.embed(x), h)
        return self.out(y), h


class TokenBatches:
    """Padded token sequences the Trainer batches by length (`sizes`), each batch cut to its longest sequence."""

    def __init__(self, x: torch.Tensor, lengths: torch.Tensor) -> None:
        self.x, self.lengths = x, lengths

    def __len__(self) -> int:
        return len(self.x)

    def sizes(self) -> torch.Tensor:
        return self.lengths

    def batch(self, idx: Any) -> torch.Tensor:
        idx = torch.as_tensor(idx)
        return self.x[idx, : int(self.lengths[idx].max())]


def pad_tokens(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences as one zero-padded LongTensor and their lengths."""
    width = max(len(s) for s in seqs)
    x = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = torch.as_tensor(s)
    return x, torch.as_tensor([len(s) for s in seqs])


def fit_token_lm(module: TokenLM, x: torch.Tensor, lengths: torch.Tensor, cfg: Any, seed: int,
                 groups: np.ndarray | None = None) -> Any:
    """Train `module` to predict each next token (cross-entropy, padding ignored) on the core Trainer, a tenth of
    the sequences held out for early stopping (a tenth of the `groups` when given: several spellings of one
    molecule stay on one side, so early stopping watches unseen molecules, not memorized ones); returns the
    Trainer's result."""
    from medflow.train.trainer import Trainer

    width = x.shape[1]
    loss = nn.CrossEntropyLoss(ignore_index=0)

    def lm_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return loss(logits[:, :-1].reshape(-1, logits.shape[-1]), target[:, 1:].reshape(-1))

    class _Wrap(nn.Module):  # the Trainer compares outputs with targets, here the tokens themselves: a batch
        def __init__(self, lm: TokenLM) -> None:  # cut to its longest sequence is padded back to the full width
            super().__init__()
            self.lm = lm

        def forward(self, inp: torch.Tensor) -> torch.Tensor:
            logits = self.lm(inp)[0]
            return nn.functional.pad(logits, (0, 0, 0, width - logits.shape[1]))

    n = len(x)
    cut = max(1, n // 10)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    stop, fit_idx = order[:cut], order[cut:] if n > 1 else order
    if groups is not None and len(np.unique(groups)) > 1:
        names = np.unique(groups)
        held = np.random.default_rng(seed).choice(names, max(1, len(names) // 10), replace=False)
        mask = torch.from_numpy(np.isin(groups, held))
        stop, fit_idx = torch.nonzero(mask).flatten(), torch.nonzero(~mask).flatten()
    result = Trainer(cfg, seed=seed).fit(_Wrap(module), lm_loss, TokenBatches(x[fit_idx], lengths[fit_idx]),
                                         x[fit_idx], TokenBatches(x[stop], lengths[stop]), x[stop])
    module.eval()
    return result


@torch.no_grad()
def sample_token_lm(module: TokenLM, n: int, bos: int, eos: int, max_len: int, seed: int = 0,
                    allowed: torch.Tensor | None = None, batch: int = 256, temperature: float = 1.0
                    ) -> list[list[int]]:
    """`n` token sequences (without begin and end tokens), drawn until the end token or `max_len`;
    `allowed[previous, next]` masks impossible next tokens (a grammar)."""
    module.eval()
    g = torch.Generator().manual_seed(seed)
    out: list[list[int]] = []
    for start in range(0, n, batch):
        m = min(batch, n - start)
        tok = torch.full((m, 1), bos, dtype=torch.long)
        h, done = None, torch.zeros(m, dtype=torch.bool)
        rows: list[list[int]] = [[] for _ in range(m)]
        for _ in range(max_len - 1):
            logits, h = module(tok, h)
            logits = logits[:, -1] / temperature
            if allowed is not None:
                logits = logits.masked_fill(~allowed[tok[:, 0]], -math.inf)
            nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=g)
            for i in np.flatnonzero(~done.numpy()):
                rows[i].append(int(nxt[i]))
            done |= nxt[:, 0] == eos
            if bool(done.all()):
                break
            tok = nxt
        out += [[t for t in r if t != eos] for r in rows]
    return out
