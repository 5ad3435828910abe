"""The multimodal simulator's patients written as files, the way a hospital extract holds them (SYNTHETIC): a MEDS
folder of events with a MEDS label file, notes in Parquet, chest-image phantoms as PNG with a CSV of their patients
and times, a lab CSV, a gene-panel CSV, and the study YAML that joins them (`medflow simulate multimodal`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from medflow.artifacts import atomic_write_bytes
from medflow.errors import DataError

__all__ = ["write_multimodal", "study_yaml"]


def _png(a: np.ndarray) -> bytes:
    import io

    from PIL import Image

    img = np.clip((a[0] + 1.0) / 3.5 * 255, 0, 255).astype(np.uint8)  # a fixed window, as a scanner export has
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def study_yaml(out: Path, models: list[Any] | None = None) -> dict[str, Any]:
    """The study that joins the written files (paths relative to the folder the YAML is in)."""
    return {"name": "multimodal_sim_files", "intended_use": "SYNTHETIC demonstration of multimodal fusion",
            "data": {"meds": "meds", "labels": "labels.parquet", "synthetic": True,
                     "text": {"path": "notes.parquet", "patient_column": "subject_id", "id_column": "note_id",
                              "time_column": "charttime"},
                     "images": {"path": "images", "labels": "images.csv", "patient_id": "subject_id",
                                "time_column": "study_time"},
                     "tables": [{"path": "labs.csv", "name": "labs", "patient_id": "subject_id",
                                 "time_column": "charttime"},
                                {"path": "omics.csv", "name": "omics", "patient_id": "subject_id", "static": True}]},
            "task": {"kind": "binary", "label": "label"},
            "models": models or ["fusion_masked", "gradient_boosting"], "output_dir": "runs"}


def write_multimodal(out: str | Path, patients: int = 600, seed: int = 0, overwrite: bool = False) -> Path:
    """Write the simulator's patients under `out` (see the module docstring); returns `out`."""
    from medflow.data.simulate.multimodal import simulate_multimodal

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise DataError(f"{out}: exists and is not empty; choose a new folder or pass --overwrite.")
        shutil.rmtree(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "meds" / "data").mkdir(parents=True)
    (tmp / "meds" / "metadata").mkdir()
    (tmp / "images").mkdir()
    sim = simulate_multimodal(patients, seed)
    sim["events"].write_parquet(tmp / "meds" / "data" / "0.parquet")
    info = {"dataset_name": "medflow multimodal simulator", "dataset_version": "1", "etl_name": "medflow",
            "medflow": {"synthetic": True, "seed": seed, "patients": patients, "oracle_auroc": sim["oracle"]}}
    (tmp / "meds" / "metadata" / "dataset.json").write_text(json.dumps(info, indent=1))
    pl.from_pandas(sim["samples"]).select(
        "subject_id", pl.col("prediction_time").cast(pl.Datetime("us")),
        pl.col("outcome").cast(pl.Boolean).alias("boolean_value")).write_parquet(tmp / "labels.parquet")
    sim["notes"].to_parquet(tmp / "notes.parquet", index=False)
    table = sim["image_table"].assign(image=lambda f: f["image"] + ".png")
    for key, arr in sim["images"].items():
        atomic_write_bytes(tmp / "images" / f"{key}.png", _png(arr))
    table.to_csv(tmp / "images.csv", index=False)
    sim["labs"].to_csv(tmp / "labs.csv", index=False)
    sim["omics"].to_csv(tmp / "omics.csv", index=False)
    (tmp / "study.yaml").write_text(yaml.safe_dump(study_yaml(out), sort_keys=False))
    (tmp / "SYNTHETIC.txt").write_text("Simulated patients (medflow's multimodal simulator); not real data.\n"
                                       f"Oracle AUROCs: {json.dumps(sim['oracle'])}\n")
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return out
