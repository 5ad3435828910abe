"""A study's data: the Dataset its `data:` section names (tables, built-ins, event data) and the source's
own subject splits when it declares them (MEDS `subject_splits`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from medflow.config import DataConfig, StudyConfig
from medflow.data.builtin import load as load_dataset
from medflow.data.dataset import Dataset
from medflow.data.sources.tabular import read_table
from medflow.data.splits import Fold
from medflow.errors import ConfigError, DataError

__all__ = ["load_study_data", "load_event_data", "load_multimodal", "data_config", "source_folds"]


def data_config(ds: Dataset) -> dict[str, Any]:
    """The `data:` section describing an in-memory Dataset (what `Study(dataset=...)` writes to study.yaml)."""
    pid = None if ds.patient_id == "__row__" else ds.patient_id
    if ds.modalities is not None and not ds.source.startswith("builtin:"):  # joined in memory: nothing to reread
        return {"synthetic": ds.synthetic}
    if ds.images is not None and not ds.source.startswith("builtin:"):
        return {"images": ds.meta.get("images_config") or {"path": ds.source}, "synthetic": ds.synthetic}
    if ds.molecules is not None and not ds.source.startswith("builtin:"):
        return {"molecules": {"path": ds.source, "smiles_column": ds.molecules.smiles_column,
                              "on_invalid": ds.molecules.policy,
                              **({"protein_column": ds.molecules.protein_column} if ds.molecules.protein_column
                                 else {})}, "synthetic": ds.synthetic}
    if ds.text is not None and not ds.source.startswith("builtin:"):
        return {"text": ds.meta.get("text_config") or {"path": ds.source}, "synthetic": ds.synthetic}
    if ds.events is not None and not ds.source.startswith("builtin:"):
        return {"meds": ds.source if Path(ds.source).is_dir() else None, "synthetic": ds.synthetic}
    if ds.source.startswith("builtin:"):
        return {"dataset": ds.source.split(":", 1)[1], "patient_id": pid, "synthetic": ds.synthetic}
    return {"path": ds.source if Path(ds.source).exists() else None, "patient_id": pid, "synthetic": ds.synthetic,
            "types": {k: v.value for k, v in ds.feature_types.items()}}


def load_event_data(data: DataConfig) -> Dataset:
    """An event Dataset: events from MEDS, FHIR, an event table or the simulator, samples from a cohort or labels."""
    from medflow.data.ehr import event_dataset, simulated_ehr

    if data.dataset == "ehr_sim":
        if data.labels:
            raise ConfigError("data.labels: the simulated cohort computes its own labels; choose data.cohort.")
        sim = data.simulate
        return simulated_ehr(sim.patients, sim.seed, data.cohort or "readmission_30d", sim.bias_group)
    if data.meds and data.stream:
        from medflow.data.sources.meds import StreamedEvents

        events = StreamedEvents.open(data.meds)
    elif data.meds:
        from medflow.data.sources.meds import read_meds

        events = read_meds(data.meds)
    elif data.fhir:
        from medflow.data.sources.fhir import read_fhir

        events = read_fhir(data.fhir)
    elif data.omop and data.stream:
        events = _omop_streamed(data)
    elif data.omop:
        from medflow.data.sources.omop import read_omop

        o = data.omop
        events = read_omop(o.path, o.url, o.cdm_schema, o.vocab_schema, o.codes, o.chunk_persons)
    else:
        from medflow.data.sources.event_table import read_event_table

        assert data.events is not None
        e = data.events
        events = read_event_table(e.path, e.subject_id, e.time, e.code, e.value, e.code_prefix)
    events.synthetic = events.synthetic or data.synthetic
    if data.rollup:
        if data.stream:
            raise ConfigError("data.rollup rewrites codes in memory; drop data.stream, or roll the codes up when "
                              "writing the MEDS folder.")
        from medflow.data.rollup import rollup_codes

        events = rollup_codes(events, data.rollup)
    return event_dataset(events, data.cohort, data.labels, label_name="label",
                         cohort_url=data.omop.url if data.omop else None)


def _omop_streamed(data: DataConfig):
    """OMOP read a chunk of persons at a time into a MEDS copy on disk, then streamed shard by shard."""
    import atexit
    import shutil
    import tempfile

    from medflow.data.sources.meds import StreamedEvents
    from medflow.data.sources.omop_meds import omop_to_meds

    assert data.omop is not None
    tmp = Path(tempfile.mkdtemp(prefix="medflow-omop-"))
    atexit.register(shutil.rmtree, tmp, True)
    o = data.omop
    omop_to_meds(tmp / "meds", path=o.path, url=o.url, cdm_schema=o.cdm_schema, vocab_schema=o.vocab_schema,
                 codes=o.codes, chunk_persons=o.chunk_persons)
    return StreamedEvents.open(tmp / "meds")


def load_study_data(data: DataConfig) -> Dataset:
    """The Dataset a study's `data:` section names."""
    if data.is_multimodal:
        return load_multimodal(data)
    if data.dataset == "multimodal_sim" and "simulate" in data.model_fields_set:
        from medflow.data.builtin_multimodal import simulated_multimodal

        return simulated_multimodal(data.simulate.patients, data.simulate.seed)
    if data.is_events:
        ds = load_event_data(data)
        return event_counts_table(ds, data.sequence.min_count) if data.as_table else ds
    if data.images is not None:
        from medflow.data.images import read_image_dataset

        return read_image_dataset(data.images, data.synthetic)
    if data.molecules is not None:
        from medflow.data.molecules import read_molecules

        return read_molecules(data.molecules, data.synthetic)
    if data.text is not None:
        from medflow.data.text import read_notes

        return read_notes(data.text, data.synthetic)
    if data.dataset:
        ds = load_dataset(data.dataset)
        if data.types:
            raise ConfigError("data.types applies to files (data.path), not to built-in datasets.")
    elif data.path:
        ds = read_table(data.path, patient_id=data.patient_id, types=dict(data.types), synthetic=data.synthetic,
                        encoding=data.encoding)
    else:
        raise ConfigError("the study has no data: set data.dataset (a built-in name) or data.path (a file).")
    return ds


def load_multimodal(data: DataConfig) -> Dataset:
    """Samples (an event cohort, or the data.labels table) joined with notes, images and tables per patient and
    prediction time (`data.multimodal.join_modalities`)."""
    from medflow.data.dataset import FeatureType
    from medflow.data.multimodal import join_modalities

    if data.is_events:
        anchor = load_event_data(data)
    else:
        assert data.labels is not None
        anchor = read_table(data.labels, patient_id=data.patient_id, synthetic=data.synthetic, encoding=data.encoding,
                            types={"prediction_time": FeatureType.DATETIME} if _has_column(data.labels,
                                                                                         "prediction_time") else {})
    sources: dict[str, Any] = {}
    if data.text is not None:
        from medflow.data.text import read_notes

        sources["notes"] = (read_notes(data.text, data.synthetic, "notes"), data.text.time_column, "notes")
    if data.images is not None:
        from medflow.data.images import read_image_dataset

        sources["images"] = (read_image_dataset(data.images, data.synthetic), data.images.time_column, "latest")
    for t in data.tables:
        name = t.name or Path(t.path).name.split(".")[0]
        if name in sources or name == "events":
            raise ConfigError(f"data.tables: two modalities are named '{name}'; give each table a distinct name.")
        table = read_table(t.path, patient_id=t.patient_id or anchor.patient_id, types=dict(t.types), name=name,
                           synthetic=data.synthetic, encoding=data.encoding)
        for col in t.drop:
            if col not in table.frame.columns:
                raise DataError(f"{t.path}: drop names column '{col}', which is not in the table.")
        table.frame = table.frame.drop(columns=t.drop)
        table.feature_types = {c: v for c, v in table.feature_types.items() if c not in t.drop}
        sources[name] = (table, t.time_column, "static" if t.static else "latest")
    return join_modalities(anchor, sources, max_notes=data.max_notes)


def _has_column(path: str, column: str) -> bool:
    if str(path).endswith(".parquet"):
        import pyarrow.parquet as pq

        return column in pq.read_schema(path).names
    return column in pd.read_csv(path, nrows=0).columns


def source_folds(cfg: StudyConfig, ds: Dataset, console: Console) -> list[Fold] | None:
    """The source's own subject splits (MEDS subject_splits: train / tuning / held_out), when it has them."""
    from medflow.data.ehr import SPLIT_COLUMN

    if SPLIT_COLUMN not in ds.frame.columns or not cfg.data.use_source_splits:
        return None
    if cfg.split.kind != "holdout":
        console.print("[yellow]note:[/yellow] the data declare subject splits, but split.kind is "
                      f"{cfg.split.kind}; using medflow's patient folds instead.")
        return None
    split = ds.frame[SPLIT_COLUMN].fillna("train").astype(str).to_numpy()
    parts = {p: np.flatnonzero(split == p) for p in ("train", "tuning", "held_out")}
    if not len(parts["held_out"]) or not len(parts["train"]):
        console.print("[yellow]note:[/yellow] the source's subject splits have no train or held_out samples "
                      "for this task; splitting by patient instead.")
        return None
    console.print(f"using the source's subject splits: {len(parts['train'])} train, {len(parts['tuning'])} tuning "
                  f"(validation), {len(parts['held_out'])} held-out (test) samples")
    return [Fold(0, parts["train"], parts["tuning"], parts["held_out"])]


def event_counts_table(ds: Dataset, min_count: int = 1, others: list[Dataset] | None = None) -> Any:
    """An event dataset as a table (`data.as_table: true`): one row per prediction sample with the log1p count of
    each code in the sample's window, the mean of each numeric code's values, age, and the sample's own columns
    (e.g. race, sex, the label). The code vocabulary (codes seen at least `min_count` times) is read from all
    samples without their labels. Federated training and synthetic data read tables; so can any tabular model.
    With `others` (e.g. held-out and synthetic patients): a list of tables, `ds`'s first, all with `ds`'s columns.
    """
    from medflow.data.ehr import samples_frame
    from medflow.features.codes import EventFeaturizer

    feat = EventFeaturizer(min_count=min_count).fit(ds.events, samples_frame(ds.frame))
    tables = [_counts_table(d, feat) for d in [ds, *(others or [])]]
    return tables if others is not None else tables[0]


def _counts_table(ds: Dataset, feat: Any) -> Dataset:
    from medflow.data.dataset import FeatureType
    from medflow.data.ehr import samples_frame

    x = feat.transform(ds.events, samples_frame(ds.frame))
    names = x.matrix_names()
    keep = [j for j, n in enumerate(names) if n not in ds.frame.columns and not n.startswith(("count:GENDER//",
                                                                                           "count:RACE//"))]
    counts = pd.DataFrame(x.to_matrix()[:, keep], columns=[names[j] for j in keep], index=ds.frame.index)
    frame = pd.concat([ds.frame.drop(columns=["prediction_time"]), counts], axis=1)
    types = {c: t for c, t in ds.feature_types.items() if c != "prediction_time"}
    types.update(dict.fromkeys(counts.columns, FeatureType.NUMERIC))
    return Dataset(frame=frame, name=ds.name, patient_id=ds.patient_id, feature_types=types,
                   source=ds.source + " (as a table of count features)", synthetic=ds.synthetic,
                   description=ds.description + f" As a table: {len(counts.columns)} count and mean-value features.",
                   label_hint=ds.label_hint, meta={**ds.meta, "kind": "table"})
