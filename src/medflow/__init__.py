"""medflow: a deep-learning workbench for healthcare research.

>>> import medflow as mf
>>> sorted(mf.datasets.describe()[0])  # doctest: +ELLIPSIS
['name', 'size', 'source', 'task']
"""

__version__ = "0.1.0"

from medflow import tasks  # noqa: E402
from medflow.data import builtin as datasets  # noqa: E402
from medflow.data import splits  # noqa: E402
from medflow.data.dataset import Dataset, FeatureType  # noqa: E402
from medflow.data.sources.tabular import read_table  # noqa: E402
from medflow.errors import ConfigError, DataError, MedflowError, ModelError  # noqa: E402
from medflow.runs import Run, load_run  # noqa: E402
from medflow.study import Study  # noqa: E402

__all__ = ["datasets", "tasks", "splits", "Dataset", "FeatureType", "read_table", "Study", "Run", "load_run",
           "MedflowError", "DataError", "ConfigError", "ModelError", "__version__"]
