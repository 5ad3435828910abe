"""Studies that start from a pretrained run: `models: [{name: timeline_transformer, init_from: RUN, mode: ...}]`.

* The entry becomes a `timeline_transformer` with the pretrained encoder's shape (`transformer` is accepted as
  the name; hyper-parameters that contradict the pretrained ones are an error).
* The study's events are tokenized with the pretrained vocabulary and value scales (its featurizer replaces the
  one a study would fit): codes the pretraining never saw become <unknown>; their share is reported, and a
  vocabulary that covers under half of the study's codes is warned about.
* No test patient of the study may have been in the pretraining data unless the entry says
  `allow_pretrain_overlap: true`; the overlap is counted in every case and reported.
* `mode`: finetune (everything trains), linear_probe (the encoder is frozen, the linear head trains through
  the Trainer), frozen_features (representations computed once, an L2 logistic regression chosen by
  cross-validation on them: EHRSHOT's protocol; classification tasks).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medflow.config import ModelEntry
from medflow.errors import ConfigError
from medflow.models.pretrained import PretrainedRun, is_pretrained_run, load_pretrained
from medflow.models.transfer import Init

__all__ = ["resolve_entry", "pretrained_run", "pretrained_init", "pretrained_checks"]

_FREEZE = {"finetune": "none", "linear_probe": "backbone", "frozen_features": "features"}


def resolve_entry(e: ModelEntry, modality: str | None, task_kind: str) -> ModelEntry:
    """The entry as the study trains it: a pretrained start becomes a timeline_transformer of the run's shape."""
    if not (e.init_from and is_pretrained_run(e.init_from)):
        if e.mode is not None:
            raise ConfigError(f"models: '{e.key}' has mode: {e.mode}, which applies to a pretrained run; set "
                              "init_from to a folder written by `medflow pretrain` (or remove mode).")
        return e
    run = load_pretrained(e.init_from)
    if run.kind != "events":
        raise ConfigError(f"models: '{e.key}' init_from {e.init_from} is a pretrained {run.kind} model; a study on "
                          "event data starts from an events run.")
    if modality is not None and modality != "events":
        raise ConfigError(f"models: '{e.key}' starts from a pretrained timeline encoder ({e.init_from}), but the "
                          f"study's data are {modality}; give it event data (data.meds, data.fhir, ...).")
    if e.name not in ("timeline_transformer", "transformer"):
        raise ConfigError(f"models: '{e.key}' init_from {e.init_from} is a pretrained timeline encoder; use it "
                          "with name: timeline_transformer.")
    if e.freeze != "none":
        raise ConfigError(f"models: '{e.key}': with a pretrained run choose mode: linear_probe instead of freeze.")
    mode = e.mode or "finetune"
    if mode == "frozen_features" and task_kind not in ("binary", "multiclass"):
        raise ConfigError(f"models: '{e.key}': mode frozen_features fits a logistic regression, for binary and "
                          f"multiclass tasks; this task is {task_kind}: use linear_probe or finetune.")
    shape = run.model_params
    clash = {k: v for k, v in e.params.items() if k in shape and k != "dropout" and shape[k] != v}
    if clash:
        raise ConfigError(f"models: '{e.key}': {clash} contradicts the pretrained encoder's "
                          f"{ {k: shape[k] for k in clash} }; remove them (the pretrained shape is used).")
    params = {**shape, **{k: v for k, v in e.params.items() if k == "dropout"}}
    return e.model_copy(update={"name": "timeline_transformer", "params": params, "mode": mode, "label": e.key})


def pretrained_run(entries: list[ModelEntry]) -> PretrainedRun | None:
    """The pretrained run the study's entries start from (one at most: its vocabulary tokenizes the study)."""
    runs = sorted({e.init_from for e in entries if e.init_from and is_pretrained_run(e.init_from)})
    if len(runs) > 1:
        raise ConfigError(f"models: entries start from different pretrained runs ({', '.join(runs)}); a study "
                          "tokenizes its events with one vocabulary: use one pretrained run per study.")
    return load_pretrained(runs[0]) if runs else None


def pretrained_init(entry: ModelEntry) -> Init:
    run = load_pretrained(entry.init_from)
    return Init(str(run.path), "timeline encoder", run.encoder_state(), _FREEZE[entry.mode or "finetune"])


def pretrained_checks(run: PretrainedRun, ds: Any, test_ids: np.ndarray, x_train: Any,
                      entries: list[ModelEntry], console: Any) -> dict[str, Any]:
    """Vocabulary coverage and the pretraining / test-patient overlap (a ConfigError unless allowed)."""
    from medflow.features.codes import UNKNOWN

    seen = set(np.asarray(run.subjects()).astype(str).tolist())
    tests = {str(t) for t in test_ids}
    overlap = len(tests & seen)
    users = [e for e in entries if e.init_from and str(load_pretrained(e.init_from).path) == str(run.path)]
    if overlap and not all(e.allow_pretrain_overlap for e in users):
        raise ConfigError(f"{overlap} of the study's {len(tests)} test patients were in the pretraining data of "
                          f"{run.path} (by patient id): their test results would be optimistic. Pretrain without "
                          "them, or set allow_pretrain_overlap: true on the model to accept it (the report states "
                          "the overlap).")
    pos, valid = x_train.positions(np.arange(len(x_train)))
    window_codes = np.asarray(x_train.codes)[pos[valid]]
    out: dict[str, Any] = {"pretrained_run": str(run.path), "vocabulary": int(run.featurizer().n_codes),
                           "test_patients": len(tests), "test_patients_in_pretraining": overlap,
                           "unknown_event_share": float(np.mean(window_codes == UNKNOWN)) if len(window_codes)
                           else 0.0}
    events = getattr(getattr(ds, "events", None), "events", None)
    if events is not None and "code" in getattr(events, "columns", []):
        codes = set(events["code"].unique().to_list())
        known = set(run.featurizer().vocab)
        share = len(codes & known) / max(len(codes), 1)
        out["study_code_share"] = share
        out["study_codes"] = len(codes)
        if share < 0.5:
            console.print(f"[yellow]warning:[/yellow] the pretrained vocabulary of {run.path} knows {share:.0%} of "
                          f"the study's {len(codes)} codes; the rest are <unknown> to the encoder. Pretrain on "
                          "data coded like the study's (same vocabularies) for the representation to carry over.")
    return out
