"""`medflow demo`: complete studies on real data shipped with scikit-learn and scikit-survival, and on
medflow's simulators (EHR events, imaging phantoms), labelled SYNTHETIC, real molecules (FreeSolv), real radiology
reports (IU chest X-rays: finding extraction with negation), a treatment effect on real NHEFS and a molecule
generator trained on FreeSolv.

Three sizes of one tour, each study the same data, task, split, report and printed table:
- `quick` (`medflow demo`, the default): one short section per modality, under 3 minutes on 2 cores: the
  simplest and the characteristic deep model of each study, fewer epochs and bootstrap resamples;
- `full` (`medflow demo --full`): every model of each study trained to convergence, about 10 minutes;
- `fast` (`medflow demo --fast`): the smallest settings that still run every step, for the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from medflow.cli.show import err, say_report, show_run
from medflow.errors import ConfigError

__all__ = ["demo_configs", "run_demo"]


MODES = ("fast", "quick", "full")


def demo_configs(output_dir: Path, mode: str = "quick") -> list[dict]:
    """The demo studies as plain dicts (the same shape as a study YAML), at one of `MODES`."""
    if mode not in MODES:
        raise ValueError(f"demo mode {mode!r}: expected one of {MODES}")
    studies = _studies(output_dir, mode == "fast")
    if mode != "full":
        for raw in studies:
            _quicken(raw, mode)
    return studies


# the quick tour's changes per study: the models kept (the simplest baseline beside the modality's deep model),
# then training options and study options that shorten it; every other option is the full tour's
_QUICK: dict[str, dict] = {
    "demo-breast_cancer": {"models": ["mlp", "logistic_regression", "gradient_boosting"],
                           "train": {"max_epochs": 60, "patience": 10}, "n_bootstrap": 500},
    "demo-diabetes": {"train": {"max_epochs": 60, "patience": 10}, "n_bootstrap": 500},
    "demo-gbsg2-survival": {"models": ["deepsurv", "cox_ph", "kaplan_meier"],
                            "train": {"max_epochs": 40, "patience": 10}, "n_bootstrap": 100},
    "demo-ehr-readmission": {"models": ["gru", "logistic_regression"], "train": {"max_epochs": 5, "patience": 2},
                             "patients": 800, "n_bootstrap": 200},
    "demo-phantoms-imaging": {"models": ["small_cnn"], "train": {"max_epochs": 20, "patience": 20},
                              "n_bootstrap": 200},
    "demo-freesolv-molecules": {"models": [{"name": "mpnn", "ensemble": 2},
                                           {"name": "random_forest", "params": {"n_estimators": 200}}],
                                "train": {"max_epochs": 15, "patience": 15}, "n_bootstrap": 200,
                                # permutation importance predicts once per feature and repeat: a forest's
                                # predictions carry a fixed cost per tree (scikit-learn's dispatch)
                                "explain": {"max_records": 32, "n_repeats": 2}},
    "demo-iu-reports-text": {"models": ["context_rules", "context_learned",
                                        {"name": "logistic_regression", "params": {"C": 4.0}}], "n_bootstrap": 200},
    "demo-synthetic-notes-spans": {"n_bootstrap": 200},
    "demo-nhefs-treatment-effect": {"models": ["x_learner", "tarnet"], "train": {"max_epochs": 40, "patience": 8},
                                    "n_bootstrap": 200},
}
# the tests' settings (`--fast`) beyond the quick tour's models: the slowest studies shortened further
_FAST: dict[str, dict] = {
    "demo-gbsg2-survival": {"train": {"max_epochs": 15, "patience": 5}},
    "demo-freesolv-molecules": {"models": ["mpnn", {"name": "random_forest", "params": {"n_estimators": 100}}],
                                "train": {"max_epochs": 8, "patience": 8}, "explain": {"max_records": 16,
                                                                                      "n_repeats": 1}},
    "demo-ehr-readmission": {"train": {"max_epochs": 2, "patience": 2}},
}


def _quicken(raw: dict, mode: str) -> None:
    """The quick tour's models and options; with `mode` "fast", the quick tour's models on the full tour's fast
    variant, shortened further where `_FAST` says."""
    change = _QUICK[raw["name"]]
    if "models" in change:
        raw["models"] = change["models"]
    if mode == "fast":
        change = _FAST.get(raw["name"], {})
        raw["models"] = change.get("models", raw["models"])
    raw["train"] = {**raw.get("train", {}), **change.get("train", {})}
    if "n_bootstrap" in change:
        raw["evaluate"] = {**raw.get("evaluate", {}), "n_bootstrap": change["n_bootstrap"]}
    if "patients" in change:
        raw["data"]["omop"]["simulate_patients"] = change["patients"]
    if "explain" in change:
        raw["explain"] = {**raw.get("explain", {}), **change["explain"]}


def _studies(output_dir: Path, fast: bool) -> list[dict]:
    train = {"max_epochs": 30 if fast else 200, "patience": 10 if fast else 20, "progress": not fast}
    n_boot = 200 if fast else 1000
    return [
        {"name": "demo-breast_cancer", "output_dir": str(output_dir),
         "intended_use": ("Research demonstration: classify fine-needle aspirates as malignant or benign from "
                          "nuclear features. Not for clinical use."),
         "data": {"dataset": "breast_cancer"}, "task": {"kind": "binary", "label": "malignant"},
         "models": ["mlp", "resnet_mlp", "logistic_regression", "gradient_boosting"],
         "split": {"kind": "holdout", "test": 0.2, "valid": 0.15}, "train": train,
         "evaluate": {"n_bootstrap": n_boot,
                      "subgroups": [{"column": "mean_radius", "quantiles": 3, "name": "tumour size band"}]}},
        {"name": "demo-diabetes", "output_dir": str(output_dir),
         "intended_use": "Research demonstration: predict one-year diabetes progression. Not for clinical use.",
         "data": {"dataset": "diabetes"}, "task": {"kind": "regression", "label": "progression"},
         "models": ["mlp", "linear_regression", "gradient_boosting"],
         "split": {"kind": "holdout", "test": 0.2, "valid": 0.15}, "train": train,
         "evaluate": {"n_bootstrap": n_boot,
                      "subgroups": ["sex", {"column": "age", "bins": [0, 40, 55, 100], "name": "age band"}]}},
        {"name": "demo-gbsg2-survival", "output_dir": str(output_dir),
         "intended_use": ("Research demonstration: recurrence-free survival after node-positive breast cancer "
                          "(GBSG2 trial). Not for clinical use."),
         "data": {"dataset": "gbsg2"},
         "task": {"kind": "survival", "time": "time", "event": "event", "horizons": [365, 730, 1825]},
         "models": ["deepsurv", "deephit", "cox_ph", "random_survival_forest", "kaplan_meier"],
         "split": {"kind": "holdout", "test": 0.25, "valid": 0.15}, "train": train,
         "evaluate": {"n_bootstrap": 100 if fast else 200, "subgroups": ["menostat"]}},
        {"name": "demo-ehr-readmission", "output_dir": str(output_dir),
         "intended_use": ("Research demonstration on SYNTHETIC patients: 30-day readmission at discharge from the "
                          "event history (medflow's simulator written as an OMOP CDM 5.4 database and read back as "
                          "OMOP). Not for clinical use."),
         "data": {"omop": {"path": str(Path(output_dir) / "demo-omop"), "simulate_patients": 800 if fast else 2000},
                  "cohort": "readmission_30d", "sequence": {"max_len": 64 if fast else 96}},
         "task": {"kind": "binary", "label": "readmission_30d"},
         # 3-fold CV pools the validation patients of every fold for model selection (one holdout: ~20 events)
         "split": {"kind": "kfold", "k": 3, "valid": 0.25},
         "models": ["gru", "retain", "logistic_regression", "gradient_boosting"],
         "train": {"max_epochs": 4 if fast else 12, "patience": 2 if fast else 3, "batch_size": 64,
                   "progress": not fast},
         "evaluate": {"n_bootstrap": 100 if fast else 500, "subgroups": ["sex", "race"]},
         "explain": {"max_records": 100, "n_repeats": 2, "examples": 3}},
        {"name": "demo-phantoms-imaging", "output_dir": str(output_dir),
         "intended_use": ("Research demonstration on SYNTHETIC images: tell lobulated tumors from round cysts and "
                          "normal organs in simulated 64x64 phantoms (lesion masks known, so Grad-CAM is scored by "
                          "the pointing game). Not for clinical use."),
         "data": {"dataset": "phantoms_2d"}, "task": {"kind": "binary", "label": "malignant"},
         "models": ["small_cnn", {"name": "resnet18", "params": {"widen_factor": 0.5}}],
         "split": {"kind": "holdout", "test": 0.3, "valid": 0.2},
         # Grad-CAM localizes once the CNN is trained well: 30 full epochs (docs/imaging.md)
         "train": {"max_epochs": 8 if fast else 30, "patience": 8 if fast else 30, "batch_size": 32,
                   "progress": not fast},
         "evaluate": {"n_bootstrap": 100 if fast else 500}, "explain": {"max_records": 200, "examples": 4}},
        {"name": "demo-freesolv-molecules", "output_dir": str(output_dir),
         "intended_use": ("Research demonstration on real data: hydration free energy of small molecules (FreeSolv) "
                          "from their structure, tested on scaffolds no model saw. Not for decisions about "
                          "compounds without experimental confirmation."),
         "data": {"dataset": "freesolv"}, "task": {"kind": "regression", "label": "expt"},
         "models": [{"name": "mpnn", "ensemble": 2 if fast else 3}, "random_forest"],
         "split": {"kind": "scaffold", "test": 0.1, "valid": 0.1},
         "train": {"max_epochs": 25 if fast else 50, "patience": 25 if fast else 50, "batch_size": 50,
                   "warmup_epochs": 2, "progress": not fast},
         "evaluate": {"n_bootstrap": 100 if fast else 500}, "explain": {"max_records": 64, "examples": 3}},
        {"name": "demo-iu-reports-text", "output_dir": str(output_dir),
         "intended_use": ("Research demonstration on real radiology reports (Indiana University chest X-rays): which "
                          "findings a report asserts, negations and hedges handled. Not for clinical use."),
         "data": {"dataset": "iu_reports"},
         "task": {"kind": "multilabel", "labels": ["cardiomegaly", "pleural_effusion", "pneumothorax", "atelectasis",
                                                   "nodule", "edema", "pneumonia"]},
         "models": ["context_rules", "context_learned", {"name": "logistic_regression", "params": {"C": 4.0}},
                   "text_cnn"],
         "split": {"kind": "holdout", "test": 0.25, "valid": 0.15},
         "train": {"max_epochs": 6 if fast else 15, "patience": 3 if fast else 4, "batch_size": 64,
                   "progress": not fast},
         "evaluate": {"n_bootstrap": 100 if fast else 500}, "explain": {"max_records": 100, "examples": 4}},
        {"name": "demo-synthetic-notes-spans", "output_dir": str(output_dir),
         "intended_use": ("Research demonstration on SYNTHETIC discharge summaries written from simulated EHR "
                          "patients: problems with their assertion, drugs, doses, routes and frequencies as spans. "
                          "Not for clinical use."),
         "data": {"dataset": "synthetic_notes"}, "task": {"kind": "spans"}, "models": ["span_tagger"],
         "evaluate": {"n_bootstrap": 100 if fast else 500}},
        {"name": "demo-nhefs-treatment-effect", "output_dir": str(output_dir),
         "intended_use": ("Research demonstration on real data: the effect of quitting smoking on weight gain over "
                          "11 years (NHEFS), per person, beside the published IP-weighted estimate (3.4 kg). Assumes "
                          "no unmeasured confounding. Not for clinical use."),
         "data": {"dataset": "nhefs"},
         "task": {"kind": "treatment_effect", "treatment": "qsmk", "outcome": "wt82_71",
                  "outcome_direction": "lower_is_better"},
         "models": ["x_learner", "tarnet", "dragonnet"],
         "split": {"kind": "holdout", "test": 0.25, "valid": 0.2},
         "train": {"max_epochs": 20 if fast else 100, "patience": 5 if fast else 15, "batch_size": 64,
                   "progress": not fast},
         "evaluate": {"n_bootstrap": 100 if fast else 500, "subgroups": ["sex"]}},
    ]


def _generator_demo(output_dir: Path, mode: str, console: Console) -> Path:
    """A SMILES LSTM trained on FreeSolv's real molecules, 1,000 GENERATED molecules measured against them."""
    import json

    from medflow.molgen import train_generator

    cfg = {"name": "demo-freesolv-generator", "data": {"dataset": "freesolv"}, "output_dir": str(output_dir),
           "generator": {"hidden": 256 if mode == "full" else 128, "layers": 2 if mode == "full" else 1},
           "train": {"max_epochs": {"fast": 8, "quick": 12, "full": 30}[mode], "lr": 0.005},
           "sample": 200 if mode == "fast" else 1000}
    run = train_generator(cfg, progress=mode != "fast")
    m = json.loads((run / "metrics.json").read_text())
    console.print(f"demo-freesolv-generator: {m['sampled']} GENERATED molecules, validity {m['validity']['value']:.2f}"
                  f", uniqueness {m['uniqueness']['value']:.2f}, novelty {m['novelty']['value']:.2f}, internal "
                  f"diversity {m['internal_diversity']['value']:.2f} -> {run / 'report.html'}", soft_wrap=True,
                  highlight=False)
    return run / "report.html"


def run_demo(output_dir: Path, mode: str = "quick", show: Callable[[Any], None] | None = None,
             console: Console | None = None) -> list[Path]:
    """Run every demo study at `mode` (`MODES`); returns the report paths (breast cancer first)."""
    from medflow.config import parse_config
    from medflow.study import run_study


    reports, runs = [], {}
    for raw in demo_configs(output_dir, mode):
        omop = raw["data"].get("omop", {})
        if "simulate_patients" in omop:  # the EHR study reads the simulator's patients written as OMOP
            from medflow.data.simulate.omop import simulate_omop

            simulate_omop(omop["path"], omop.pop("simulate_patients"), seed=0, overwrite=True)
        run = run_study(parse_config(raw, f"demo {raw['name']}"), console=console)
        if show:
            show(run)
        reports.append(run.path / "report.html")
        runs[raw["name"]] = run
    reports.append(_generator_demo(Path(output_dir), mode, console or Console(stderr=True)))
    from medflow.cli.demo_service import service_demo

    for line in service_demo(runs, Path(output_dir)):
        (console or Console(stderr=True)).print(line, soft_wrap=True, highlight=False)
    return reports


def demo(output_dir: Annotated[Path, typer.Option(help="where run directories go")] = Path("runs"),
         full: Annotated[bool, typer.Option(help="the longer tour: every model of each study, trained to "
                                                 "convergence (about 10 min on 2 cores; the default under 3)")] = False,
         fast: Annotated[bool, typer.Option(help="the smallest settings that run every step (for tests)")] = False,
         ) -> None:
    """Run the built-in demo studies: breast cancer (binary), diabetes (regression), GBSG2 (survival), simulated
    EHR readmission (events), simulated imaging phantoms (CNNs with Grad-CAM), FreeSolv molecules, IU radiology
    reports, spans in SYNTHETIC notes, the NHEFS treatment effect, a molecule generator, then the service."""
    if full and fast:
        raise ConfigError("--full and --fast: choose one.")
    reports = run_demo(output_dir, mode="full" if full else "fast" if fast else "quick", show=show_run, console=err)
    say_report(reports[0])


def register(app: typer.Typer) -> None:
    app.command()(demo)
