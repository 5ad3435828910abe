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
