"""Generators of synthetic records: a Gaussian copula, a tabular VAE and a conditional GAN.

* `copula`: each column mapped to a standard-normal latent (numeric: its quantile transform; categorical: a
  uniform draw inside the category's share of the cumulative frequencies, then the normal quantile), one
  correlation matrix over the latents, samples drawn from that multivariate normal and mapped back.
* `tvae`: a variational autoencoder (Xu et al. 2019) over `TableTransformer`'s matrix: MLP encoder to a Gaussian
  latent, MLP decoder whose continuous outputs are fitted by squared error, flags by binary cross-entropy and
  one-hot blocks by cross-entropy, plus the KL term; trained by the core Trainer (AdamW, schedule, early stopping
  on held-out training records). Sampling decodes standard-normal latents; categories are drawn from the
  decoder's softmax.
* `ctgan`: a conditional Wasserstein GAN with gradient penalty (Xu et al. 2019): the generator gets noise plus
  a condition vector (one category of one categorical column, drawn by log-frequency, "training-by-sampling"),
  the critic sees records with their condition, and a cross-entropy term makes the generator honour the
  condition. Its two optimizers alternate (5 critic steps per generator step in WGAN-GP; here 1:1 as in CTGAN),
  which is not the Trainer's one-loss loop, so it has its own loop with the same seeding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import norm
from torch import nn

from medflow.data.dataset import FeatureType
from medflow.synth.transform import TableTransformer
from medflow.train.trainer import TrainConfig, Trainer

__all__ = ["GENERATORS", "make_generator"]


class Copula:
    name = "copula"

    def __init__(self, types: dict[str, FeatureType], **_: Any) -> None:
        self.tf = TableTransformer(types)

    def fit(self, frame: pd.DataFrame, seed: int = 0, train: TrainConfig | None = None) -> Copula:
        self.tf.fit(frame, seed)
        rng = np.random.default_rng(seed)
        self.cuts: dict[str, np.ndarray] = {}
        x = self.tf.transform(frame)
        z = np.column_stack([self._latent(x, s, rng) for s in self._spans()])
        self.corr = np.corrcoef(z, rowvar=False) if z.shape[1] > 1 else np.ones((1, 1))
        self.corr = np.nan_to_num(self.corr) + 1e-6 * np.eye(len(self.corr))
        return self

    def _spans(self) -> list:
        return [s for s in self.tf.spans if s.kind != "flag"] + [s for s in self.tf.spans if s.kind == "flag"]

    def _latent(self, x: np.ndarray, span: Any, rng: np.random.Generator) -> np.ndarray:
        if span.kind == "num":
            return x[:, span.start]
        if span.kind == "flag":  # missing or not: a two-category column
            p_miss = x[:, span.start].mean()
            self.cuts[span.column + "\0flag"] = np.array([0.0, 1 - p_miss, 1.0])
            u = np.where(x[:, span.start] > 0.5, 1 - p_miss + rng.random(len(x)) * p_miss,
                         rng.random(len(x)) * (1 - p_miss))
            return norm.ppf(np.clip(u, 1e-6, 1 - 1e-6))
        block = x[:, span.start:span.start + span.width]
        share = block.mean(0)
        cuts = np.r_[0.0, np.cumsum(share)]
        self.cuts[span.column] = cuts
        k = block.argmax(1)
        u = cuts[k] + rng.random(len(x)) * share[k]
        return norm.ppf(np.clip(u, 1e-6, 1 - 1e-6))

    def sample(self, n: int, seed: int = 0) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        z = rng.multivariate_normal(np.zeros(len(self.corr)), self.corr, size=n, method="cholesky")
        out = np.zeros((n, self.tf.width), dtype=np.float32)
        for j, span in enumerate(self._spans()):
            if span.kind == "num":
                out[:, span.start] = z[:, j]
            elif span.kind == "flag":
                out[:, span.start] = norm.cdf(z[:, j]) > self.cuts[span.column + "\0flag"][1]
            else:
                k = np.clip(np.searchsorted(self.cuts[span.column], norm.cdf(z[:, j]), side="right") - 1, 0,
                            span.width - 1)
                out[np.arange(n), span.start + k] = 1.0
        return self.tf.inverse(out)


class _VAE(nn.Module):
    def __init__(self, width: int, hidden: int, latent: int) -> None:
        super().__init__()
        self.latent = latent
        self.encoder = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, width))
        self.log_sigma = nn.Parameter(torch.full((width,), -1.0))  # per-column output noise of continuous columns

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return torch.cat([self.decoder(z), mu, logvar], dim=1)


def _recon_loss(spans: list, out: torch.Tensor, x: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    total = out.new_zeros(())
    for s in spans:
        o, t = out[:, s.start:s.start + s.width], x[:, s.start:s.start + s.width]
        if s.kind == "num":  # Gaussian likelihood with a learned per-column sigma (TVAE)
            ls = log_sigma[s.start:s.start + s.width].clamp(-4.0, 1.0)
            total = total + (((o - t) ** 2) / (2 * torch.exp(2 * ls)) + ls).sum(1).mean()
        elif s.kind == "flag":
            total = total + nn.functional.binary_cross_entropy_with_logits(o, t, reduction="none").sum(1).mean()
        else:
            total = total + nn.functional.cross_entropy(o, t.argmax(1))
    return total


class TVAE:
    name = "tvae"

    def __init__(self, types: dict[str, FeatureType], hidden: int = 128, latent: int = 32, beta: float = 1.0,
                 **_: Any) -> None:
        self.tf, self.hidden, self.latent, self.beta = TableTransformer(types), hidden, latent, beta

    def fit(self, frame: pd.DataFrame, seed: int = 0, train: TrainConfig | None = None) -> TVAE:
        self.tf.fit(frame, seed)
        x = torch.as_tensor(self.tf.transform(frame))
        torch.manual_seed(seed)
        self.module = _VAE(self.tf.width, self.hidden, self.latent)
        w, spans, beta, d = self.tf.width, self.tf.spans, self.beta, self.latent

        def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            mu, logvar = out[:, w:w + d], out[:, w + d:]
            kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1).mean()
            return _recon_loss(spans, out[:, :w], target, self.module.log_sigma) + beta * kl

        cfg = train or TrainConfig(max_epochs=300, batch_size=256, lr=1e-3, patience=30)
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        n_val = max(1, len(x) // 10)
        val, tr = perm[:n_val], perm[n_val:]
        from medflow.train.callbacks import EarlyStopping

        stop = EarlyStopping("val_loss", higher_is_better=False, patience=cfg.patience)
        state = Trainer(cfg, seed=seed, callbacks=[stop]).fit(self.module, loss, x[tr], x[tr], x[val], x[val])
        self.history = state.history
        return self

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> pd.DataFrame:
        g = torch.Generator().manual_seed(seed)
        self.module.eval()
        out = self.module.decoder(torch.randn(n, self.latent, generator=g)).numpy()
        sigma = torch.exp(self.module.log_sigma.clamp(-4.0, 1.0)).numpy()
        rng = np.random.default_rng(seed)
        for s in self.tf.spans:
            if s.kind == "num":  # the decoder's mean plus its learned noise, as TVAE samples
                out[:, s.start] += sigma[s.start] * rng.standard_normal(n)
            elif s.kind == "flag":
                out[:, s.start] = rng.random(n) < 1 / (1 + np.exp(-out[:, s.start]))
        return self.tf.inverse(out, rng)


class CTGAN:
    name = "ctgan"

    def __init__(self, types: dict[str, FeatureType], hidden: int = 256, noise: int = 128, epochs: int = 300,
                 batch_size: int = 500, **_: Any) -> None:
        self.tf, self.hidden, self.noise, self.epochs, self.batch = TableTransformer(types), hidden, noise, epochs, \
            batch_size

    def _activate(self, out: torch.Tensor, hard: bool = False) -> torch.Tensor:
        parts = []
        for s in self.tf.spans:
            o = out[:, s.start:s.start + s.width]
            if s.kind == "num":
                parts.append(o)
            elif s.kind == "flag":
                parts.append(torch.sigmoid(o))
            else:
                parts.append(nn.functional.gumbel_softmax(o, tau=0.2, hard=hard))
        return torch.cat(parts, dim=1)

    def fit(self, frame: pd.DataFrame, seed: int = 0, train: TrainConfig | None = None) -> CTGAN:
        self.tf.fit(frame, seed)
        x = torch.as_tensor(self.tf.transform(frame))
        torch.manual_seed(seed)
        self.cats = [s for s in self.tf.spans if s.kind == "cat"]
        self.cond_width = sum(s.width for s in self.cats)
        w, c, h = self.tf.width, self.cond_width, self.hidden
        self.gen = nn.Sequential(nn.Linear(self.noise + c, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, h),
                                 nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, w))
        critic = nn.Sequential(nn.Linear(w + c, h), nn.LeakyReLU(0.2), nn.Dropout(0.5), nn.Linear(h, h),
                               nn.LeakyReLU(0.2), nn.Dropout(0.5), nn.Linear(h, 1))
        opt_g = torch.optim.Adam(self.gen.parameters(), lr=2e-4, betas=(0.5, 0.9), weight_decay=1e-6)
        opt_c = torch.optim.Adam(critic.parameters(), lr=2e-4, betas=(0.5, 0.9), weight_decay=1e-6)
        g = torch.Generator().manual_seed(seed)
        # training-by-sampling: log-frequency of each category, rows indexed per category
        self.freq = [x[:, s.start:s.start + s.width].sum(0) for s in self.cats]
        self.logfreq = [torch.log1p(f) for f in self.freq]
        rows = [[torch.nonzero(x[:, s.start + k], as_tuple=True)[0] for k in range(s.width)] for s in self.cats]
        bs = min(self.batch, len(x))
        self.history = []
        for epoch in range(self.epochs):
            for _ in range(max(1, len(x) // bs)):
                cond, col, cat = self._conditions(bs, g)
                real_idx = self._real_rows(rows, col, cat, len(x), g)
                real = torch.cat([x[real_idx], cond], 1)
                fake = torch.cat([self._activate(self.gen(torch.cat([torch.randn(bs, self.noise, generator=g),
                                                                     cond], 1))), cond], 1)
                alpha = torch.rand(bs, 1, generator=g)
                mix = (alpha * real + (1 - alpha) * fake.detach()).requires_grad_(True)
                grad = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)[0]
                loss_c = critic(fake.detach()).mean() - critic(real).mean() + 10 * ((grad.norm(2, dim=1) - 1) ** 2
                                                                                    ).mean()
                opt_c.zero_grad(set_to_none=True)
                loss_c.backward()
                opt_c.step()
                cond, col, cat = self._conditions(bs, g)
                raw = self.gen(torch.cat([torch.randn(bs, self.noise, generator=g), cond], 1))
                fake = torch.cat([self._activate(raw), cond], 1)
                loss_g = -critic(fake).mean() + self._cond_loss(raw, col, cat)
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
            self.history.append({"epoch": epoch, "critic_loss": float(loss_c), "generator_loss": float(loss_g)})
        return self

    def _real_rows(self, rows: list, col: torch.Tensor, cat: torch.Tensor, n: int, g: torch.Generator
                   ) -> torch.Tensor:
        """For each condition (column, category), a random real row that has that category."""
        if not self.cats:
            return torch.randint(n, (len(col),), generator=g)
        idx = torch.empty(len(col), dtype=torch.long)
        key = col * 100_000 + cat
        for k in torch.unique(key).tolist():
            sel = (key == k).nonzero(as_tuple=True)[0]
            pool = rows[k // 100_000][k % 100_000]
            idx[sel] = pool[torch.randint(len(pool), (len(sel),), generator=g)]
        return idx

    def _conditions(self, n: int, g: torch.Generator, original: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cond = torch.zeros(n, self.cond_width)
        if not self.cats:
            return cond, torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)
        col = torch.randint(len(self.cats), (n,), generator=g)
        cat = torch.empty(n, dtype=torch.long)
        offset = np.r_[0, np.cumsum([s.width for s in self.cats])]
        for i in range(len(self.cats)):
            sel = col == i
            if sel.any():
                f = self.freq[i] if original else self.logfreq[i]
                p = f / f.sum()
                cat[sel] = torch.multinomial(p, int(sel.sum()), replacement=True, generator=g)
                cond[sel.nonzero(as_tuple=True)[0], int(offset[i]) + cat[sel]] = 1.0
        return cond, col, cat

    def _cond_loss(self, raw: torch.Tensor, col: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        if not self.cats:
            return raw.new_zeros(())
        loss = raw.new_zeros(())
        for i, s in enumerate(self.cats):
            sel = col == i
            if sel.any():
                loss = loss + nn.functional.cross_entropy(raw[sel, s.start:s.start + s.width], cat[sel],
                                                          reduction="sum")
        return loss / len(col)

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> pd.DataFrame:
        g = torch.Generator().manual_seed(seed)
        self.gen.eval()
        parts = []
        for i in range(0, n, 1000):
            m = min(1000, n - i)
            # conditions drawn with the real frequencies (not the log-frequencies of training): the samples keep
            # the real category mix
            cond = self._conditions(m, g, original=True)[0]
            out = self._activate(self.gen(torch.cat([torch.randn(m, self.noise, generator=g), cond], 1)),
                                 hard=True)
            parts.append(out.numpy())
        out = np.concatenate(parts)
        for s in self.tf.spans:
            if s.kind == "flag":
                out[:, s.start] = out[:, s.start] > 0.5
        return self.tf.inverse(out)


GENERATORS = {"copula": Copula, "tvae": TVAE, "ctgan": CTGAN}


def make_generator(name: str, types: dict[str, FeatureType], **params: Any) -> Any:
    from medflow.errors import ConfigError

    if name not in GENERATORS:
        raise ConfigError(f"--model '{name}': unknown generator; choose one of {sorted(GENERATORS)}.")
    return GENERATORS[name](types, **params)

