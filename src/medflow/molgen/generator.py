"""A SMILES language model (a character-level LSTM over SMILES tokens; Segler et al. 2018), trained on a set of
molecules and sampled token by token.

Tokens follow Schwaller et al.'s regular expression (bracket atoms such as `[nH]` or `[C@@H]`, two-letter
elements `Cl` / `Br`, ring-closure numbers including `%10`, bonds, branches): a SMILES the expression does not
cover whole is left out of training and counted. Each training molecule is written `augment` times as a
randomized SMILES (RDKit's `doRandom`, Arus-Pous et al. 2019) beside its canonical form, which multiplies a
small set's sequences and teaches the grammar rather than one spelling. The vocabulary is the canonical forms'
tokens plus ring and branch tokens; a randomized form needing any other token is left out. The model is
`models.language.TokenLM` on the core Trainer (length-bucketed batches, early stopping on a tenth of the
molecules, all their spellings).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from medflow.errors import DataError
from medflow.models.language import TokenLM, fit_token_lm, pad_tokens, sample_token_lm

__all__ = ["GeneratorConfig", "MoleculeGenerator", "smiles_tokens", "SMILES_PATTERN"]

SMILES_PATTERN = re.compile(r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|"
                            r"%[0-9]{2}|[0-9])")
_SPECIAL = ["<pad>", "<bos>", "<eos>"]
TRAIN_DEFAULTS = {"max_epochs": 30, "patience": 4, "lr": 3e-3, "batch_size": 64, "progress": False}


def smiles_tokens(smiles: str) -> list[str] | None:
    """The SMILES as tokens, or None when the expression does not cover it whole."""
    tokens = SMILES_PATTERN.findall(smiles)
    return tokens if "".join(tokens) == smiles else None


class GeneratorConfig(BaseModel):
    """The SMILES language model's size and training data options."""

    model_config = ConfigDict(extra="forbid")
    cell: Literal["lstm", "gru"] = "lstm"
    d: int = Field(64, ge=8, description="token embedding size")
    hidden: int = Field(384, ge=16)
    layers: int = Field(2, ge=1, le=4)
    dropout: float = Field(0.1, ge=0, lt=1)
    augment: int = Field(4, ge=0, le=50, description="randomized SMILES per training molecule, beside its "
                                                      "canonical one")
    max_len: int = Field(120, ge=10, le=500, description="longest SMILES in tokens (longer ones are left out)")


class MoleculeGenerator:
    """Fit on SMILES, sample new SMILES (`sample`), fine-tune toward chosen molecules (`fine_tune`), save / load."""

    def __init__(self, config: GeneratorConfig | dict | None = None) -> None:
        self.config = config if isinstance(config, GeneratorConfig) else GeneratorConfig(**(config or {}))
        self.vocab: list[str] = []
        self.index: dict[str, int] = {}
        self.module: TokenLM | None = None
        self.training: dict[str, Any] = {}

    def _sequences(self, smiles: list[str], augment: int, seed: int) -> tuple[list[list[int]], int, np.ndarray]:
        from rdkit import Chem, RDLogger

        rng = np.random.default_rng(seed)
        seqs, skipped, group = [], 0, []
        RDLogger.DisableLog("rdApp.*")
        try:
            for k, s in enumerate(smiles):
                mol = Chem.MolFromSmiles(s)
                if mol is None:
                    skipped += 1
                    continue
                forms = {Chem.MolToSmiles(mol)}
                for _ in range(augment):
                    Chem.rdBase.SeedRandomNumberGenerator(int(rng.integers(2**31 - 1)))
                    forms.add(Chem.MolToSmiles(mol, doRandom=True, canonical=False))
                kept = 0
                for f in sorted(forms):
                    toks = smiles_tokens(f)
                    if toks is None or len(toks) + 2 > self.config.max_len or any(t not in self.index for t in toks):
                        continue
                    seqs.append([self.index["<bos>"]] + [self.index[t] for t in toks] + [self.index["<eos>"]])
                    group.append(k)
                    kept += 1
                skipped += kept == 0
        finally:
            RDLogger.EnableLog("rdApp.*")
        return seqs, skipped, np.asarray(group, dtype=np.int64)

    def fit(self, smiles: list[str], seed: int = 0, train: Any = None) -> MoleculeGenerator:
        """Learn from training SMILES (valid ones; each also written as randomized SMILES)."""
        from rdkit import Chem

        from medflow.train.trainer import TrainConfig

        vocab: set[str] = set()
        for s in smiles:
            mol = Chem.MolFromSmiles(s)
            toks = smiles_tokens(Chem.MolToSmiles(mol)) if mol is not None else None
            vocab.update(toks or [])
        vocab.update(t for t in ("(", ")", "1", "2", "=") if vocab)  # randomized SMILES open more rings, branches
        self.vocab = _SPECIAL + sorted(vocab)
        self.index = {t: i for i, t in enumerate(self.vocab)}
        seqs, skipped, groups = self._sequences(smiles, self.config.augment, seed)
        if len(seqs) < 10:
            raise DataError(f"{len(seqs)} usable training SMILES (of {len(smiles)}); a generator needs at least 10.")
        x, lengths = pad_tokens(seqs)
        torch.manual_seed(seed)
        c = self.config
        self.module = TokenLM(len(self.vocab), c.d, c.hidden, c.layers, c.dropout, c.cell)
        cfg = train or TrainConfig(**TRAIN_DEFAULTS)
        result = fit_token_lm(self.module, x, lengths, cfg, seed, groups)  # early stopping on unseen molecules
        self.training = {"molecules": len(smiles), "skipped": int(skipped), "sequences": len(seqs), "seed": seed,
                         "epochs": len(getattr(result, "history", []) or []), "vocabulary": len(self.vocab)}
        return self

    def sample(self, n: int, seed: int = 0, temperature: float = 1.0) -> list[str]:
        """`n` sampled SMILES strings, as drawn (some may not be valid molecules)."""
        if self.module is None:
            raise DataError("the generator is not trained; fit it or load a generator run.")
        rows = sample_token_lm(self.module, n, self.index["<bos>"], self.index["<eos>"], self.config.max_len, seed,
                               batch=512, temperature=temperature)
        return ["".join(self.vocab[t] for t in r if t > 2) for r in rows]

    def fine_tune(self, smiles: list[str], seed: int = 0, epochs: int = 3, lr: float = 5e-4) -> MoleculeGenerator:
        """A copy trained further on `smiles` (their vocabulary must be this one's; others are left out)."""
        from medflow.train.trainer import TrainConfig

        other = copy.deepcopy(self)
        seqs, _, _ = other._sequences(smiles, 2, seed)
        if len(seqs) < 10:
            return other
        x, lengths = pad_tokens(seqs)
        other.module.train()
        fit_token_lm(other.module, x, lengths, TrainConfig(max_epochs=epochs, patience=epochs, lr=lr,
                                                           batch_size=64, progress=False, warmup_epochs=0), seed)
        return other

    def save(self, directory: Path) -> None:
        from safetensors.torch import save_file

        from medflow.artifacts import write_json

        assert self.module is not None
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.module.state_dict().items()},
                  str(directory / "generator.safetensors"))
        write_json(directory / "generator.json", {"version": "smiles-lm-v1", "config": self.config.model_dump(),
                                                   "vocab": self.vocab, "training": self.training})

    @classmethod
    def load(cls, directory: Path) -> MoleculeGenerator:
        from safetensors.torch import load_file

        meta = json.loads((directory / "generator.json").read_text())
        gen = cls(meta["config"])
        gen.vocab, gen.training = meta["vocab"], meta.get("training", {})
        gen.index = {t: i for i, t in enumerate(gen.vocab)}
        c = gen.config
        gen.module = TokenLM(len(gen.vocab), c.d, c.hidden, c.layers, c.dropout, c.cell)
        gen.module.load_state_dict(load_file(str(directory / "generator.safetensors")))
        gen.module.eval()
        return gen
