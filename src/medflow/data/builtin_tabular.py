"""Built-in tables that ship inside scikit-learn, and the simulated EHR cohort (SYNTHETIC)."""

from __future__ import annotations

from medflow.data.dataset import Dataset
from medflow.data.sources.tabular import dataset_from_frame
from medflow.registry import dataset_info, register_dataset

__all__: list[str] = []


@register_dataset("breast_cancer")
@dataset_info(task="binary: malignant", size="569 patients, 30 features",
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
@dataset_info(task="regression: progression", size="442 patients, 10 features",
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
@dataset_info(task="binary: readmission_30d (data.cohort picks another)",
              size="2,000 simulated patients, ~100k events (data.simulate.patients)",
              source="medflow EHR simulator (SYNTHETIC, known oracle AUROC), MEDS events")
def ehr_sim() -> Dataset:
    """Simulated inpatient EHR (SYNTHETIC): admissions, ICD-10-CM, LOINC labs, RxNorm, 30-day readmission."""
    from medflow.data.ehr import simulated_ehr

    return simulated_ehr()
