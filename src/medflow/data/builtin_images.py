"""Built-in image datasets: SYNTHETIC phantoms with known lesion kinds and masks (`data.simulate.phantoms`)."""

from __future__ import annotations

from medflow.data.dataset import Dataset
from medflow.registry import dataset_info, register_dataset

_PHANTOM_SOURCE = "SYNTHETIC: medflow's phantom simulator (organ, cyst or tumor, masks)"
_PHANTOM_TASK = "binary: malignant (multiclass: finding; segmentation: lesion)"


def _phantoms(patients: int, size: int, dims: int) -> Dataset:
    from medflow.data.images import phantom_dataset

    ds = phantom_dataset(patients, size, dims, seed=0)
    ds.source = f"builtin:phantoms_{dims}d"
    return ds


@register_dataset("phantoms_2d")
@dataset_info(task=_PHANTOM_TASK, size="626 images of 300 patients, 64x64", source=_PHANTOM_SOURCE)
def phantoms_2d() -> Dataset:
    return _phantoms(300, 64, 2)


@register_dataset("phantoms_3d")
@dataset_info(task=_PHANTOM_TASK, size="273 volumes of 150 patients, 32^3", source=_PHANTOM_SOURCE)
def phantoms_3d() -> Dataset:
    return _phantoms(150, 32, 3)


@register_dataset("mni_gm_wm")
@dataset_info(task="segmentation: gm, wm", size="1 real brain: 60 training patches (64^3), 1 test hemisphere",
              source="MNI ICBM152 2009a T1 template with grey/white-matter maps (inside nilearn's wheel), real")
def mni_gm_wm() -> Dataset:
    from medflow.data.images import mni_dataset

    return mni_dataset()
