"""The built-in multimodal dataset: SYNTHETIC patients whose events, notes, chest-image phantoms, lab panels and gene
panels each carry part of the outcome's signal (`data.simulate.multimodal`), joined per prediction sample."""

from __future__ import annotations

from typing import Any

import pandas as pd
import polars as pl

from medflow.data.dataset import Dataset, FeatureType
from medflow.data.multimodal import join_modalities
from medflow.registry import dataset_info, register_dataset

__all__ = ["multimodal_sim", "simulated_multimodal"]

_DESC = ("SYNTHETIC patients from medflow's multimodal simulator: one latent factor per modality (events, notes, "
         "image, labs, omics) drives a binary outcome, so each modality carries signal the others lack; notes, "
         "images and labs dated after the prediction time reveal the outcome and must never be read.")


def simulated_multimodal(patients: int = 600, seed: int = 0, image_size: int = 32, future: bool = True,
                         coverage: dict[str, float] | None = None) -> Dataset:
    """The simulator's patients as a multimodal Dataset (label `outcome`); the oracle's AUROCs in `meta["oracle"]`."""
    from medflow.data.simulate.multimodal import simulate_multimodal

    sim = simulate_multimodal(patients, seed, image_size, coverage, future)
    source = f"builtin:multimodal_sim (simulated, {patients} patients, seed {seed})"
    ds = multimodal_from_simulation(sim, source)
    ds.source = "builtin:multimodal_sim"
    return ds


def multimodal_from_simulation(sim: dict[str, Any], source: str) -> Dataset:
    """A multimodal Dataset from `simulate_multimodal`'s output (what the YAML's files give, in memory)."""
    from medflow.data.ehr import event_dataset
    from medflow.data.images import ImageData, image_dataset
    from medflow.data.sources.meds import EventData
    from medflow.data.text import TextSource, notes_dataset

    events = EventData(sim["events"], metadata={"medflow": {"simulator": "multimodal"}}, source=source,
                       synthetic=True)
    labels = pl.from_pandas(sim["samples"]).select(
        "subject_id", pl.col("prediction_time").cast(pl.Datetime("us")), pl.col("outcome").cast(pl.Boolean)
        .alias("boolean_value"))
    anchor = event_dataset(events, labels=labels, label_name="outcome", name="multimodal_sim")
    anchor.description = _DESC
    notes = notes_dataset(sim["notes"], "text", source + " notes",
                          TextSource(path=source, id_column="note_id", patient_column="subject_id"), "notes",
                          synthetic=True)
    images = image_dataset(ImageData(sim["images"], source + " images", synthetic=True), sim["image_table"],
                           "subject_id", "images")
    labs, omics = (_table(sim[k], source + f" {k}") for k in ("labs", "omics"))
    ds = join_modalities(anchor, {"notes": (notes, "charttime", "notes"), "images": (images, "study_time", "latest"),
                                  "labs": (labs, "charttime", "latest"), "omics": (omics, None, "static")})
    ds.meta.update({"oracle": sim["oracle"], "weights": sim["weights"], "coverage_target": sim["coverage"]})
    return ds


def _table(frame: pd.DataFrame, source: str) -> Dataset:
    types = {c: FeatureType.NUMERIC for c in frame.columns if c not in ("subject_id", "charttime")}
    return Dataset(frame=frame.assign(subject_id=frame["subject_id"].astype(str)), name=source,
                   patient_id="subject_id", feature_types=types, source=source, synthetic=True)


@register_dataset("multimodal_sim")
@dataset_info(task="binary: outcome (every modality carries part of it)",
              size="600 patients: events, notes (85%), chest-image phantoms (60%), labs (90%), 40-gene panel (40%)",
              source="SYNTHETIC: medflow's multimodal simulator (seed 0), oracle AUROCs known; not real data")
def multimodal_sim() -> Dataset:
    return simulated_multimodal()
