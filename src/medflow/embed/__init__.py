"""`medflow embed RUN_DIR`: patient embeddings and anomaly scores for an event-data run.

Re-reads the run's event data, reuses its fitted featurizer (so the vocabulary is the training
patients'), trains `models.autoencoder.PatientAutoencoder` on the run's training samples only, and
writes `RUN_DIR/embedding/` atomically: `embeddings.parquet` (subject, prediction time, split,
anomaly score, z_0..z_k), `autoencoder.safetensors`, `summary.json` and `anomalies.html` listing the most
anomalous samples with the codes in their windows.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from medflow.config import parse_config
from medflow.errors import ConfigError
from medflow.models.autoencoder import AutoencoderConfig, embed_and_score, fit_autoencoder

__all__ = ["embed_run"]


def embed_run(run_dir: str | Path, cfg: AutoencoderConfig | None = None, top: int = 20,
              console: Console | None = None, progress: bool = True) -> Path:
    from safetensors.torch import save_file

    from medflow.data.ehr import samples_frame
    from medflow.data.sources.meds import atomic_dir
    from medflow.runs import load_run
    from medflow.study.data import load_study_data

    console = console or Console(stderr=True)
    cfg = cfg or AutoencoderConfig()
    run = load_run(run_dir)
    feat = run.featurizer(0)
    if getattr(feat, "name", "") != "codes-v1":
        raise ConfigError(f"{run_dir}: `medflow embed` needs a run on event data (MEDS, FHIR, an event table or "
                          "ehr_sim); this run is tabular.")
    study = parse_config(run.config, f"{run_dir}/study.yaml")
    ds = load_study_data(study.data)
    preds = run.predictions()
    first = preds[preds["fold"] == 0].drop_duplicates("row")
    split = np.full(len(ds.frame), "train", dtype=object)
    split[first["row"].to_numpy()] = first["split"].to_numpy()
    samples = samples_frame(ds.frame)
    x = feat.transform(ds.events, samples)
    train, valid = np.flatnonzero(split == "train"), np.flatnonzero(split == "valid")
    console.print(f"training the patient autoencoder on {len(train)} training samples "
                  f"(vocabulary {feat.n_codes} codes) ...")
    model = fit_autoencoder(x.subset(train), x.subset(valid if len(valid) else train[:1]), cfg, study.seed,
                            progress=progress)
    z, score = embed_and_score(model, x)
    out = pd.DataFrame({"subject_id": ds.frame["subject_id"].to_numpy(),
                        "prediction_time": ds.frame["prediction_time"].to_numpy(), "split": split,
                        "anomaly_score": score})
    for j in range(z.shape[1]):
        out[f"z_{j}"] = z[:, j]
    ranked = out.sort_values("anomaly_score", ascending=False).head(top)
    names = x.code_names
    rows = []
    for i in ranked.index:
        codes = [names[c] for c in np.unique(x.window(int(i))["codes"]) if c > 1]
        rows.append({"subject_id": out.at[i, "subject_id"], "prediction_time": str(out.at[i, "prediction_time"]),
                     "split": out.at[i, "split"], "anomaly_score": float(out.at[i, "anomaly_score"]),
                     "codes": codes})
    summary = {"samples": len(out), "train_samples": int(len(train)), "dim": cfg.dim,
               "score_quantiles": {str(q): float(np.quantile(score, q)) for q in (0.5, 0.9, 0.99)},
               "synthetic": run.synthetic, "most_anomalous": rows}
    target = Path(run_dir) / "embedding"
    with atomic_dir(target, overwrite=True) as tmp:
        out.to_parquet(tmp / "embeddings.parquet", index=False)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "autoencoder.safetensors"))
        (tmp / "summary.json").write_text(json.dumps({**summary, "config": cfg.model_dump()}, indent=1,
                                                     default=str))
        (tmp / "anomalies.html").write_text(_html(run.config.get("name", "run"), summary))
    return target


def _html(name: str, s: dict) -> str:
    e = html.escape
    synth = ("<p style='color:#b00;font-weight:bold'>SYNTHETIC DATA: simulated patients, not real people.</p>"
             if s["synthetic"] else "")
    rows = "".join(f"<tr><td>{e(str(r['subject_id']))}</td><td>{e(r['prediction_time'])}</td><td>{e(r['split'])}"
                   f"</td><td>{r['anomaly_score']:.4f}</td><td>{e(', '.join(r['codes'][:25]))}</td></tr>"
                   for r in s["most_anomalous"])
    q = ", ".join(f"{k}: {v:.4f}" for k, v in s["score_quantiles"].items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(name)}: patient anomalies</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}td,th{border:1px solid #ccc;"
            "padding:4px;vertical-align:top}table{border-collapse:collapse}</style></head><body>"
            f"<h1>{e(name)}: most anomalous patient histories</h1>{synth}"
            f"<p>Patient autoencoder (GRU encoder, {s['dim']}-dimensional embedding, multi-hot code reconstruction) "
            f"trained on {s['train_samples']} training samples; anomaly score = reconstruction loss. "
            f"Score quantiles over all {s['samples']} samples: {q}. A high score means a history unlike the "
            "training cohort's: check data quality first, then clinical rarity.</p>"
            "<table><tr><th>subject</th><th>prediction time</th><th>split</th><th>anomaly score</th>"
            f"<th>codes in the window</th></tr>{rows}</table></body></html>")
