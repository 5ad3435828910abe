"""`medflow predict`'s inputs and outputs beyond a table: event data (MEDS, FHIR), images (a folder, a .npz, or
the files a CSV lists), segmentation masks written as NIfTI, and Grad-CAM overlays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medflow.errors import ConfigError

__all__ = ["is_event_input", "event_input", "image_input", "molecule_input", "text_input", "write_masks",
           "write_overlays"]


def _source(path: Path) -> str | Path:
    """A database URL given where a path is expected (Path folds `://` to `:/`) back as the URL."""
    import re

    text = str(path)
    m = re.match(r"^([A-Za-z][A-Za-z0-9+]*):/(?!/)", text)
    return text.replace(":/", "://", 1) if m and not path.exists() else path


def is_event_input(path: Path) -> bool:
    return (path.is_dir() or path.suffix.lower() in (".json", ".ndjson", ".db", ".duckdb", ".sqlite")
            or isinstance(_source(path), str))


def event_input(run, path: Path, labels: Path | None):
    """New patients' events for a run on event data: MEDS, FHIR, or OMOP (files or a database URL), read with
    the run's own options (OMOP codes and schemas, code roll-ups) and sampled with its cohort."""
    from medflow.data.convert import read_source
    from medflow.data.ehr import event_dataset
    from medflow.data.omop_cohort import CohortTable

    data = run.config["data"]
    omop = data.get("omop") or {}
    source = _source(path)
    table = {k: v for k, v in (data.get("events") or {}).items() if k != "path"}
    events = read_source(source, cdm_schema=omop.get("cdm_schema"), vocab_schema=omop.get("vocab_schema"),
                         codes=omop.get("codes"), **table)
    if data.get("rollup"):
        from medflow.data.rollup import Rollup, rollup_codes

        events = rollup_codes(events, [Rollup(**r) for r in data["rollup"]])
    cohort = data.get("cohort")
    if isinstance(cohort, dict) and "table" in cohort:
        cohort = CohortTable(**cohort)
        if isinstance(source, Path) and (source / Path(cohort.table).name).exists():  # the new site's own table
            cohort.table = str(source / Path(cohort.table).name)
    return event_dataset(events, None if labels else cohort, labels, label_name=run.task.label_columns[0],
                         cohort_url=source if isinstance(source, str) else None)


def molecule_input(run, path: Path):
    """Molecules to predict for a molecule run: an SDF or .smi file (read as training data were, an invalid
    structure an error naming its record), else a table whose SMILES column is the run's."""
    from medflow.data.molecules import MOL_ID, MoleculeSource, read_molecules
    from medflow.data.sources.tabular import read_frame

    feat = run.featurizer()
    if path.suffix.lower() not in (".sdf", ".sd", ".smi"):
        return read_frame(path)
    ds = read_molecules(MoleculeSource(path=str(path)))
    frame = ds.frame.rename(columns={ds.molecules.smiles_column: feat.smiles_column})
    return frame[[MOL_ID, feat.smiles_column]]


def text_input(run, path: Path):
    """Notes for a text run, read as its training notes were (the run's `data.text` settings): a CSV / Parquet,
    a JSONL file or a BRAT folder, gold spans included. A run on a built-in takes the notes' `patient_id` column
    as their patients when there is one."""
    from medflow.data.text import TextSource, read_notes

    opts = {k: v for k, v in (run.config["data"].get("text") or {}).items() if k != "path"}
    opts.setdefault("text_column", run.featurizer().text_column)
    ds = read_notes(TextSource(path=str(path), **opts))
    if not opts.get("patient_column") and "patient_id" in ds.frame.columns:
        ds.patient_id = "patient_id"
    return ds


def multimodal_input(run, path: Path):
    """A multimodal run's patients to predict: a YAML file whose `data:` section names the sources as the study's
    did (event data with a cohort or label file, notes, images, tables; paths relative to the file), joined by the
    study's own code."""
    import yaml

    from medflow.config import parse_config, resolve_paths
    from medflow.errors import ConfigError
    from medflow.study.data import load_multimodal

    if path.suffix.lower() not in (".yaml", ".yml"):
        raise ConfigError(f"{path}: a multimodal run predicts from a YAML file with a data: section naming its sources "
                          "(events, notes, images, tables), as in the study; e.g. medflow simulate multimodal writes "
                          "one (study.yaml).")
    raw = yaml.safe_load(path.read_text()) or {}
    data = raw.get("data", raw) if isinstance(raw, dict) else None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: no data: section.")
    cfg = resolve_paths(parse_config({"data": data, "task": run.config["task"]}, str(path)), path.parent)
    if not cfg.data.is_multimodal:
        names = ", ".join(run.featurizer().kinds)
        raise ConfigError(f"{path}: data: names one modality; this run reads several ({names}).")
    return load_multimodal(cfg.data)


def image_input(run, path: Path, labels: Path | None):
    """Images to predict: a folder, a .npz, or (with --labels) the files a CSV lists; read as the run's data were."""
    from medflow.data.images import ImageSource, read_image_dataset

    opts = run.config["data"].get("images") or {}
    src = ImageSource(path=str(path), labels=str(labels) if labels else None,
                      image_column=opts.get("image_column", "image"),
                      patient_id=opts.get("patient_id") if labels else None)
    return read_image_dataset(src)


def write_masks(ds, preds, folder: Path, labels: list[str] | None = None):
    """`-o masks/`: one `<image>.nii.gz` per image (its size and the scan's affine), a DICOM SEG
    `<image>.seg.dcm` referencing the source series for DICOM series inputs, and `predictions.csv` listing them."""
    from medflow.artifacts import atomic_write_bytes
    from medflow.tasks.segmentation import mask_file_name, nifti_bytes

    if folder.suffix.lower() in (".csv", ".parquet", ".pq"):
        raise ConfigError(f"-o {folder}: a segmentation run writes masks; give a folder, e.g. -o masks/.")
    names, segs = [], []
    root = Path(ds.source)
    for image, mask in zip(ds.frame["image"].astype(str), preds["mask"], strict=True):
        name = mask_file_name(image)
        atomic_write_bytes(folder / name, nifti_bytes(mask, ds.images.affines.get(image)))
        names.append(name)
        source = root / image
        if source.is_dir() and np.asarray(mask).ndim == 3:  # a DICOM series: a SEG that opens over it
            from medflow.data.dicom_seg import seg_bytes

            seg = name[: -len(".nii.gz")] + ".seg.dcm"
            k = int(np.asarray(mask).max())
            atomic_write_bytes(folder / seg, seg_bytes(mask, source, labels or [f"label {i}" for i in range(1, k + 1)]))
            segs.append(seg)
        else:
            segs.append(None)
    out = preds.drop(columns=["mask"]).assign(mask_file=names)
    if any(segs):
        out = out.assign(dicom_seg_file=segs)
    return out, folder / "predictions.csv"


def write_overlays(ds, run, preds, output: Path) -> Path:
    """`--explain` on images: one Grad-CAM overlay PNG per image beside the output; the file keeps the peak."""
    import base64

    from medflow.artifacts import atomic_write_bytes
    from medflow.explain.image import cam_figure

    folder = output.with_name(output.stem + "_gradcam")
    x = run.inputs(ds)
    for i, (image, e) in enumerate(zip(ds.frame["image"], preds["explanation"], strict=True)):
        png = cam_figure([x[i, 0]], [e["map"]], [f"{image}: {preds['prediction'].iloc[i]}"], cols=1)
        atomic_write_bytes(folder / (Path(image).name.replace(".", "_") + ".png"), base64.b64decode(png))
    preds["explanation"] = [{"method": e["method"], "peak": e["peak"],
                             "overlay": str(folder / (Path(im).name.replace(".", "_") + ".png"))}
                            for im, e in zip(ds.frame["image"], preds["explanation"], strict=True)]
    return folder
