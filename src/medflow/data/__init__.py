"""Data: the Dataset, readers, built-in datasets, splits and quality checks."""

from medflow.data.dataset import Dataset, FeatureType
from medflow.data.sources.tabular import read_table

__all__ = ["Dataset", "FeatureType", "read_table"]
