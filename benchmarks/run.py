"""`make bench`: every benchmark, printed as Markdown tables and saved to benchmarks/results/."""

from __future__ import annotations

import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import bench_models  # noqa: E402
import bench_survival  # noqa: E402
import bench_trainer  # noqa: E402


def _ci(m: dict) -> str:
    return f"{m['value']:.3f} ({m['low']:.3f}-{m['high']:.3f})"


def main() -> None:
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [f"# medflow benchmarks, {stamp}, {platform.node()} ({platform.processor() or platform.machine()})", ""]
    trainer = bench_trainer.run()
    lines += ["## (a) Trainer vs a hand-written PyTorch loop (same model, data, optimizer; median of 5)", "",
              "| data | rows | batch | plain loop s/epoch | Trainer s/epoch | ratio "
              "| Trainer + checkpoint every epoch | ratio |",
              "|---|---|---|---|---|---|---|---|"]
    for r in trainer:
        lines.append(f"| {r['data']} | {r['rows']} | {r['batch_size']} | {r['plain_s_per_epoch']:.4f} | "
                     f"{r['trainer_s_per_epoch']:.4f} | **{r['ratio']:.2f}x** | {r['trainer_ckpt_s_per_epoch']:.4f} | "
                     f"{r['ratio_with_checkpoint']:.2f}x |")
    print("\n".join(lines), flush=True)
    models = bench_models.run()
    lines += ["", "## (b) Model comparison, 5-fold patient-level CV, pooled out-of-fold test predictions, "
              "95% CI from 1000 patient bootstrap resamples", ""]
    for dataset in dict.fromkeys(r["dataset"] for r in models):
        rows = [r for r in models if r["dataset"] == dataset]
        metrics = [k for k in rows[0] if k not in ("dataset", "model", "selected", "fit_seconds")]
        lines += [f"### {dataset}", "", "| model | " + " | ".join(metrics) + " | fit s (5 folds) |",
                  "|---" * (len(metrics) + 2) + "|"]
        for r in rows:
            star = " *" if r["selected"] else ""
            lines.append(f"| {r['model']}{star} | " + " | ".join(_ci(r[m]) for m in metrics)
                         + f" | {r['fit_seconds']:.1f} |")
        lines += ["", "\\* selected on the validation parts by the primary metric.", ""]
    survival = bench_survival.run()
    lines += ["## (c) Survival, 5-fold patient-level CV (stratified on the event), same folds for every model; "
              "mean over folds (95% t-interval)", "",
              "| dataset | model | C-index (Harrell) | C-index (Uno) | integrated Brier | fit s (5 folds) |",
              "|---|---|---|---|---|---|"]
    for r in survival:
        cells = [f"{r[m]['mean']:.3f} ({r[m]['low']:.3f}-{r[m]['high']:.3f})" for m in ("c_harrell", "c_uno", "ibs")]
        lines.append(f"| {r['dataset']} | {r['model']} | " + " | ".join(cells) + f" | {r['fit_s']:.1f} |")
    blocks = bench_survival.fusion()
    lines += ["", "## (d) Clinical + gene-expression fusion, breast_cancer_genomic (198 patients), DeepSurv, "
              "2 x 5-fold, out-of-fold Harrell's C (95% patient-bootstrap CI)", "",
              "| configuration | input columns | C-index |", "|---|---|---|"]
    for name, r in blocks["configs"].items():
        lines.append(f"| {name} | {r['columns']} | {r['value']:.3f} ({r['low']:.3f}-{r['high']:.3f}) |")
    lines += ["", blocks["verdict"]]
    text = "\n".join(lines)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.md").write_text(text + "\n")
    (out / "latest.json").write_text(json.dumps({"trainer": trainer, "models": models, "survival": survival,
                                                 "fusion": blocks},
                                                indent=1))
    print(text[text.index("## (b)"):])


if __name__ == "__main__":
    main()
