"""Hugging Face checkpoints from a local folder: `hf_classifier` classifies notes with a BERT-family encoder.

The checkpoint is a folder on disk (`save_pretrained` output: `config.json`, the weights, the tokenizer files) or
a pretrained text run of `medflow pretrain` (its `hf/` folder); it is read with `local_files_only=True`, so
nothing is ever downloaded. Notes longer than the window are cut by the checkpoint's own tokenizer into
overlapping windows (`max_len` tokens, `stride` shared between neighbours) and never truncated: each window's
mean token state goes through the linear head, and a note's logits are the element-wise max over its windows
(as the other text models pool). Saved runs carry the config and tokenizer in `hf/` beside the weights, so a run
loads without the original folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from medflow.errors import ConfigError
from medflow.models.deep import DeepEstimator
from medflow.models.text import pool_windows

__all__ = ["HFConfig", "HFClassifier", "HFEstimator", "HFWindows", "checkpoint_folder", "load_tokenizer",
           "small_bert"]


class HFConfig(BaseModel):
    """`hf_classifier`'s parameters."""

    model_config = ConfigDict(extra="forbid")
    checkpoint: str = Field(..., description="a local Hugging Face model folder, or a `medflow pretrain` text run")
    max_len: int = Field(128, ge=8, le=8192, description="tokens per window (special tokens included)")
    stride: int = Field(32, ge=0, description="tokens shared by neighbouring windows of a long note")
    dropout: float = Field(0.1, ge=0, lt=1)


def quiet() -> None:
    """Hugging Face's own progress bars and load reports off: medflow reports what it loaded."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def checkpoint_folder(path: str | Path) -> Path:
    """The folder holding config.json and the weights: `path`, or `path/hf` for a pretrained text run."""
    p = Path(path)
    if (p / "hf" / "config.json").is_file():
        p = p / "hf"
    if not p.is_dir():
        raise ConfigError(f"checkpoint {path}: no such folder; give a Hugging Face model folder on disk "
                          "(save_pretrained output) or a `medflow pretrain` text run (nothing is downloaded).")
    if not (p / "config.json").is_file():
        raise ConfigError(f"checkpoint {p}: no config.json; a Hugging Face model folder holds config.json, the "
                          "weights (model.safetensors or pytorch_model.bin) and the tokenizer files.")
    return p


def load_tokenizer(folder: Path, vocab_size: int | None = None) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"checkpoint {folder}: no usable tokenizer ({exc}); save the tokenizer into the folder "
                          "(tokenizer.save_pretrained(folder)).") from exc
    if vocab_size is not None and len(tok) > vocab_size:
        raise ConfigError(f"checkpoint {folder}: the tokenizer has {len(tok)} tokens but the model's embedding "
                          f"{vocab_size}: they do not belong together; save the model's own tokenizer there.")
    return tok


def small_bert(folder: str | Path, texts: list[str], hidden: int = 64, layers: int = 2, heads: int = 2,
               vocab_size: int = 4000, max_positions: int = 512, seed: int = 0) -> Path:
    """A small BERT from scratch, saved as a Hugging Face folder: a WordPiece tokenizer trained on `texts` (lower-
    cased, `tokenizers`), a `BertConfig` of the given size and random weights (seeded). It is not a pretrained
    clinical model: pretrain it on notes (`medflow pretrain`, kind: text) or fine-tune it directly."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    quiet()
    folder = Path(folder)
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(list(texts), trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_positions)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * hidden, max_position_embeddings=max_positions)
    folder.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    return folder


class HFWindows:
    """Notes tokenized by the checkpoint's tokenizer into overlapping windows; `batch(idx)` pads the windows of
    notes `idx` and says which note each window belongs to (`owner`). `tokens(i)` / `note_weights(i, w)` map
    per-window token weights back to the note's characters (explanations)."""

    def __init__(self, texts: list[str], windows: list[list[np.ndarray]], offsets: list[list[np.ndarray]],
                 pad: int) -> None:
        self.texts, self.windows_of, self.offsets, self.pad = texts, windows, offsets, pad

    @classmethod
    def tokenize(cls, texts: list[str], tokenizer: Any, max_len: int, stride: int) -> HFWindows:
        texts = list(texts)
        enc = tokenizer(texts, truncation=True, max_length=max_len, stride=min(stride, max_len // 2),
                        return_overflowing_tokens=True, return_offsets_mapping=True, padding=False)
        owner = np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)
        windows: list[list[np.ndarray]] = [[] for _ in texts]
        offsets: list[list[np.ndarray]] = [[] for _ in texts]
        for j, note in enumerate(owner):
            windows[note].append(np.asarray(enc["input_ids"][j], dtype=np.int64))
            offsets[note].append(np.asarray(enc["offset_mapping"][j], dtype=np.int64).reshape(-1, 2))
        return cls(texts, windows, offsets, int(tokenizer.pad_token_id or 0))

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.texts), 1)

    def subset(self, idx: Any) -> HFWindows:
        idx = np.asarray(idx, dtype=np.int64)
        return HFWindows([self.texts[i] for i in idx], [self.windows_of[i] for i in idx],
                         [self.offsets[i] for i in idx], self.pad)

    def __getitem__(self, idx: Any) -> HFWindows:
        return self.subset(np.arange(len(self))[idx])

    def windows(self, i: int) -> int:
        return len(self.windows_of[i])

    def batch(self, idx: Any) -> dict[str, Any]:
        idx = np.asarray(idx, dtype=np.int64)
        rows = [w for i in idx for w in self.windows_of[i]]
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.pad, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for j, r in enumerate(rows):
            ids[j, :len(r)], mask[j, :len(r)] = r, 1
        count = np.array([len(self.windows_of[i]) for i in idx], dtype=np.int64)
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
                "owner": torch.from_numpy(np.repeat(np.arange(len(idx)), count)), "n": len(idx)}

    def _kept(self, i: int) -> list[np.ndarray]:
        """Per window of note i, the positions of real text pieces (special tokens have empty offsets)."""
        return [np.flatnonzero(o[:, 1] > o[:, 0]) for o in self.offsets[i]]

    def tokens(self, i: int) -> list[tuple[str, int, int]]:
        """Note i's word pieces as they appear in its text (a piece inside two overlapping windows twice)."""
        out = []
        for o, keep in zip(self.offsets[i], self._kept(i), strict=True):
            out += [(self.texts[i][a:b], int(a), int(b)) for a, b in o[keep]]
        return out

    def note_weights(self, i: int, w: np.ndarray) -> np.ndarray:
        """Per-window weights (windows x width) of note i in the order of `tokens(i)`."""
        return np.concatenate([w[k, keep] for k, keep in enumerate(self._kept(i))]) if len(w) else np.zeros(0)


class HFClassifier(nn.Module):
    """A Hugging Face encoder, its mean token state per window into a linear head, max over a note's windows."""

    head_layer = "head"

    def __init__(self, in_dim: int, out_dim: int, checkpoint: str, max_len: int = 128, stride: int = 32,
                 dropout: float = 0.1, weights: bool = True) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        quiet()
        folder = checkpoint_folder(checkpoint)
        try:
            if weights:
                self.encoder = AutoModel.from_pretrained(str(folder), local_files_only=True)
            else:  # a saved run: the architecture from its config, the weights from the run's safetensors
                self.encoder = AutoModel.from_config(AutoConfig.from_pretrained(str(folder), local_files_only=True))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"checkpoint {folder}: the model does not load ({exc}); the folder needs the weights "
                              "(model.safetensors or pytorch_model.bin) saved with its config.json.") from exc
        self.folder = folder
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.config.hidden_size, out_dim)

    @property
    def embedding(self) -> nn.Module:
        """The token embedding (explanations hook it, as in the other text networks)."""
        return self.encoder.get_input_embeddings()

    def forward(self, b: dict[str, Any]) -> torch.Tensor:
        mask = b["attention_mask"]
        h = self.encoder(input_ids=b["input_ids"], attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)  # mean over the window's tokens
        return pool_windows(self.head(self.drop(pooled)), b["owner"], int(b["n"]))


def build_hf_classifier(in_dim: int, out_dim: int, checkpoint: str, max_len: int = 128, stride: int = 32,
                        dropout: float = 0.1) -> HFClassifier:
    return HFClassifier(in_dim, out_dim, checkpoint, max_len, stride, dropout)


class HFEstimator(DeepEstimator):
    """A DeepEstimator whose inputs are the notes tokenized by the checkpoint's tokenizer (`HFWindows`); the run
    keeps the checkpoint's config and tokenizer in `hf/` so it loads without the original folder."""

    _tokenizer: Any = None

    def fit(self, *args: Any, **kwargs: Any) -> HFEstimator:
        if self.ensemble > 1:
            raise ConfigError(f"model '{self.spec.name}': ensembles of Hugging Face encoders are not supported "
                              "(set ensemble: 1).")
        return super().fit(*args, **kwargs)

    def inputs(self, x: Any) -> Any:
        if isinstance(x, HFWindows):
            return x
        texts = getattr(x, "texts", None)
        if texts is None:
            raise ConfigError(f"model '{self.spec.name}' reads notes; give it text data (data.text, or data.dataset: "
                              "iu_reports).")
        if self._tokenizer is None:
            from transformers import AutoConfig

            folder = checkpoint_folder(self.params.checkpoint)
            vocab = getattr(AutoConfig.from_pretrained(str(folder), local_files_only=True), "vocab_size", None)
            self._tokenizer = load_tokenizer(folder, vocab)
        return HFWindows.tokenize(list(texts), self._tokenizer, self.params.max_len, self.params.stride)

    def _save_weights(self, directory: Path) -> None:
        super()._save_weights(directory)
        module = self.module.members[0] if hasattr(self.module, "members") else self.module
        module.encoder.config.save_pretrained(str(directory / "hf"))
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(module.folder)
        self._tokenizer.save_pretrained(str(directory / "hf"))

    def _load_weights(self, directory: Path) -> None:
        from safetensors.torch import load_file

        self.params = self.params.model_copy(update={"checkpoint": str(directory / "hf")})
        if self.head is None:
            self.head = self._make_head()
        module = HFClassifier(self.in_dim, self.head.output_dim, str(directory / "hf"), self.params.max_len,
                              self.params.stride, self.params.dropout, weights=False)
        module.load_state_dict(load_file(directory / "model.safetensors"))
        self.module = module.eval()
