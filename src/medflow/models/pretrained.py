"""Reading a pretrained run (`medflow pretrain`'s output) for the studies that start from it.

A pretrained run directory holds `pretrain.json` (what was trained, on which data, the held-out figures),
`featurizer.json` (the code vocabulary and value scales: a study that starts from the run tokenizes its events
with them), `model.safetensors` (the pretraining network: `encoder.*` and the objective's `head.*`) and
`subjects.parquet` (every patient the pretraining saw, for the leakage check). Studies never import the
pretraining code: this module is all they need.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medflow.errors import ConfigError

__all__ = ["PretrainedRun", "is_pretrained_run", "load_pretrained"]

MARKER = "pretrain.json"


def is_pretrained_run(path: str | Path) -> bool:
    return (Path(path) / MARKER).is_file()


@dataclass
class PretrainedRun:
    """A finished pretrained run: its description (`meta`) and where its parts are."""

    path: Path
    meta: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind", ""))

    @property
    def model_params(self) -> dict[str, Any]:
        """The encoder's hyper-parameters (a study's `timeline_transformer` must have the same)."""
        return dict(self.meta["model"])

    def featurizer(self) -> Any:
        from medflow.features.codes import EventFeaturizer

        return EventFeaturizer.from_dict(json.loads((self.path / "featurizer.json").read_text()))

    def encoder_state(self) -> dict[str, Any]:
        """The encoder's tensors, named as in `TimelineClassifier` (`encoder.*`); the objective's head is left."""
        from safetensors.torch import load_file

        state = load_file(self.path / "model.safetensors")
        return {k: v for k, v in state.items() if k.startswith("encoder.")}

    def subjects(self) -> Any:
        """Every subject id the pretraining read (pretraining and held-out patients), as a NumPy array."""
        import polars as pl

        return pl.read_parquet(self.path / "subjects.parquet")["subject_id"].to_numpy()


def load_pretrained(path: str | Path) -> PretrainedRun:
    """The pretrained run at `path`; a ConfigError naming what is missing otherwise."""
    p = Path(path)
    if not is_pretrained_run(p):
        raise ConfigError(f"{p}: not a pretrained run (no {MARKER}); give a folder written by `medflow pretrain`.")
    try:
        meta = json.loads((p / MARKER).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{p / MARKER}: unreadable ({exc}); pretrain again.") from exc
    for part in ("featurizer.json", "model.safetensors", "subjects.parquet"):
        if not (p / part).is_file():
            raise ConfigError(f"{p}: the pretrained run has no {part} (an interrupted or copied-in-part run); "
                              "pretrain again or copy the whole folder.")
    return PretrainedRun(p, meta)
