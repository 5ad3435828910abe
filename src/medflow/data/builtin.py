"""Built-in datasets: real data that ships inside installed packages (no download)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from medflow.data.dataset import Dataset
from medflow.data.sources.tabular import dataset_from_frame
from medflow.registry import datasets, register_dataset

__all__ = ["load", "describe"]


def load(name: str) -> Dataset:
    """Load a registered dataset by name, e.g. ``load("breast_cancer")``."""
    _register_survival()
    factory: Callable[[], Dataset] = datasets.get(name)
    return factory()


def describe() -> list[dict[str, str]]:
    """One row per registered dataset: name, task, size and source, for `medflow datasets`."""
    _register_survival()
    rows = []
    for name, factory in datasets.items():
        info = getattr(factory, "info", {})
        rows.append({"name": name, **info})
    return rows


def _with_info(**info: str) -> Callable:
    def wrap(fn: Callable) -> Callable:
        fn.info = info
        return fn

    return wrap


@register_dataset("breast_cancer")
@_with_info(task="binary: malignant", size="569 patients, 30 features",
            source="scikit-learn (Wisconsin Diagnostic Breast Cancer, UCI), real data")
def breast_cancer() -> Dataset:
    """Wisconsin diagnostic breast cancer: 30 nuclear features from fine-needle aspirates."""
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer(as_frame=True)
    frame = raw.data.copy()
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    # scikit-learn codes 0 = malignant, 1 = benign; clinically the positive class is malignant.
    frame["malignant"] = (raw.target == 0).astype(int)
    frame.insert(0, "patient_id", [f"wdbc-{i:04d}" for i in range(len(frame))])
    return dataset_from_frame(
        frame, source="builtin:breast_cancer", name="breast_cancer", patient_id="patient_id",
        description=("Wisconsin Diagnostic Breast Cancer (Street, Wolberg & Mangasarian 1993): "
                     "569 fine-needle aspirates, one per patient, 212 malignant. Features describe "
                     "cell nuclei in the digitized image. Shipped with scikit-learn."),
        label_hint="malignant",
    )


@register_dataset("diabetes")
@_with_info(task="regression: progression", size="442 patients, 10 features",
            source="scikit-learn (Efron et al. 2004), real data")
def diabetes() -> Dataset:
    """Diabetes progression: baseline age, sex, BMI, blood pressure and six serum measures."""
    from sklearn.datasets import load_diabetes

    raw = load_diabetes(as_frame=True, scaled=False)
    frame = raw.data.copy()
    frame = frame.rename(columns={"s1": "tc", "s2": "ldl", "s3": "hdl", "s4": "tch", "s5": "ltg", "s6": "glu"})
    frame["sex"] = frame["sex"].map({1.0: "sex_1", 2.0: "sex_2"})
    frame["progression"] = raw.target.astype(float)
    frame.insert(0, "patient_id", [f"diab-{i:03d}" for i in range(len(frame))])
    return dataset_from_frame(
        frame, source="builtin:diabetes", name="diabetes", patient_id="patient_id",
        types={"sex": "categorical"},
        description=("Diabetes (Efron, Hastie, Johnstone & Tibshirani 2004): 442 patients; target is a "
                     "quantitative measure of disease progression one year after baseline. Sex is coded "
                     "1/2 in the source without a key. Shipped with scikit-learn."),
        label_hint="progression",
    )


@register_dataset("ehr_sim")
@_with_info(task="binary: readmission_30d (data.cohort picks another)",
            size="2,000 simulated patients, ~100k events (data.simulate.patients)",
            source="medflow EHR simulator (SYNTHETIC, known oracle AUROC), MEDS events")
def ehr_sim() -> Dataset:
    """Simulated inpatient EHR (SYNTHETIC): admissions, ICD-10-CM, LOINC labs, RxNorm, 30-day readmission."""
    from medflow.data.ehr import simulated_ehr

    return simulated_ehr()


def _register_survival() -> None:
    import medflow.data.builtin_survival  # noqa: F401  (registers gbsg2, veterans, flchain, ...)


def frame_of(name: str) -> pd.DataFrame:
    """The raw table of a built-in dataset (handy for writing it to CSV in examples and tests)."""
    return load(name).frame
