"""Masked-language-model pretraining on unlabeled notes (`medflow pretrain` with `kind: text`).

Starts from a local Hugging Face checkpoint (domain-adaptive pretraining: `model.checkpoint: FOLDER`) or from a
small BERT built on the notes themselves (a WordPiece tokenizer trained by `tokenizers`, random weights:
`model.from_scratch`). Notes are cut by the tokenizer into windows of `max_len` tokens (never truncated), each
window a training record; 15% of the text tokens are chosen for prediction each time a window is seen (80%
replaced by [MASK], 10% by a random token, 10% kept: BERT's recipe), drawn from torch's generator, so the
Trainer's seeding and checkpoints make a resumed run exact. Held-out notes (a fixed share, chosen by a hash of the
note's row) are scored with a fixed masking: masked-token perplexity and top-1 accuracy with 95% CIs from a
bootstrap over notes, beside the perplexity of the training tokens' frequencies. The run's `hf/` folder is a
Hugging Face checkpoint (encoder and tokenizer): `hf_classifier` takes the run as its `checkpoint`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F

from medflow.data.text import TextSource
from medflow.train.trainer import TrainConfig

__all__ = ["TextPretrainConfig", "MaskedLM", "pretrain_text"]


class TextModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    checkpoint: str | None = Field(None, description="a local Hugging Face folder to continue pretraining")
    hidden: int = Field(64, ge=8, le=4096, description="from scratch: width")
    layers: int = Field(2, ge=1, le=24)
    heads: int = Field(2, ge=1, le=64)
    vocab_size: int = Field(4000, ge=100, le=200_000, description="from scratch: WordPiece vocabulary size")


class TextPretrainData(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: TextSource


def _train_defaults() -> TrainConfig:
    return TrainConfig(max_epochs=5, batch_size=16, lr=5e-4, patience=2)


class TextPretrainConfig(BaseModel):
    """What `medflow pretrain` reads for notes (YAML with `kind: text`)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field("pretrain_text", pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["text"] = "text"
    data: TextPretrainData
    objective: Literal["masked_lm"] = "masked_lm"
    model: TextModel = TextModel()
    max_len: int = Field(128, ge=16, le=8192, description="tokens per window")
    mask_share: float = Field(0.15, gt=0, lt=1)
    train: TrainConfig = Field(default_factory=_train_defaults)
    holdout: float = Field(0.05, gt=0, lt=0.5)
    seed: int = 0
    output_dir: str = "runs"


class MaskedLM(nn.Module):
    """A Hugging Face masked-LM network with the masking inside: per window [NLL sum over the masked tokens,
    masked tokens, top-1 hits, top-10 hits] (the 4-column form `models.timeline.next_code_loss` averages)."""

    def __init__(self, mlm: nn.Module, mask_id: int, special: list[int], share: float) -> None:
        super().__init__()
        self.mlm, self.mask_id, self.share = mlm, int(mask_id), float(share)
        self.register_buffer("special", torch.as_tensor(sorted(set(special)), dtype=torch.long))

    def forward(self, b: dict[str, Any]) -> torch.Tensor:
        ids, att = b["input_ids"], b["attention_mask"]
        text = (att > 0) & ~torch.isin(ids, self.special)
        if self.training:
            r = torch.rand(ids.shape)
            chosen = text & (r < self.share)
            how = torch.rand(ids.shape)
            vocab = self.mlm.config.vocab_size
            noisy = torch.where(chosen & (how < 0.8), torch.full_like(ids, self.mask_id), ids)
            noisy = torch.where(chosen & (how >= 0.8) & (how < 0.9), torch.randint_like(ids, vocab), noisy)
        else:  # a fixed masking, so every evaluation scores the same positions
            pos = torch.arange(ids.shape[1]).expand_as(ids)
            chosen = text & ((pos * 7 + ids) % 100 < int(self.share * 100))
            noisy = torch.where(chosen, torch.full_like(ids, self.mask_id), ids)
        win, p = chosen.nonzero(as_tuple=True)
        out = torch.zeros(ids.shape[0], 4)
        h = self.mlm(input_ids=noisy, attention_mask=att).logits
        if len(win):
            logits, target = h[win, p], ids[win, p]
            nll = F.cross_entropy(logits, target, reduction="none")
            with torch.no_grad():
                top = logits.topk(min(10, logits.shape[-1]), dim=-1).indices
                hit1 = (top[:, 0] == target).float()
                hit10 = (top == target.unsqueeze(-1)).any(-1).float()
            out = out.index_add(0, win, torch.stack([nll, torch.ones_like(nll), hit1, hit10], dim=1))
        return out + 0.0 * h.sum()


def _windows(texts: list[str], tokenizer: Any, max_len: int) -> Any:
    """Every window of every note as its own record (HFWindows with one window per 'note'); and each's note."""
    from medflow.models.hf import HFWindows

    notes = HFWindows.tokenize(texts, tokenizer, max_len, 0)
    owner = np.repeat(np.arange(len(texts)), [len(w) for w in notes.windows_of])
    flat = HFWindows([texts[i] for i in owner], [[w] for ws in notes.windows_of for w in ws],
                     [[o] for os_ in notes.offsets for o in os_], notes.pad)
    return flat, owner


def pretrain_text(cfg: TextPretrainConfig, work: Path, console: Any, progress: bool) -> dict[str, Any]:
    """Train; write `hf/` into `work`; return the pretrain.json fields (the caller finishes the run directory)."""
    import time

    from transformers import AutoModelForMaskedLM

    from medflow.data.text import read_notes
    from medflow.models.hf import checkpoint_folder, load_tokenizer, quiet, small_bert
    from medflow.models.timeline import next_code_accuracy, next_code_loss
    from medflow.pretrain.evaluate import bootstrap_figures
    from medflow.pretrain.tokens import is_holdout
    from medflow.train.callbacks import Checkpoint, EarlyStopping, ProgressBar
    from medflow.train.trainer import Trainer, predict_outputs

    quiet()
    ds = read_notes(cfg.data.text)
    texts = ds.frame[ds.text.text_column].astype(str).tolist()
    patients = ds.frame[ds.patient_id].astype(str).to_numpy()
    _, code = np.unique(patients, return_inverse=True)
    hold = is_holdout(code.astype(np.int64), cfg.holdout, cfg.seed)  # a patient's notes stay on one side
    if hold.all() or not hold.any():
        hold = np.zeros(len(texts), bool)
        hold[:: max(2, int(1 / cfg.holdout))] = True
    train_texts = [t for t, h in zip(texts, hold, strict=True) if not h]
    if cfg.model.checkpoint:
        folder = checkpoint_folder(cfg.model.checkpoint)
    else:
        folder = work / "scratch"
        if not (folder / "config.json").exists():
            small_bert(folder, train_texts, cfg.model.hidden, cfg.model.layers, cfg.model.heads,
                       cfg.model.vocab_size, max(cfg.max_len, 512), cfg.seed)
    torch.manual_seed(cfg.seed)
    mlm = AutoModelForMaskedLM.from_pretrained(str(folder), local_files_only=True)
    tok = load_tokenizer(folder, mlm.config.vocab_size)
    if tok.mask_token_id is None:
        from medflow.errors import ConfigError

        raise ConfigError(f"checkpoint {folder}: its tokenizer has no mask token; masked-language pretraining needs "
                          "one ([MASK]).")
    module = MaskedLM(mlm, tok.mask_token_id, tok.all_special_ids, cfg.mask_share)
    x_all, owner = _windows(texts, tok, cfg.max_len)
    train_idx, hold_idx = np.flatnonzero(~hold[owner]), np.flatnonzero(hold[owner])
    x_train, x_hold = x_all.subset(train_idx), x_all.subset(hold_idx)
    counts = np.bincount(np.concatenate([w[0] for w in x_train.windows_of]), minlength=mlm.config.vocab_size)
    counts[tok.all_special_ids] = 0
    p = (counts + 1) / (counts.sum() + len(counts))
    decoder = mlm.get_output_embeddings()
    if not cfg.model.checkpoint and getattr(decoder, "bias", None) is not None:
        with torch.no_grad():  # from scratch, the output starts at the token frequencies (its bias)
            decoder.bias.copy_(torch.as_tensor(np.log(p), dtype=decoder.bias.dtype))
    callbacks: list = [EarlyStopping("val_loss", patience=cfg.train.patience), Checkpoint(work / "checkpoints")]
    if progress and cfg.train.progress:
        callbacks.append(ProgressBar(f"{'pretrain':>18}"))
    start = time.perf_counter()
    state = Trainer(cfg.train, seed=cfg.seed, callbacks=callbacks).fit(
        module, next_code_loss, x_train, torch.zeros(len(x_train)), x_hold, torch.zeros(len(x_hold)),
        next_code_accuracy)
    seconds = time.perf_counter() - start
    scores = predict_outputs(module, x_hold).numpy()
    held = bootstrap_figures(scores, owner[hold_idx], cfg.seed)
    target = np.concatenate([w[0] for w in x_hold.windows_of])
    target = target[~np.isin(target, tok.all_special_ids)]
    held["reference_perplexity"] = float(np.exp(-np.log(p[target]).mean()))
    held["windows"] = len(x_hold)
    held["summary"] = (f"held-out masked-token perplexity {held['perplexity']['value']:.2f} (token frequencies "
                       f"alone: {held['reference_perplexity']:.2f}), top-1 accuracy "
                       f"{held['next_code_accuracy']['value']:.3f}")
    console.print(held["summary"])
    mlm.base_model.save_pretrained(str(work / "hf"))
    tok.save_pretrained(str(work / "hf"))
    resumed = callbacks[1].resumed_from
    return {"kind": "text", "objective": "masked_lm", "name": cfg.name, "history": state.history,
            "model": {"checkpoint": cfg.model.checkpoint or "from scratch (small BERT, WordPiece on the notes)",
                      "hidden": mlm.config.hidden_size, "layers": mlm.config.num_hidden_layers,
                      "heads": mlm.config.num_attention_heads, "vocab_size": mlm.config.vocab_size,
                      "max_len": cfg.max_len},
            "data": {"notes": len(texts), "pretraining_notes": int((~hold).sum()), "held_out_notes": int(hold.sum()),
                     "windows": len(x_all), "source": cfg.data.text.path, "synthetic": bool(ds.synthetic)},
            "synthetic": bool(ds.synthetic), "holdout": held, "best_epoch": callbacks[0].best_epoch,
            "epochs": len(state.history), "resumed_from": resumed, "seconds": {"training": seconds},
            "subjects": sorted(set(patients.tolist()))}
