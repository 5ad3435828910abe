"""Event datasets: events (MEDS, FHIR, an event table, or the simulator) + a cohort or label file -> Dataset.

The Dataset's frame holds one row per prediction sample (`subject_id`, `prediction_time`, the label,
demographics for subgroups, and the source's split when it declares one); `Dataset.events` holds the
events. Patient splits, tasks, the evaluator and the report then work on the frame as for any other
modality, and the event featurizer reads `Dataset.events` up to each sample's prediction time.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl

from medflow.data.cohort import Cohort, extract_samples, get_cohort, labels_from_meds, with_demographics
from medflow.data.dataset import Dataset, FeatureType
from medflow.data.omop_cohort import CohortTable, read_cohort_table, samples_from_cohort_table
from medflow.data.sources.meds import EventData, read_meds, read_meds_labels

__all__ = ["event_dataset", "simulated_ehr", "SPLIT_COLUMN"]

SPLIT_COLUMN = "source_split"


def event_dataset(data: EventData, cohort: str | Cohort | CohortTable | dict | None = None,
                  labels: str | Path | pl.DataFrame | None = None, label_name: str = "label", name: str | None = None,
                  cohort_url: str | None = None) -> Dataset:
    """A Dataset of prediction samples over `data`: from a cohort definition, an OHDSI cohort table (read from
    a file or from the database at `cohort_url`) or a MEDS label file (or its rows as a polars frame)."""
    if isinstance(cohort, CohortTable):
        label = cohort.name
    else:
        label = label_name if labels is not None else get_cohort(cohort or "readmission_30d").name
    if isinstance(cohort, CohortTable):
        if getattr(data, "streamed", False):
            from medflow.errors import ConfigError

            raise ConfigError("data.cohort: an OHDSI cohort table needs the events in memory; drop data.stream.")
        rows = read_cohort_table(cohort, cohort_url)
        samples = with_demographics(samples_from_cohort_table(data, cohort, rows), data.events)
    elif getattr(data, "streamed", False):
        samples = _streamed_samples(data, cohort, labels, label_name)
    elif labels is not None:
        table = labels if isinstance(labels, pl.DataFrame) else read_meds_labels(labels)
        samples = labels_from_meds(data, table, label_name, "labels" if isinstance(labels, pl.DataFrame) else
                                   str(labels))
    else:
        samples = extract_samples(data, get_cohort(cohort or "readmission_30d"))
    if data.splits is not None:
        samples = samples.join(data.splits.rename({"split": SPLIT_COLUMN}), on="subject_id", how="left",
                               maintain_order="left")
    frame = samples.to_pandas()
    frame["subject_id"] = frame["subject_id"].astype(str)
    types = {c: (FeatureType.NUMERIC if c in ("age", label) and frame[c].dtype.kind in "if" else
                 FeatureType.DATETIME if c == "prediction_time" else FeatureType.CATEGORICAL)
             for c in frame.columns if c != "subject_id"}
    oracle = data.metadata.get("medflow", {}).get("oracle_auroc", {})
    desc = (f"{samples.height} prediction samples of {samples['subject_id'].n_unique()} subjects, task '{label}', "
            f"over {data.n_events:,} events from {data.source}"
            + (", read one shard at a time." if getattr(data, "streamed", False) else "."))
    if data.synthetic:
        desc = "SYNTHETIC (simulated) patients. " + desc
        if label in oracle:
            desc += f" Oracle AUROC of the simulator's risk model on all samples: {oracle[label]:.3f}."
    return Dataset(frame=frame, name=name or label, patient_id="subject_id", feature_types=types,
                   source=data.source, synthetic=data.synthetic, description=desc, label_hint=label,
                   meta={"kind": "events", "oracle_auroc": oracle}, events=data)


def _streamed_samples(data, cohort, labels, label_name: str) -> pl.DataFrame:
    """Samples computed shard by shard (each subject's events live in one MEDS shard)."""
    from medflow.errors import DataError

    table = read_meds_labels(labels) if labels is not None else None
    parts, seen = [], []
    for shard in data.shards():
        subjects = shard.events.select("subject_id").unique()
        seen.append(subjects)
        if table is not None:
            mine = table.join(subjects, on="subject_id", how="semi")
            if mine.height:
                parts.append(labels_from_meds(shard, mine, label_name, str(labels)))
        else:
            try:
                parts.append(extract_samples(shard, get_cohort(cohort or "readmission_30d")))
            except DataError:  # a shard with no eligible encounter contributes no sample
                continue
    if table is not None:
        unknown = table.join(pl.concat(seen), on="subject_id", how="anti")
        if unknown.height:
            raise DataError(f"{labels}: {unknown.height} label row(s) name subjects with no events in "
                            f"{data.source}, e.g. subject {unknown['subject_id'][0]}.")
    if not parts:
        raise DataError(f"{data.source}: no prediction samples in any shard for this cohort.")
    return pl.concat(parts, how="diagonal_relaxed").sort(["subject_id", "prediction_time"], maintain_order=True)


def simulated_ehr(patients: int = 2000, seed: int = 0, cohort: str | Cohort | dict = "readmission_30d",
                  bias_group: str | None = None) -> Dataset:
    """A simulated EHR cohort (SYNTHETIC) as an event Dataset, generated in a temporary folder."""
    from medflow.data.simulate.ehr import simulate_ehr

    with tempfile.TemporaryDirectory() as tmp:
        path = simulate_ehr(Path(tmp) / "cohort", patients=patients, seed=seed, bias_group=bias_group)
        data = read_meds(path)
    data.source = f"builtin:ehr_sim (simulated, {patients} patients, seed {seed})"
    data.events = data.events.rechunk()
    ds = event_dataset(data, cohort)
    ds.source = "builtin:ehr_sim"
    return ds


def samples_frame(frame) -> pl.DataFrame:
    """The polars samples (subject_id as Int64, prediction_time, age) from a Dataset frame slice."""
    cols = ["subject_id", "prediction_time"] + (["age"] if "age" in frame.columns else [])
    out = pl.from_pandas(frame[cols].reset_index(drop=True))
    return out.with_columns(pl.col("subject_id").cast(pl.Int64), pl.col("prediction_time").cast(pl.Datetime("us")))
