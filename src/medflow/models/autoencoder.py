"""Patient autoencoder: an embedding per patient history and an anomaly score (`medflow embed`).

The encoder is the GRU of the sequence models (event embedding -> GRU -> last state -> a `dim`-wide
code z); the decoder reconstructs which codes the window holds (multi-hot, binary cross-entropy) from z.
Trained with the core Trainer on the training samples only. The anomaly score of a sample is its
reconstruction loss: histories unlike the training cohort's reconstruct badly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from medflow.models.sequence import EventEmbedding

__all__ = ["AutoencoderConfig", "PatientAutoencoder", "multi_hot", "fit_autoencoder", "embed_and_score"]


class AutoencoderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int = Field(16, ge=2, le=1024, description="embedding width")
    d: int = Field(64, ge=4, le=4096, description="event embedding and GRU width")
    max_epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(2e-3, gt=0)


class PatientAutoencoder(nn.Module):
    def __init__(self, n_codes: int, dim: int = 16, d: int = 64) -> None:
        super().__init__()
        self.embed = EventEmbedding(n_codes, d)
        self.rnn = nn.GRU(d, d, batch_first=True)
        self.to_z = nn.Linear(d, dim)
        self.decoder = nn.Sequential(nn.Linear(dim, d), nn.ReLU(), nn.Linear(d, n_codes))

    def encode(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        from torch.nn.utils.rnn import pack_padded_sequence

        packed = pack_padded_sequence(self.embed(b), b["lengths"].cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)
        return self.to_z(h[-1])

    def forward(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.decoder(self.encode(b))


def multi_hot(x: Any) -> np.ndarray:
    """Which codes (excluding padding and unknown) each sample's window holds."""
    counts = x.to_matrix()[:, : x.n_codes - 2]
    return (counts > 0).astype(np.float32)


def _loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(out[:, 2:], target)


def fit_autoencoder(x_train: Any, x_valid: Any, cfg: AutoencoderConfig, seed: int = 0,
                    progress: bool = False) -> PatientAutoencoder:
    from medflow.train.callbacks import EarlyStopping, ProgressBar
    from medflow.train.trainer import TrainConfig, Trainer

    torch.manual_seed(seed)
    model = PatientAutoencoder(x_train.n_codes, cfg.dim, cfg.d)
    callbacks: list = [EarlyStopping("val_loss", higher_is_better=False, patience=3)]
    if progress:
        callbacks.append(ProgressBar("patient_autoencoder"))
    train = TrainConfig(max_epochs=cfg.max_epochs, batch_size=cfg.batch_size, lr=cfg.lr, progress=progress)
    Trainer(train, seed=seed, callbacks=callbacks).fit(
        model, _loss, x_train, torch.from_numpy(multi_hot(x_train)), x_valid, torch.from_numpy(multi_hot(x_valid)))
    return model.eval()


@torch.no_grad()
def embed_and_score(model: PatientAutoencoder, x: Any, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings n x dim, anomaly score n: mean reconstruction BCE over codes)."""
    target = torch.from_numpy(multi_hot(x))
    zs, scores = [], []
    for i in range(0, len(x), batch_size):
        idx = np.arange(i, min(i + batch_size, len(x)))
        z = model.encode(x.batch(idx))
        logits = model.decoder(z)[:, 2:]
        bce = nn.functional.binary_cross_entropy_with_logits(logits, target[idx], reduction="none").mean(1)
        zs.append(z.numpy())
        scores.append(bce.numpy())
    return np.concatenate(zs), np.concatenate(scores)
