"""CSV and Parquet readers that turn bad files into DataErrors naming the file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medflow.data.dataset import ROW_ID, Dataset, FeatureType, check_finite, coerce_types, infer_feature_types
from medflow.errors import DataError

__all__ = ["read_table", "read_frame"]

CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
PARQUET_SUFFIXES = {".parquet", ".pq"}


def _encoding_error(p: Path) -> DataError:
    """Where the first byte that is not UTF-8 sits, and how to name the file's encoding."""
    raw = p.read_bytes()
    try:
        raw.decode("utf-8")
        where, byte = "", "?"
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        where = f" at line {line} (record {line - 1})" if line > 1 else " in the header"
        byte = raw[exc.start:exc.start + 1].hex()
    return DataError(f"{p}: not UTF-8 text: byte 0x{byte}{where} cannot be decoded. The file is probably "
                     "Latin-1 / Windows-1252 (common in exports from Excel and older hospital systems): set "
                     "data.encoding: latin-1 (or cp1252) in the study (--encoding latin-1 with medflow evaluate "
                     "--data), or save the file as UTF-8.")


def read_frame(path: str | Path, encoding: str | None = None) -> pd.DataFrame:
    """Read a CSV/TSV or Parquet file into a DataFrame, or raise a DataError that names it.

    CSV text is UTF-8 (a byte-order mark is allowed) unless `encoding` names another one.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found. Check data.path (relative paths start at the YAML's folder).")
    suffix = p.suffix.lower()
    try:
        if suffix in CSV_SUFFIXES:
            frame = pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",", low_memory=False,
                                encoding=encoding or "utf-8-sig")
        elif suffix in PARQUET_SUFFIXES:
            try:
                frame = pd.read_parquet(p)
            except (ValueError, OSError):
                raise
            except Exception as exc:  # noqa: BLE001 - pyarrow's own errors and pandas' metadata on a damaged file
                raise DataError(f"{p}: not a readable Parquet file ({type(exc).__name__}: {exc}).") from exc
        else:
            raise DataError(
                f"{p}: unsupported file type '{suffix or '(none)'}'; medflow reads CSV (.csv, .tsv) "
                "and Parquet (.parquet, .pq). Convert the file or rename it with the right suffix."
            )
    except DataError:
        raise
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{p}: the file is empty; it needs a header row and at least one record.") from exc
    except UnicodeDecodeError as exc:
        if encoding:
            raise DataError(f"{p}: cannot be decoded as {encoding} ({exc.reason}); check data.encoding.") from exc
        raise _encoding_error(p) from exc
    except LookupError as exc:
        raise DataError(f"{p}: unknown encoding {encoding!r} (data.encoding); use e.g. utf-8, latin-1 or "
                        "cp1252.") from exc
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        kind = "Parquet" if suffix in PARQUET_SUFFIXES else "CSV"
        raise DataError(f"{p}: not a readable {kind} file ({type(exc).__name__}: {exc}).") from exc
    if len(frame) == 0:
        raise DataError(f"{p}: the file has a header but no records.")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def read_table(
    path: str | Path,
    patient_id: str | None = None,
    types: dict[str, str | FeatureType] | None = None,
    name: str | None = None,
    synthetic: bool = False,
    encoding: str | None = None,
) -> Dataset:
    """Read a CSV or Parquet file as a Dataset.

    Args:
        path: the file.
        patient_id: the column that identifies patients; when None, each row is its own patient
            (a column ``__row__`` is added) and the report says so.
        types: overrides for inferred feature types, e.g. ``{"sex": "categorical"}``.
        name: the dataset's name (default: the file's stem).
        synthetic: mark the data as simulated.
        encoding: the CSV's text encoding (default UTF-8), e.g. ``"latin-1"``.
    """
    p = Path(path)
    frame = read_frame(p, encoding)
    if _marked_synthetic(p, frame):  # written by `medflow synthesize`: stays SYNTHETIC in every output
        synthetic = True
        frame = frame.drop(columns=["synthetic"], errors="ignore")
    return dataset_from_frame(frame, source=str(p), name=name or p.stem, patient_id=patient_id,
                              types=types, synthetic=synthetic)


def _marked_synthetic(p: Path, frame: pd.DataFrame) -> bool:
    """Parquet with `medflow.synthetic` in its metadata, or a table whose `synthetic` column says SYNTHETIC in
    every row (how `medflow synthesize` marks CSV)."""
    if "synthetic" in frame.columns and (frame["synthetic"].astype(str) == "SYNTHETIC").all():
        return True
    if p.suffix.lower() in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        meta = pq.read_schema(p).metadata or {}
        return meta.get(b"medflow.synthetic") == b"true"
    return False


def dataset_from_frame(
    frame: pd.DataFrame,
    source: str,
    name: str,
    patient_id: str | None = None,
    types: dict[str, str | FeatureType] | None = None,
    synthetic: bool = False,
    description: str = "",
    label_hint: str | None = None,
) -> Dataset:
    """Build a Dataset from a DataFrame: infer types, apply overrides, coerce dtypes."""
    frame = frame.reset_index(drop=True)
    meta = {}
    if patient_id is None:
        frame.insert(0, ROW_ID, range(len(frame)))
        patient_id = ROW_ID
        meta["patient_id_note"] = "no patient id given: each row is treated as its own patient"
    elif patient_id not in frame.columns:
        raise DataError(
            f"{source}: patient id column '{patient_id}' is missing; columns are {list(frame.columns)}. "
            "Set data.patient_id to one of them."
        )
    overrides = {}
    for col, kind in (types or {}).items():
        try:
            overrides[col] = FeatureType(kind)
        except ValueError as exc:
            raise DataError(
                f"{source}: data.types['{col}'] is '{kind}'; expected one of "
                f"{[t.value for t in FeatureType]}."
            ) from exc
    frame = coerce_types(frame, overrides, source)
    rest = frame.drop(columns=[patient_id, *overrides])
    inferred = infer_feature_types(rest, source)
    feature_types = {c: overrides.get(c) or inferred[c] for c in frame.columns if c != patient_id}
    check_finite(frame, [c for c, k in feature_types.items() if k == FeatureType.NUMERIC], source)
    return Dataset(frame=frame, name=name, patient_id=patient_id, feature_types=feature_types,
                   source=source, synthetic=synthetic, description=description, label_hint=label_hint,
                   meta=meta)
