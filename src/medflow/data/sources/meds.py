"""MEDS (Medical Event Data Standard) in and out, and the `EventData` every event source produces.

Reading follows MEDS as other tools write it, not only as medflow writes it: shards anywhere under
`data/` (nested or not), static events with a null `time`, any code strings, extra columns (ignored),
no `metadata/subject_splits.parquet` (then medflow splits by subject). What is checked, each with a
message naming the file: the required columns and their types, events in time order within each
subject (the MEDS contract), and one time-zone convention across shards.

Everything stays in Polars (lazy where it can) and Arrow until arrays are built: no Python loop over
subjects or events.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from medflow.errors import DataError

__all__ = ["EventData", "StreamedEvents", "read_meds", "write_meds", "read_meds_labels", "write_meds_labels",
           "EVENT_SCHEMA", "atomic_dir", "write_codes", "write_shard"]

EVENT_SCHEMA = {"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                "numeric_value": pl.Float32}
_KIND = {"subject_id": "an integer", "time": "a timestamp", "code": "a string", "numeric_value": "a number"}


@dataclass
class EventData:
    """Longitudinal events of many subjects, sorted by subject then time (static events first).

    Attributes:
        events: Polars frame with `subject_id` (Int64), `time` (Datetime[us], null for static events),
            `code` (String), `numeric_value` (Float32, null when the event has no value).
        splits: `subject_id` -> `split` (train / tuning / held_out) when the source declares one.
        metadata: the dataset's metadata (MEDS `dataset.json`, plus what medflow adds).
        source: where the events came from.
        synthetic: True when the events were simulated.
    """

    events: pl.DataFrame
    splits: pl.DataFrame | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = "memory"
    synthetic: bool = False
    codes: pl.DataFrame | None = None
    hierarchy: pl.DataFrame | None = None  # code, ancestor, levels (data.rollup); OMOP's concept_ancestor

    @property
    def n_events(self) -> int:
        return self.events.height

    @property
    def n_subjects(self) -> int:
        return self.events["subject_id"].n_unique()

    def summary(self) -> dict[str, Any]:
        return {"events": self.n_events, "subjects": self.n_subjects,
                "codes": self.events["code"].n_unique(), "source": self.source, "synthetic": self.synthetic}


def _shards(root: Path) -> list[Path]:
    data = root / "data"
    if not root.exists():
        raise DataError(f"{root}: no such MEDS folder.")
    if not data.is_dir():
        raise DataError(f"{root}: not a MEDS folder (no data/ subfolder with Parquet shards).")
    files = sorted(data.rglob("*.parquet"))
    if not files:
        raise DataError(f"{data}: no .parquet shards under data/ (searched nested folders too).")
    return files


def _check_schema(path: Path) -> tuple[str | None, bool]:
    """Required columns with castable types; returns the time zone of `time` and whether text_value exists."""
    try:
        schema = pl.read_parquet_schema(path)
    except (Exception, pl.exceptions.PanicException) as exc:  # noqa: BLE001 - any unreadable file is the user's
        raise DataError(f"{path}: not a readable Parquet file ({exc}).") from exc
    for col in EVENT_SCHEMA:
        if col not in schema:
            raise DataError(f"{path}: MEDS column '{col}' is missing (columns: {list(schema)}). MEDS data shards "
                            "need subject_id, time, code and numeric_value.")
    dtype = schema["subject_id"]
    if not dtype.is_integer():
        raise DataError(f"{path}: column 'subject_id' must be {_KIND['subject_id']}, found {dtype}.")
    dtype = schema["time"]
    if not isinstance(dtype, pl.Datetime) and dtype != pl.Date:
        raise DataError(f"{path}: column 'time' must be {_KIND['time']}, found {dtype}. Parse the times before "
                        "writing the shard (ISO strings are not MEDS).")
    if schema["code"] not in (pl.String, pl.Categorical) and not isinstance(schema["code"], pl.Categorical):
        raise DataError(f"{path}: column 'code' must be {_KIND['code']}, found {schema['code']}.")
    if not (schema["numeric_value"].is_numeric() or schema["numeric_value"] == pl.Null):
        raise DataError(f"{path}: column 'numeric_value' must be {_KIND['numeric_value']}, "
                        f"found {schema['numeric_value']}.")
    tz = dtype.time_zone if isinstance(dtype, pl.Datetime) else None
    return tz, "text_value" in schema


def _scan(path: Path, tz: str | None) -> pl.LazyFrame:
    time = pl.col("time")
    if tz is not None:
        time = time.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return pl.scan_parquet(path).select(
        pl.col("subject_id").cast(pl.Int64), time.cast(pl.Datetime("us")).alias("time"),
        pl.col("code").cast(pl.String), pl.col("numeric_value").cast(pl.Float32))


def _check_order(frame: pl.DataFrame, path: Path) -> None:
    """MEDS shards hold each subject's events in time order (static events, with a null time, first)."""
    t = frame["time"].cast(pl.Int64).fill_null(-(2**62))
    s = frame["subject_id"]
    bad = ((s == s.shift(1)) & (t < t.shift(1))).fill_null(False)
    if bad.any():
        row = int(bad.arg_true()[0])
        raise DataError(f"{path}: events out of time order at row {row + 1} (subject {s[row]}: time "
                        f"{frame['time'][row]} comes after {frame['time'][row - 1]}). MEDS shards must be sorted "
                        "by subject_id, then time; sort the shard (e.g. df.sort('subject_id', 'time')).")
    empty_code = frame["code"].is_null()
    if empty_code.any():
        row = int(empty_code.arg_true()[0])
        raise DataError(f"{path}: row {row + 1} (subject {s[row]}) has no code; every MEDS event needs one.")


def read_meds(root: str | Path, check_order: bool = True) -> EventData:
    """Read a MEDS dataset folder into EventData (see the module docstring for what is accepted)."""
    root = Path(root)
    files = _shards(root)
    zones = {}
    parts = []
    for f in files:
        tz, _ = _check_schema(f)
        zones[f] = tz
        try:
            part = _scan(f, tz).collect()
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException) as exc:  # a damaged shard, schema readable
            raise DataError(f"{f}: not a readable MEDS shard ({type(exc).__name__}: {exc}).") from exc
        if check_order:
            _check_order(part, f)
        parts.append(part)
    aware = [f for f, tz in zones.items() if tz is not None]
    naive = [f for f, tz in zones.items() if tz is None]
    if aware and naive:
        raise DataError(f"{naive[0]}: timestamps have no time zone, but {aware[0]} has '{zones[aware[0]]}'. Mixed "
                        "time-zone conventions across shards would shift events against each other; write every "
                        "shard in one convention (MEDS uses naive UTC).")
    events = pl.concat(parts, how="vertical", rechunk=True) if len(parts) > 1 else parts[0]
    if len(parts) > 1:  # a subject may span shards only in non-standard exports; keep global order
        events = events.sort(["subject_id", "time"], nulls_last=False, maintain_order=True)
    metadata, splits, codes = _read_metadata(root)
    synthetic = bool(metadata.get("medflow", {}).get("synthetic", False))
    return EventData(events=events, splits=splits, metadata=metadata, source=str(root), synthetic=synthetic,
                     codes=codes)


def _read_metadata(root: Path) -> tuple[dict[str, Any], pl.DataFrame | None, pl.DataFrame | None]:
    """A MEDS folder's dataset.json, subject splits and code table (each optional)."""
    meta_dir = root / "metadata"
    metadata: dict[str, Any] = {}
    if (meta_dir / "dataset.json").exists():
        try:
            metadata = json.loads((meta_dir / "dataset.json").read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{meta_dir / 'dataset.json'}: not valid JSON ({exc}).") from exc
    splits = None
    if (meta_dir / "subject_splits.parquet").exists():
        path = meta_dir / "subject_splits.parquet"
        splits = pl.read_parquet(path)
        for col in ("subject_id", "split"):
            if col not in splits.columns:
                raise DataError(f"{path}: column '{col}' is missing (columns: {splits.columns}).")
        splits = splits.select(pl.col("subject_id").cast(pl.Int64), pl.col("split").cast(pl.String))
    codes = pl.read_parquet(meta_dir / "codes.parquet") if (meta_dir / "codes.parquet").exists() else None
    return metadata, splits, codes


@dataclass
class StreamedEvents:
    """A MEDS folder read one shard at a time (`data: {meds: ..., stream: true}`): its events are never all
    in memory. MEDS keeps each subject's events in one shard, so cohorts, vocabularies and event windows are
    computed shard by shard; `shards()` yields each shard as EventData, checked as `read_meds` checks it."""

    root: Path
    files: list[Path]
    splits: pl.DataFrame | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    synthetic: bool = False
    codes: pl.DataFrame | None = None
    streamed = True

    @classmethod
    def open(cls, root: str | Path) -> StreamedEvents:
        root = Path(root)
        files = _shards(root)
        zones = {f: _check_schema(f)[0] for f in files}
        if len({tz is None for tz in zones.values()}) > 1:
            raise DataError(f"{root}: some shards have time zones and others do not; write every shard in one "
                            "convention (MEDS uses naive UTC).")
        metadata, splits, codes = _read_metadata(root)
        return cls(root, files, splits, metadata, str(root), bool(metadata.get("medflow", {}).get("synthetic")),
                   codes)

    def shards(self):
        """Each shard's events as EventData, one at a time."""
        for f in self.files:
            tz, _ = _check_schema(f)
            part = _scan(f, tz).collect()
            _check_order(part, f)
            yield EventData(events=part, splits=self.splits, metadata=self.metadata, source=str(f),
                            synthetic=self.synthetic)

    @property
    def n_events(self) -> int:

        return sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in self.files)

    def fingerprint(self) -> bytes:
        """A digest of the shards' bytes (read in blocks, never whole)."""
        import hashlib

        h = hashlib.sha256()
        for f in self.files:
            h.update(str(f.relative_to(self.root)).encode())
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
        return h.digest()

    def summary(self) -> dict[str, Any]:
        return {"events": self.n_events, "shards": len(self.files), "source": self.source,
                "synthetic": self.synthetic, "streamed": True}


class atomic_dir:  # noqa: N801 - used like open()
    """A folder written in a temp sibling and renamed into place when the block succeeds."""

    def __init__(self, target: str | Path, overwrite: bool = False) -> None:
        self.target = Path(target)
        self.overwrite = overwrite

    def __enter__(self) -> Path:
        if self.target.exists() and any(self.target.iterdir()) and not self.overwrite:
            raise DataError(f"{self.target}: folder exists and is not empty; choose a new folder or remove it.")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".partial"))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.target.exists():
            shutil.rmtree(self.target)
        os.replace(self.tmp, self.target)


def write_meds(data: EventData, root: str | Path, shard_size: int = 50_000, overwrite: bool = False) -> Path:
    """Write EventData as a MEDS folder (data shards by split, metadata), atomically."""
    with atomic_dir(root, overwrite) as tmp:
        events = data.events.sort(["subject_id", "time"], nulls_last=False, maintain_order=True)
        if data.splits is not None:
            events = events.join(data.splits, on="subject_id", how="left").with_columns(
                pl.col("split").fill_null("train"))
        else:
            events = events.with_columns(pl.lit("train").alias("split"))
        for (split,), part in events.partition_by("split", as_dict=True, maintain_order=True).items():
            subjects = part["subject_id"].unique(maintain_order=True)
            for i in range(0, len(subjects), shard_size):
                chunk = part.filter(pl.col("subject_id").is_in(subjects[i:i + shard_size].implode()))
                out = tmp / "data" / str(split) / f"{i // shard_size}.parquet"
                out.parent.mkdir(parents=True, exist_ok=True)
                write_shard(chunk, out)
        write_metadata(tmp, data)
    return Path(root)


def write_shard(frame: pl.DataFrame, path: Path) -> None:
    """One data shard with exactly the `meds` package's column types (string codes, not large_string)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("subject_id", pa.int64()), ("time", pa.timestamp("us")), ("code", pa.string()),
                        ("numeric_value", pa.float32())])
    table = frame.select(list(EVENT_SCHEMA)).cast(EVENT_SCHEMA).to_arrow().cast(schema)
    pq.write_table(table, path)


def write_codes(codes: pl.DataFrame, path: Path) -> None:
    """metadata/codes.parquet with the `meds` package's column types (string, not large_string)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("code", pa.string()), ("description", pa.string()), ("parent_codes", pa.list_(pa.string()))])
    frame = codes.with_columns(*[pl.lit(None, pl.String if c == "description" else pl.List(pl.String)).alias(c)
                                 for c in ("description", "parent_codes") if c not in codes.columns])
    pq.write_table(frame.select("code", "description", "parent_codes").to_arrow().cast(schema), path)


def write_metadata(root: Path, data: EventData) -> None:
    meta = root / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    info = {"dataset_name": data.metadata.get("dataset_name", "medflow"), "dataset_version": "1",
            "etl_name": "medflow", "etl_version": _version(), "meds_version": "0.4.1", **data.metadata}
    (meta / "dataset.json").write_text(json.dumps(info, indent=1, default=str))
    codes = data.codes if data.codes is not None else pl.DataFrame(
        {"code": data.events["code"].unique().sort()}).with_columns(
        pl.lit(None, pl.String).alias("description"), pl.lit(None, pl.List(pl.String)).alias("parent_codes"))
    write_codes(codes, meta / "codes.parquet")
    if data.splits is not None:
        data.splits.write_parquet(meta / "subject_splits.parquet")


def _version() -> str:
    import medflow

    return medflow.__version__


LABEL_VALUES = ("boolean_value", "integer_value", "float_value", "categorical_value")


def read_meds_labels(path: str | Path) -> pl.DataFrame:
    """A MEDS label file (or folder of them): subject_id, prediction_time and one value column."""
    path = Path(path)
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not files or not files[0].exists():
        raise DataError(f"{path}: no MEDS label file (.parquet) found.")
    frames = []
    for f in files:
        try:  # pyarrow's reader: polars' aborts the process on some damaged files (found by make fuzz)
            import pyarrow.parquet as pq

            df = pl.from_arrow(pq.read_table(f))
        except (Exception, pl.exceptions.PanicException) as exc:  # noqa: BLE001 - a damaged file
            raise DataError(f"{f}: not a readable Parquet file ({type(exc).__name__}: {exc}).") from exc
        if not isinstance(df, pl.DataFrame):
            raise DataError(f"{f}: not a table of labels.")
        for col in ("subject_id", "prediction_time"):
            if col not in df.columns:
                raise DataError(f"{f}: MEDS label column '{col}' is missing (columns: {df.columns}).")
        if not isinstance(df.schema["prediction_time"], pl.Datetime):
            raise DataError(f"{f}: column 'prediction_time' must be a timestamp, found {df.schema['prediction_time']}.")
        present = [c for c in LABEL_VALUES if c in df.columns and df[c].null_count() < df.height]
        if not present:
            raise DataError(f"{f}: no label values; MEDS labels need one of {', '.join(LABEL_VALUES)}.")
        time = pl.col("prediction_time")
        if df.schema["prediction_time"].time_zone is not None:
            time = time.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        frames.append(df.with_columns(time.cast(pl.Datetime("us")), pl.col("subject_id").cast(pl.Int64)))
    return pl.concat(frames, how="diagonal_relaxed")


def write_meds_labels(labels: pl.DataFrame, path: str | Path) -> Path:
    """Write labels in the MEDS label schema, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = ["subject_id", "prediction_time"] + [c for c in LABEL_VALUES if c in labels.columns]
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    labels.select(cols).write_parquet(tmp)
    os.replace(tmp, path)
    return path
