"""medflow's own error types: each message says what is wrong, where, and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["MedflowError", "DataError", "ConfigError", "ModelError", "did_you_mean", "shown"]


class MedflowError(Exception):
    """Base class for errors the CLI prints as one line (no traceback)."""


class DataError(MedflowError):
    """Input data is unusable: names the file, row, column or field at fault."""


class ConfigError(MedflowError):
    """A study configuration, option or name is invalid."""


class ModelError(MedflowError):
    """A model cannot be built, trained, saved or loaded as asked."""


def did_you_mean(given: str, options: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' for the nearest option, or '' when none is close."""
    close = difflib.get_close_matches(str(given), list(options), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def shown(value: object) -> str:
    """repr() of a value as the user wrote it (NumPy scalars as plain Python numbers)."""
    item = getattr(value, "item", None)
    return repr(item() if callable(item) and getattr(value, "ndim", 1) == 0 else value)
