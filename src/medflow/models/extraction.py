"""Finding extraction as a model: lexicon mentions with ConText assertion (rules or learned, `nlp.extract`)
turned into note-level labels, so it trains, validates and serves in the same flow as any text model and is
compared with them on the same folds. Binary or multilabel tasks; each label column needs target phrases
(the `lexicon` param names a built-in one, `targets` adds or overrides: {label: [phrases]})."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from medflow.artifacts import read_json, write_json
from medflow.models.spec import Estimator
from medflow.train.trainer import TrainConfig

__all__ = ["ExtractorConfig", "RulesConfig", "ExtractorEstimator"]


class ExtractorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lexicon: Literal["chest_xray", "none"] = Field("chest_xray", description="built-in target phrases per label")
    targets: dict[str, list[str]] = Field({}, description="label column -> phrases that mention it (adds to or "
                                                          "replaces the lexicon's entry)")
    assertion: Literal["learned", "rules"] = "learned"
    count_possible: bool = Field(True, description="rules: a 'possible' mention counts as positive")
    C: float = Field(1.0, gt=0, description="learned: inverse L2 strength of the mention classifier")


class RulesConfig(ExtractorConfig):
    assertion: Literal["learned", "rules"] = "rules"


def build_extractor(task: Any, seed: int, **params: Any) -> Any:
    from medflow.nlp.extract import Extractor
    from medflow.nlp.lexicons import LEXICONS

    targets = {**LEXICONS.get(params["lexicon"], {}), **params["targets"]}
    labels = list(task.labels) if task.kind == "multilabel" else [task.label]
    return Extractor(targets, labels, params["assertion"], params["count_possible"], params["C"])


class ExtractorEstimator(Estimator):
    """Reads the notes' raw text (`TokenWindows.texts`); saved as plain JSON (`extractor.json`)."""

    def fit(self, x_train, y_train, x_valid, y_valid, train: TrainConfig, seed: int, workdir: Path | None = None):
        x_train = self.inputs(x_train)
        self.in_dim = 1
        self.model = self.spec.build(task=self.task, seed=seed, **self.params.model_dump())
        self.model.fit(list(x_train.texts), np.asarray(y_train), seed=seed)
        return self

    def predict(self, x: Any) -> np.ndarray:
        p = self.model.predict_proba(list(self.inputs(x).texts))
        return p[:, 0] if self.task.kind == "binary" else p

    def mentions(self, x: Any) -> list[list[dict[str, Any]]]:
        """Each note's mentions: label, offsets, text, ConText assertion and triggers, and the mention's score."""
        per_note, score, _ = self.model.mention_scores(list(self.inputs(x).texts))
        out, k = [], 0
        for ms in per_note:
            row = []
            for m in ms:
                row.append({**m.as_dict(), "score": round(float(score[k]), 4)})
                k += 1
            out.append(row)
        return out

    def _save_weights(self, directory: Path) -> None:
        write_json(directory / "extractor.json", self.model.state())

    def _load_weights(self, directory: Path) -> None:
        self.model = self.spec.build(task=self.task, seed=0, **self.params.model_dump())
        self.model.load_state(read_json(directory / "extractor.json"))


class ICDCoderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    neighbours: int = Field(0, ge=0, description="nearest coded training notes blended in (0: the code descriptions "
                                                 "alone; >0 learns a site's wording, best on short problem-list "
                                                 "texts; whole template-heavy notes can mislead it)")
    notes: bool = Field(True, description="code notes sentence by sentence (false: each text is one diagnosis "
                                          "phrase)")
    temperature: float = Field(20.0, gt=0, description="scores -> probabilities over the task's codes (softmax)")


def build_icd_coder(task: Any, seed: int, **params: Any) -> Any:
    from medflow.nlp.icd import default_coder

    return default_coder(params["neighbours"])


class ICDCoderEstimator(Estimator):
    """ICD-10-CM coding as a multiclass model: the label column holds codes (with the dot, e.g. I50.9); every
    code of the official table is scored (`nlp.icd.ICDCoder`), the task's codes are kept and turned into
    probabilities. `rank` gives the top codes over the whole table. Saved as the training texts and codes."""

    def _coder(self) -> Any:
        return self.spec.build(task=self.task, seed=0, **self.params.model_dump())

    def fit(self, x_train, y_train, x_valid, y_valid, train: TrainConfig, seed: int, workdir: Path | None = None):
        texts = list(self.inputs(x_train).texts)
        self.in_dim = 1
        codes = [str(self.task.classes[int(i)]) for i in np.asarray(y_train)]
        self.train_texts, self.train_codes = texts, codes
        self.model = self._coder().fit(texts, codes) if self.params.neighbours else self._coder()
        return self

    def _scores(self, x: Any) -> np.ndarray:
        cols = []
        for c in self.task.classes:
            if str(c) not in self.model.index:
                from medflow.errors import DataError

                raise DataError(f"label value {c!r} is not an ICD-10-CM billable code (e.g. I50.9).")
            cols.append(self.model.index[str(c)])
        texts = list(self.inputs(x).texts)
        if not texts:
            return np.zeros((0, len(cols)))
        rows = np.asarray(cols)
        if self.params.notes:
            return self.model.notes_scores(texts, rows).astype(float)
        return np.stack([self.model.scores(t)[rows] for t in texts])

    def predict(self, x: Any) -> np.ndarray:
        z = self._scores(x) * self.params.temperature
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def rank(self, x: Any, k: int = 5) -> list[list[dict[str, Any]]]:
        return self.model.rank(list(self.inputs(x).texts), k, notes=self.params.notes)

    def _save_weights(self, directory: Path) -> None:
        write_json(directory / "icd_coder.json", {"texts": self.train_texts, "codes": self.train_codes})

    def _load_weights(self, directory: Path) -> None:
        d = read_json(directory / "icd_coder.json")
        self.train_texts, self.train_codes = d["texts"], d["codes"]
        coder = self._coder()
        self.model = coder.fit(self.train_texts, self.train_codes) if self.params.neighbours else coder


class SpanTaggerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    C: float = Field(1.0, gt=0, description="inverse L2 strength of the token and assertion classifiers")
    assertion: Literal["learned", "rules"] = Field("learned", description="learned from the gold spans' "
                                                   "attributes.assertion (ConText's rules where there are none), "
                                                   "or ConText's rules")
    lexicon: list[str] = Field(["chembl", "brands", "abbreviations"], description="drug lexicons (chembl, brands, "
                               "abbreviations, a CSV / TSV / Parquet list with a 'name' column, an RxNorm RRF "
                               "folder): token features, each DRUG span's normalized id, and dose / route / "
                               "frequency / duration linked to it; [] for none")


def build_span_tagger(task: Any, seed: int, **params: Any) -> Any:
    from medflow.nlp.tagger import SpanTagger

    return SpanTagger(list(task.labels), tuple(task.assert_labels), params["C"], params["assertion"],
                      params["lexicon"])


class SpanTaggerEstimator(Estimator):
    """Span extraction as a model (`nlp.tagger.SpanTagger`: BIO tags by logistic regression over token features,
    Viterbi decoding under the BIO constraint, ConText assertion on `task.assert_labels`). Targets: each note's
    gold spans; predictions: each note's spans (an object array of span lists). Saved as `span_tagger.json`
    (settings, feature names) and `span_tagger.npz` (weights)."""

    def fit(self, x_train, y_train, x_valid, y_valid, train: TrainConfig, seed: int, workdir: Path | None = None):
        from medflow.errors import DataError

        texts = list(self.inputs(x_train).texts)
        gold = [list(s) for s in y_train]
        seen = {s["label"] for sp in gold for s in sp}
        missing = [lab for lab in self.task.labels if lab not in seen]
        if missing:
            raise DataError(f"task.labels {missing} have no gold span in the training notes (labels there: "
                            f"{sorted(seen)}); fix task.labels.")
        self.in_dim = 1
        self.model = self.spec.build(task=self.task, seed=seed, **self.params.model_dump()).fit(texts, gold)
        return self

    def predict(self, x: Any) -> np.ndarray:
        spans = self.model.extract(list(self.inputs(x).texts))
        out = np.empty(len(spans), dtype=object)
        out[:] = spans
        return out

    def _save_weights(self, directory: Path) -> None:
        import io

        from medflow.artifacts import atomic_write_bytes

        meta, arrays = self.model.state()
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(directory / "span_tagger.npz", buf.getvalue())
        write_json(directory / "span_tagger.json", meta)

    def _load_weights(self, directory: Path) -> None:
        from medflow.nlp.tagger import SpanTagger

        with np.load(directory / "span_tagger.npz") as z:
            self.model = SpanTagger.from_state(read_json(directory / "span_tagger.json"), dict(z))
