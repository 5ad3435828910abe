"""Text featurizer: a word vocabulary and TF-IDF weights learned on the training notes.

`TextFeaturizer.transform` turns notes into `TokenWindows`: each note's token ids (lower-cased words, numbers
and punctuation, each with its character offsets in the note), cut into windows of `max_len` tokens. A note
longer than one window is never truncated: the deep text models encode every window and pool over a note's
windows (max over windows), so the last sentence of a long discharge summary counts as much as the first.
`to_matrix()` gives the TF-IDF matrix (word 1-2 grams, sublinear tf, SciPy sparse) that the linear baseline
reads, the field's standard for report classification.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np

__all__ = ["TextFeaturizer", "TokenWindows", "tokenize", "PAD", "UNK"]

PAD, UNK = 0, 1
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]", flags=re.I)


def tokenize(text: str) -> tuple[list[str], np.ndarray]:
    """Lower-cased tokens (words with digits, or one punctuation mark) and their (start, end) offsets."""
    found = list(_TOKEN.finditer(text))
    offsets = np.array([m.span() for m in found], dtype=np.int64).reshape(-1, 2)
    return [m.group().lower() for m in found], offsets


def _tfidf(**kw: Any) -> Any:
    """The TF-IDF of word 1-2 grams with sublinear tf (fitted on training notes, or rebuilt from a saved one)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32, **kw)


class TokenWindows:
    """Model-ready notes: flat token ids with per-note offsets; `batch(idx)` gives windows of at most `max_len`
    tokens with the note each window belongs to. `to_matrix()` is the TF-IDF matrix of the same notes."""

    def __init__(self, ids: list[np.ndarray], offsets: list[np.ndarray], max_len: int, texts: list[str],
                 vectorizer: Any = None, vocab: list[str] | None = None) -> None:
        self.lengths = np.array([len(a) for a in ids], dtype=np.int64)
        self.start = np.concatenate([[0], np.cumsum(self.lengths)])
        self.ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        self.offsets = np.concatenate(offsets) if offsets else np.zeros((0, 2), np.int64)
        self.max_len = max_len
        self.texts = texts
        self.vectorizer = vectorizer
        self.vocab = vocab or []
        self._matrix: Any = None

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), len(self.vocab))

    def subset(self, idx: Any) -> TokenWindows:
        idx = np.asarray(idx, dtype=np.int64)
        return TokenWindows([self.ids[self.start[i]:self.start[i + 1]] for i in idx],
                            [self.offsets[self.start[i]:self.start[i + 1]] for i in idx], self.max_len,
                            [self.texts[i] for i in idx], self.vectorizer, self.vocab)

    def __getitem__(self, idx: Any) -> TokenWindows:
        return self.subset(np.arange(len(self))[idx])

    def windows(self, i: int) -> int:
        return max(1, -(-int(self.lengths[i]) // self.max_len))

    def batch(self, idx: Any) -> dict[str, Any]:
        """`ids` (windows, L) padded with 0, `owner` (windows,): which of the `n` notes each window is from."""
        import torch

        idx = np.asarray(idx, dtype=np.int64)
        n_win = np.maximum(1, -(-self.lengths[idx] // self.max_len))
        width = int(min(self.max_len, max(1, self.lengths[idx].max(initial=1))))
        out = np.zeros((int(n_win.sum()), width), dtype=np.int64)
        row = 0
        for i, w in zip(idx, n_win, strict=True):
            toks = self.ids[self.start[i]:self.start[i + 1]]
            for k in range(w):
                piece = toks[k * self.max_len:(k + 1) * self.max_len]
                out[row, :len(piece)] = piece
                row += 1
        return {"ids": torch.from_numpy(out), "owner": torch.from_numpy(np.repeat(np.arange(len(idx)), n_win)),
                "n": len(idx)}

    def tokens(self, i: int) -> list[tuple[str, int, int]]:
        """Note i's tokens as they appear in its text, with character offsets."""
        return [(self.texts[i][a:b], int(a), int(b)) for a, b in self.offsets[self.start[i]:self.start[i + 1]]]

    def to_matrix(self) -> Any:
        """TF-IDF of word 1-2 grams (SciPy CSR, float32), with the idf learned on the training notes."""
        if self._matrix is None:
            self._matrix = self.vectorizer.transform(self.texts).astype(np.float32)
        return self._matrix

    def matrix_names(self) -> list[str]:
        return [f"tfidf:{t}" for t in self.vectorizer.get_feature_names_out()]


class TextFeaturizer:
    """Vocabulary (words seen `min_count` times in the training notes, at most `max_vocab`) and TF-IDF idf
    weights, fitted on the training notes only.

    Args:
        text_column: the column holding the notes.
        max_len: tokens per window (longer notes get several windows, pooled by the models).
    """

    name = "text-v1"

    def __init__(self, text_column: str = "text", max_len: int = 256, min_count: int = 2,
                 max_vocab: int = 30_000, tfidf_features: int = 100_000) -> None:
        self.text_column = text_column
        self.max_len, self.min_count, self.max_vocab, self.tfidf_features = max_len, min_count, max_vocab, \
            tfidf_features
        self.vocab: list[str] = []
        self.index: dict[str, int] = {}
        self.vectorizer: Any = None
        self.output_sources = ["text"]
        self.record_columns: list[str] = ["note_id"]  # columns that name a note, kept beside its prediction

    def fit(self, frame: Any) -> TextFeaturizer:
        texts = frame[self.text_column].astype(str).tolist()
        counts = Counter(t for text in texts for t in tokenize(text)[0])
        kept = sorted((t for t, c in counts.items() if c >= self.min_count), key=lambda t: (-counts[t], t))
        self.vocab = ["<pad>", "<unk>"] + kept[:self.max_vocab]
        self.index = {t: i for i, t in enumerate(self.vocab)}
        # n-grams in at least 2 training notes (1 for a handful of notes, where that may leave none)
        self.vectorizer = _tfidf(min_df=2 if len(texts) >= 20 else 1, max_features=self.tfidf_features).fit(texts)
        return self

    def check_columns(self, frame: Any, source: str = "input") -> list[str]:
        """Columns the featurizer does not read (the caller may warn); a DataError when the text is missing or a
        note is empty / not text."""
        from medflow.data.text import check_notes
        from medflow.errors import DataError

        if self.text_column not in frame.columns:
            raise DataError(f"{source}: the text column '{self.text_column}' is missing; columns are "
                            f"{list(frame.columns)}.")
        check_notes(frame, self.text_column, source)
        return [c for c in frame.columns if c != self.text_column]

    def transform(self, frame: Any, source: str = "input") -> TokenWindows:
        texts = frame[self.text_column].tolist()
        if not all(isinstance(t, str) and t.strip() for t in texts):
            self.check_columns(frame, source)
        ids, offsets = [], []
        for text in texts:
            toks, off = tokenize(text)
            ids.append(np.array([self.index.get(t, UNK) for t in toks], dtype=np.int64))
            offsets.append(off)
        return TokenWindows(ids, offsets, self.max_len, texts, self.vectorizer, self.vocab)

    def to_dict(self) -> dict[str, Any]:
        v = self.vectorizer
        return {"version": self.name, "text_column": self.text_column, "max_len": self.max_len,
                "min_count": self.min_count, "max_vocab": self.max_vocab, "tfidf_features": self.tfidf_features,
                "record_columns": self.record_columns,
                "vocab": self.vocab, "tfidf_terms": v.get_feature_names_out().tolist(),
                "tfidf_idf": [float(x) for x in v.idf_]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextFeaturizer:
        f = cls(d["text_column"], d["max_len"], d["min_count"], d["max_vocab"], d["tfidf_features"])
        f.vocab = list(d["vocab"])
        f.record_columns = list(d.get("record_columns", ["note_id"]))
        f.index = {t: i for i, t in enumerate(f.vocab)}
        f.vectorizer = _tfidf(vocabulary={t: i for i, t in enumerate(d["tfidf_terms"])})
        f.vectorizer.idf_ = np.asarray(d["tfidf_idf"], dtype=np.float64)
        return f

    @property
    def feature_names(self) -> list[str]:
        return ["text"]
