"""Built-in survival datasets: real data inside scikit-survival's wheel (no download).

Each has a `time` column (days) and an `event` column (1 = event observed, 0 = censored).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from medflow.data.dataset import Dataset
from medflow.data.sources.tabular import dataset_from_frame
from medflow.registry import dataset_info, register_dataset

__all__ = ["gbsg2", "veterans", "flchain", "breast_cancer_genomic", "bmt", "cgvhd"]


def _frame(loader: Callable, prefix: str, event: str, time: str, drop: tuple[str, ...] = ()) -> pd.DataFrame:
    x, y = loader()
    frame = x.drop(columns=list(drop)).copy()
    for c in frame.columns:
        if isinstance(frame[c].dtype, pd.CategoricalDtype):
            frame[c] = frame[c].astype(object)
    frame.columns = [c.replace(".", "_") for c in frame.columns]
    frame["time"] = np.asarray(y[time], dtype=float)
    frame["event"] = np.asarray(y[event], dtype=int)
    frame.insert(0, "patient_id", [f"{prefix}-{i:04d}" for i in range(len(frame))])
    return frame


@register_dataset("gbsg2")
@dataset_info(task="survival: time, event (recurrence-free survival)", size="686 patients, 8 features",
              source="scikit-survival (German Breast Cancer Study Group 2), real data")
def gbsg2() -> Dataset:
    """GBSG2: node-positive breast cancer, recurrence-free survival (Schumacher et al. 1994)."""
    from sksurv.datasets import load_gbsg2

    return dataset_from_frame(
        _frame(load_gbsg2, "gbsg2", "cens", "time"), source="builtin:gbsg2", name="gbsg2", patient_id="patient_id",
        description=("German Breast Cancer Study Group 2 trial (Schumacher et al. 1994): 686 women with "
                     "node-positive breast cancer; time to recurrence or death in days, 387 censored. "
                     "Shipped with scikit-survival."), label_hint="time,event")


@register_dataset("veterans")
@dataset_info(task="survival: time, event (death)", size="137 patients, 6 features",
              source="scikit-survival (Veterans' Administration lung cancer trial), real data")
def veterans() -> Dataset:
    """Veterans' Administration lung cancer trial (Kalbfleisch & Prentice 1980)."""
    from sksurv.datasets import load_veterans_lung_cancer

    return dataset_from_frame(
        _frame(load_veterans_lung_cancer, "vet", "Status", "Survival_in_days"), source="builtin:veterans",
        name="veterans", patient_id="patient_id",
        description=("Veterans' Administration lung cancer trial (Kalbfleisch & Prentice 1980): 137 men with "
                     "advanced inoperable lung cancer, standard or test chemotherapy; days to death, 9 censored. "
                     "Shipped with scikit-survival."), label_hint="time,event")


@register_dataset("flchain")
@dataset_info(task="survival: time, event (death)", size="7,874 patients, 8 features",
              source="scikit-survival (Olmsted County serum free light chain study), real data")
def flchain() -> Dataset:
    """Serum free light chains and mortality (Dispenzieri et al. 2012). The cause-of-death column
    `chapter` is removed: it is filled only for those who died, so it leaks the outcome."""
    from sksurv.datasets import load_flchain

    return dataset_from_frame(
        _frame(load_flchain, "flc", "death", "futime", drop=("chapter",)), source="builtin:flchain", name="flchain",
        patient_id="patient_id",
        description=("Olmsted County study of serum free light chains (Dispenzieri et al. 2012): 7,874 residents "
                     "aged 50+; days to death, 72% censored. The cause-of-death column 'chapter' is removed "
                     "because it is only filled for patients who died (outcome leakage). Shipped with "
                     "scikit-survival."), label_hint="time,event")


@register_dataset("breast_cancer_genomic")
@dataset_info(task="survival: time, event (distant metastasis)", size="198 patients, 76 genes + 4 clinical",
              source="scikit-survival (Desmedt et al. 2007, GSE7390), real data")
def breast_cancer_genomic() -> Dataset:
    """Node-negative breast cancer: 76 gene-expression features plus age, ER, grade and size."""
    from sksurv.datasets import load_breast_cancer

    frame = _frame(load_breast_cancer, "bcg", "e.tdm", "t.tdm")
    genes = [c for c in frame.columns if c.startswith("X")]
    ds = dataset_from_frame(
        frame, source="builtin:breast_cancer_genomic", name="breast_cancer_genomic", patient_id="patient_id",
        description=("Desmedt et al. 2007 (GEO GSE7390): 198 untreated node-negative breast cancer patients; "
                     "76 gene-expression probes (the Amsterdam 70-gene signature set as shipped) plus clinical "
                     "age, ER status, grade and tumour size; days to distant metastasis, 147 censored. "
                     "Shipped with scikit-survival."), label_hint="time,event")
    ds.meta["blocks"] = {"clinical": ["age", "er", "grade", "size"], "genomic": genes}
    return ds


@register_dataset("bmt")
@dataset_info(task="survival, competing risks: time, event (1 relapse, 2 transplant-related death)",
              size="35 patients, 1 feature", source="scikit-survival (Scrucca et al. 2007), real data")
def bmt() -> Dataset:
    """Bone-marrow transplant for acute leukaemia: relapse vs transplant-related mortality (competing risks)."""
    from sksurv.datasets import load_bmt

    return dataset_from_frame(
        _frame(load_bmt, "bmt", "status", "ftime"), source="builtin:bmt", name="bmt", patient_id="patient_id",
        types={"dis": "categorical"},
        description=("Scrucca, Santucci & Aversa 2007: 35 patients with acute leukaemia after bone-marrow "
                     "transplant; event 1 = relapse, 2 = transplant-related death (competing), 0 = censored; "
                     "time in months; feature: disease (0 ALL, 1 AML). Shipped with scikit-survival."),
        label_hint="time,event")


@register_dataset("cgvhd")
@dataset_info(task="survival, competing risks: time, event (1 chronic GvHD, 2 relapse, 3 death)",
              size="100 patients, 4 features", source="scikit-survival (Pintilie 2006), real data")
def cgvhd() -> Dataset:
    """Chronic graft-versus-host disease after transplant, with relapse and death as competing events."""
    from sksurv.datasets import load_cgvhd

    return dataset_from_frame(
        _frame(load_cgvhd, "cgvhd", "status", "ftime"), source="builtin:cgvhd", name="cgvhd", patient_id="patient_id",
        description=("Pintilie 2006: 100 patients after stem-cell transplant for leukaemia; event 1 = chronic "
                     "graft-versus-host disease, 2 = relapse, 3 = death (competing events), 0 = censored; time "
                     "in years; diagnosis, graft type, extent of acute GvHD, age. Shipped with scikit-survival."),
        label_hint="time,event")
