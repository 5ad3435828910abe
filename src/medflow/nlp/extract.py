"""Finding extraction with assertion status, turned into note-level labels.

`Extractor` finds the mentions of each label's target phrases (`context.find_mentions`) and decides whether
each one asserts the finding:

- `assertion="rules"`: ConText's status; a mention counts unless negated, historical, family or hypothetical
  (`count_possible` says whether "possible" counts; it does by default, as in the field's report-level rule).
- `assertion="learned"`: a logistic regression over each mention's context (its ConText categories and
  triggers, the words before and after it in its sentence, the matched phrase, where in the note it sits),
  shared across findings and per finding, trained on note-level labels: every mention of a finding in a note
  carries the note's label (multiple-instance learning; the note's score is its most confident mention).
  Learned from the notes' own labels, it picks up a site's conventions that fixed rules cannot (radiologists'
  hedges that indexers did not count, "borderline" heart size). The decision threshold per finding is chosen
  by 3-fold cross-validation on the training notes for the best F1, and scores are mapped piecewise-linearly
  so that threshold sits at 0.5.

A note with no mention of a finding scores 0 for it (the lexicon bounds recall; `mentions()` shows why).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medflow.nlp.context import Mention, find_mentions

__all__ = ["Extractor", "mention_features"]

_WINDOW = 6


def mention_features(m: Mention, text: str) -> dict[str, float]:
    """Context features of one mention, generic and crossed with its label."""
    s0, s1 = m.sentence
    left = text[s0:m.start].lower().split()[-_WINDOW:]
    right = text[m.end:s1].lower().split()[:_WINDOW]
    strip = ".,;:()"
    left, right = [w.strip(strip) for w in left], [w.strip(strip) for w in right]
    base = {f"ctx={c}" for c in m.categories} | {f"trig={t.rsplit(' (', 1)[0]}" for t in m.triggers}
    base |= {f"L={w}" for w in left if w} | {f"R={w}" for w in right if w}
    base |= {f"L1={left[-1]}" if left else "L1=<s>", f"R1={right[0]}" if right else "R1=</s>"}
    base |= {f"T={m.text.lower()}", f"assert={m.assertion}", f"pos={min(2, int(3 * m.start / max(len(text), 1)))}"}
    feats = {f: 1.0 for f in base}
    feats.update({f"{m.label}|{f}": 1.0 for f in base})
    feats[f"label={m.label}"] = 1.0
    return feats


def _rescale(p: np.ndarray, thr: float) -> np.ndarray:
    """Monotone map of [0, 1] onto itself sending `thr` to 0.5."""
    thr = float(np.clip(thr, 1e-6, 1 - 1e-6))
    return np.where(p < thr, 0.5 * p / thr, 0.5 + 0.5 * (p - thr) / (1 - thr))


def _best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The score threshold with the best F1 (ties: the middle of the best run); 0.5 without positives."""
    if y.sum() == 0 or len(np.unique(p)) < 2:
        return 0.5
    cands = np.unique(p[p > 0])
    best, f1s = 0.5, []
    for t in cands:
        pred = p >= t
        tp = float((pred & (y == 1)).sum())
        f1s.append(2 * tp / max(pred.sum() + y.sum(), 1))
    f1s = np.array(f1s)
    top = np.flatnonzero(f1s >= f1s.max() - 1e-12)
    i = top[len(top) // 2]
    best = float(cands[i] if i == 0 else (cands[i] + cands[i - 1]) / 2)
    return best


class Extractor:
    """Mentions -> note labels (see the module docstring). `fit` is only needed for `assertion="learned"`."""

    def __init__(self, targets: dict[str, list[str]], labels: list[str], assertion: str = "learned",
                 count_possible: bool = True, C: float = 1.0) -> None:
        missing = [lab for lab in labels if lab not in targets]
        if missing:
            from medflow.errors import ConfigError

            raise ConfigError(f"no target phrases for label(s) {missing}; give them in the model's `targets` "
                              f"param (label: [phrases]) or choose a lexicon that has them ({sorted(targets)}).")
        self.targets = {lab: list(targets[lab]) for lab in labels}
        self.labels = list(labels)
        self.assertion, self.count_possible, self.C = assertion, count_possible, C
        self.features: list[str] = []
        self.coef: np.ndarray | None = None
        self.intercept = 0.0
        self.thresholds = [0.5] * len(labels)

    def mentions(self, text: str) -> list[Mention]:
        return find_mentions(text, self.targets)

    def _rule(self, m: Mention) -> float:
        ok = ("present", "possible") if self.count_possible else ("present",)
        return 1.0 if m.assertion in ok else 0.0

    def _mention_rows(self, texts: list[str]) -> tuple[list[list[Mention]], list[dict[str, float]], np.ndarray]:
        per_note = [self.mentions(t) for t in texts]
        feats, owner = [], []
        for i, (t, ms) in enumerate(zip(texts, per_note, strict=True)):
            for m in ms:
                feats.append(mention_features(m, t))
                owner.append(i)
        return per_note, feats, np.asarray(owner, dtype=np.int64)

    def _fit_lr(self, feats: list[dict[str, float]], y: np.ndarray) -> tuple[list[str], np.ndarray, float]:
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.linear_model import LogisticRegression

        vec = DictVectorizer()
        x = vec.fit_transform(feats)
        if len(np.unique(y)) < 2:
            return list(vec.get_feature_names_out()), np.zeros(x.shape[1]), 10.0 if y.mean() > 0.5 else -10.0
        lr = LogisticRegression(C=self.C, max_iter=2000).fit(x, y)
        return list(vec.get_feature_names_out()), lr.coef_[0], float(lr.intercept_[0])

    def _mention_scores(self, feats: list[dict[str, float]], names: list[str], coef: np.ndarray,
                        intercept: float) -> np.ndarray:
        index = {f: j for j, f in enumerate(names)}
        z = np.array([intercept + sum(coef[index[f]] * v for f, v in d.items() if f in index) for d in feats])
        return 1.0 / (1.0 + np.exp(-z))

    def _note_scores(self, per_note: list[list[Mention]], score: np.ndarray, owner: np.ndarray) -> np.ndarray:
        out = np.zeros((len(per_note), len(self.labels)))
        col = {lab: j for j, lab in enumerate(self.labels)}
        k = 0
        for i, ms in enumerate(per_note):
            for m in ms:
                out[i, col[m.label]] = max(out[i, col[m.label]], score[k])
                k += 1
        return out

    def fit(self, texts: list[str], y: np.ndarray, seed: int = 0) -> Extractor:
        """Learn the mention classifier from note labels `y` (notes x labels, 0/1) and each label's threshold."""
        y = np.asarray(y, dtype=float).reshape(len(texts), len(self.labels))
        if self.assertion != "learned":
            return self
        per_note, feats, owner = self._mention_rows(texts)
        if not feats:
            return self
        col = {lab: j for j, lab in enumerate(self.labels)}
        lab_of = [m.label for ms in per_note for m in ms]
        target = np.array([y[owner[k], col[lab_of[k]]] for k in range(len(feats))])
        # thresholds from 3-fold out-of-fold note scores, then the final fit on every training note
        fold = np.empty(len(texts), dtype=np.int64)
        fold[np.random.default_rng(seed).permutation(len(texts))] = np.arange(len(texts)) % 3
        oof = np.zeros((len(texts), len(self.labels)))
        for f in range(3):
            tr = np.isin(owner, np.flatnonzero(fold != f))
            if tr.sum() == 0 or (~tr).sum() == 0:
                continue
            names, coef, b = self._fit_lr([feats[k] for k in np.flatnonzero(tr)], target[tr])
            s = np.zeros(len(feats))
            s[~tr] = self._mention_scores([feats[k] for k in np.flatnonzero(~tr)], names, coef, b)
            notes = self._note_scores(per_note, s, owner)
            oof[fold == f] = notes[fold == f]
        self.thresholds = [_best_threshold(y[:, j], oof[:, j]) for j in range(len(self.labels))]
        self.features, self.coef, self.intercept = self._fit_lr(feats, target)
        return self

    def mention_scores(self, texts: list[str]) -> tuple[list[list[Mention]], np.ndarray, np.ndarray]:
        """Every note's mentions, each mention's score (probability it asserts its finding; rules: 0/1), owners."""
        per_note, feats, owner = self._mention_rows(texts)
        if self.assertion == "learned" and self.coef is not None and feats:
            return per_note, self._mention_scores(feats, self.features, self.coef, self.intercept), owner
        return per_note, np.array([self._rule(m) for ms in per_note for m in ms]), owner

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Note x label scores: the most confident mention's, with 0.5 at each label's threshold."""
        per_note, s, owner = self.mention_scores(texts)
        notes = self._note_scores(per_note, s, owner)
        if self.assertion != "learned":
            return notes
        return np.column_stack([_rescale(notes[:, j], t) for j, t in enumerate(self.thresholds)])

    def state(self) -> dict[str, Any]:
        return {"features": self.features, "coef": None if self.coef is None else self.coef.tolist(),
                "intercept": self.intercept, "thresholds": self.thresholds, "targets": self.targets}

    def load_state(self, d: dict[str, Any]) -> None:
        self.features = list(d["features"])
        self.coef = None if d["coef"] is None else np.asarray(d["coef"], dtype=float)
        self.intercept, self.thresholds = float(d["intercept"]), list(d["thresholds"])
        self.targets = {k: list(v) for k, v in d["targets"].items()}
