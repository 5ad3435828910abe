"""`make bench`: every benchmark, printed as Markdown tables and saved to benchmarks/results/."""

from __future__ import annotations

import json
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import bench_distributed  # noqa: E402
import bench_drug_discovery  # noqa: E402
import bench_effects  # noqa: E402
import bench_ehr  # noqa: E402
import bench_federated  # noqa: E402
import bench_imaging  # noqa: E402
import bench_models  # noqa: E402
import bench_molecules  # noqa: E402
import bench_multimodal  # noqa: E402
import bench_omop  # noqa: E402
import bench_privacy  # noqa: E402
import bench_service  # noqa: E402
import bench_survival  # noqa: E402
import bench_synthetic  # noqa: E402
import bench_text  # noqa: E402
import bench_text_style  # noqa: E402
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
        lines += ["", "\\* selected on validation patients no model saw in training (simplest within the CI).", ""]
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
    lines += ehr_section()
    ddp = bench_distributed.run()
    lines += ["", "## (f) DDP: the Trainer in 1 process and in 2 (gloo, one thread each)", "",
              "| global batch | 1 process samples/s | 2 processes samples/s | speed-up | efficiency |",
              "|---|---|---|---|---|"]
    for r in ddp:
        lines.append(f"| {r['global_batch']} | {r['samples_per_s_1']:,.0f} | {r['samples_per_s_2']:,.0f} | "
                     f"{r['speedup']:.2f}x | {r['efficiency']:.0%} |")
    imaging = bench_imaging.main()
    lines += imaging_section(imaging)
    effects = bench_effects.run(list(range(1, 11)), ["s_learner", "t_learner", "x_learner", "tarnet", "dragonnet",
                                                      "cfrnet"])
    lines += ["", "## (h) Treatment effects: ACIC 2016 instances 1-10, the anchor's 5 folds, out-of-sample "
              "sqrt(PEHE) (anchor_* = `../shared/anchors/causal` code run here)", "", *bench_effects.table(effects)]
    privacy = bench_privacy.run()
    lines += ["", "## (j) DP-SGD: medflow's Trainer beside the Opacus anchor (breast cancer, the anchor's 5 folds; "
              "mean (sd))", "", *bench_privacy.markdown(privacy)]
    federated = bench_federated.run()
    lines += ["", "## (k) Federated training (Flower): federated vs pooled vs each site alone, three non-IID sites; "
              "AUROC (95% CI) on every site's held-out patients", "", *bench_federated.markdown(federated),
              *bench_federated.site_tables(federated), "", "### The same training as separate Flower processes on "
              "loopback", "", *bench_federated.loopback_markdown(bench_federated.loopback())]
    synthetic = bench_synthetic.run()
    lines += ["", "## (l) Synthetic patients: medflow's generators beside SDV's, one fidelity/privacy code path",
              "", *bench_synthetic.markdown(synthetic), "", "### Event sequences (--model sequence)", "",
              *bench_synthetic.events_markdown(bench_synthetic.events())]
    molecules = bench_molecules.run()
    lines += ["", "## (m) Molecular property prediction beside chemprop 2.3.1 on chemprop's own split files (test "
              "RMSE, mean +- sd over seeds 0-2)", "", *bench_molecules.markdown(molecules)]
    with tempfile.TemporaryDirectory() as tmp:
        lines += ["", "## (n) Drug-target interaction (SYNTHETIC dti_sim) and molecule generation (real solubility "
                  "set)", "", *bench_drug_discovery.dti([0], Path(tmp) / "dti"), "",
                  *bench_drug_discovery.generation(Path(tmp) / "gen")]
    text_res = bench_text.run()
    lines += ["", "## (t) Clinical text on the real IU chest X-ray reports and SYNTHETIC notes", "",
              *bench_text.markdown(text_res)]
    style = {"drugs": bench_text_style.drugs(), "deid": bench_text_style.deid(), "scale": bench_text_style.scale()}
    lines += ["", "## (t2) Clinical text on notes written in another style (SYNTHETIC, never trained on)", "",
              *bench_text_style.markdown(style)]
    service = bench_service.run(30)
    lines += ["", "## (i) The decision-support service under load (wrk, loopback, 30 s per row; the bare FastAPI "
              "endpoint and the bare Run.predict measured in the same run)", "", *bench_service.markdown(service)]
    omop = (bench_omop.convert(100_000), bench_omop.first_model(100_000))
    lines += ["", "## (o) OMOP CDM in, MEDS out (SYNTHETIC patients from the simulator)", "",
              *bench_omop.markdown(*omop)]
    multimodal = bench_multimodal.run()
    lines += ["", "## (w) Multimodal fusion on the simulator with known cross-modal truth (SYNTHETIC, 2,000 patients)",
              "", *bench_multimodal.markdown(multimodal)]
    text = "\n".join(lines)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.md").write_text(text + "\n")
    (out / "latest.json").write_text(json.dumps({"trainer": trainer, "models": models, "survival": survival,
                                                 "fusion": blocks, "ddp": ddp, "imaging": imaging,
                                                 "effects": effects.to_dict(orient="records"),
                                                 "service": service, "privacy": privacy, "federated": federated,
                                                 "synthetic": synthetic, "molecules": molecules, "text": text_res,
                                                 "text_style": style, "multimodal": multimodal},
                                                indent=1))
    print(text[text.index("## (b)"):])


def imaging_section(r: dict) -> list[str]:
    """(g) Imaging: throughput against a plain MONAI loop, phantoms AUROC, transfer learning, MNI segmentation."""
    lines = ["", "## (g) Imaging (SYNTHETIC phantoms; the real MNI template)", "",
             "### Images per second, medflow's Trainer / predict_outputs vs a plain MONAI loop (median of 3)", "",
             "| model | size | images | plain train img/s | medflow train img/s | ratio | plain infer img/s "
             "| medflow infer img/s | ratio |", "|---" * 9 + "|"]
    for t in r["throughput"]:
        lines.append(f"| {t['model']} | {t['size']} | {t['images']} | {t['plain_train_ips']:.0f} | "
                     f"{t['medflow_train_ips']:.0f} | {t['plain_train_ips'] / t['medflow_train_ips']:.2f}x | "
                     f"{t['plain_infer_ips']:.0f} | {t['medflow_infer_ips']:.0f} | "
                     f"{t['plain_infer_ips'] / t['medflow_infer_ips']:.2f}x |")
    ph = r["phantoms"]
    lines += ["", "### phantoms_2d, binary (malignant), patient hold-out; AUROC (95% patient-bootstrap CI), Grad-CAM "
              "pointing game", "", "| model | AUROC | pointing game (chance) | fit s |", "|---|---|---|---|"]
    for name, m in ph["models"].items():
        pg = m["pointing"]
        lines.append(f"| {name}{' *' if name == ph['selected'] else ''} | {_ci(m['auroc'])} | "
                     f"{pg['value']:.2f} ({pg['low']:.2f}-{pg['high']:.2f}; chance {pg['chance']:.2f}) | "
                     f"{m['fit_s']:.0f} |")
    lines += ["", "### Transfer learning: small_cnn pretrained on phantoms_2d, trained on another contrast; one fixed "
              "test set of 150 target patients", "", "| training patients | images | variant | AUROC |",
              "|---|---|---|---|"]
    for t in r["transfer"]:
        lines.append(f"| {t['patients']} | {t['images']} | {t['variant']} | {_ci(t['auroc'])} |")
    sp, mni = r["mni_speed"], r["mni"]
    lines += ["", "### MNI ICBM152 GM/WM segmentation, right hemisphere held out", "",
              f"Seconds per iteration (UNet 16-32-64-128, batch 2 of 64^3): plain MONAI loop {sp['plain']:.3f}, "
              f"medflow Trainer {sp['medflow']:.3f} (**{sp['ratio']:.2f}x**).", "",
              "| method | Dice GM | Dice WM |", "|---|---|---|",
              f"| two intensity thresholds (fitted on the training crops) | {mni['threshold_rule']['dice_gm']:.3f} | "
              f"{mni['threshold_rule']['dice_wm']:.3f} |",
              f"| medflow unet, {mni['iterations']} iterations, sliding windows | {mni['unet']['dice_gm']:.3f} | "
              f"{mni['unet']['dice_wm']:.3f} |"]
    return lines


def ehr_section() -> list[str]:
    """(e) EHR: MEDS -> tensors against the bare Polars pass, training throughput, accuracy against the oracle."""
    lines = ["", "## (e) EHR event data", "", "### MEDS -> model-ready tensors, anchor cohort (its meds/ copy), "
             "best of 2 alternating runs, child processes", "",
             "| patients | events | Polars floor s | floor events/s | floor peak RSS MB | medflow s | medflow events/s "
             "| medflow peak RSS MB | time ratio | memory ratio |", "|---" * 10 + "|"]
    for r in bench_ehr.tensors([10_000, 100_000]):
        lines.append(f"| {r['patients']:,} | {r['events']:,} | {r['floor_s']:.2f} | {r['floor_events_per_s']:,.0f} | "
                     f"{r['floor_rss_mb']:.0f} | {r['medflow_s']:.2f} | {r['medflow_events_per_s']:,.0f} | "
                     f"{r['medflow_rss_mb']:.0f} | **{r['time_ratio']:.2f}x** | **{r['rss_ratio']:.2f}x** |")
    st = bench_ehr.stream(1_000_000)
    lines += ["", f"1,000,000 simulated patients, streamed: simulation {st['simulate']['seconds']:.0f} s at "
              f"{st['simulate']['peak_rss_mb']:.0f} MB peak; tensors shard by shard {st['tensors']['seconds']:.0f} s "
              f"({st['tensors']['events']:,} events, {st['tensors']['events_per_s']:,.0f} events/s) at "
              f"{st['tensors']['peak_rss_mb']:.0f} MB peak RSS (goal: under 4 GiB)."]
    lines += ["", "### Training throughput (simulated cohort, 5,000 patients, batch 64, max_len 256)", "",
              "| model | samples | samples/s | share of the epoch building batches |", "|---|---|---|---|"]
    for r in bench_ehr.training(5000):
        lines.append(f"| {r['model']} | {r['samples']} | {r['samples_per_s']:.0f} | {r['batch_share']:.1%} |")
    acc = bench_ehr.accuracy(20_000)
    lines += ["", f"### 30-day readmission against the simulator's oracle (20,000 SYNTHETIC patients, "
              f"{acc['test_samples']} held-out samples, 95% patient-bootstrap CIs)", "",
              f"Oracle AUROC on the same samples: {_ci(acc['oracle'])}", "",
              "| model | AUROC | oracle - model | model - best count baseline |", "|---|---|---|---|"]
    for name, r in acc["models"].items():
        vs = r.get("vs_best_count_baseline")
        lines.append(f"| {name} | {_ci(r)} | {_ci(r['gap_to_oracle'])} | {_ci(vs) if vs else ''} |")
    st = bench_ehr.stream_study(1_000_000)["stream"]
    lines += ["", f"A whole streamed study (data.stream: true), 1,000,000 patients, {st['samples']:,} samples: "
              f"{st['seconds']:.0f} s at {st['peak_rss_mb']:,.0f} MB peak RSS (goal: under 4 GiB)."]
    return lines


if __name__ == "__main__":
    main()
