"""One registry for everything that is looked up by name: datasets, models, metrics.

`@register_model("mlp")` adds an entry; `models.get("mlp")` returns it, and an unknown
name raises a ConfigError that names the nearest entry and lists all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from medflow.errors import ConfigError, did_you_mean

__all__ = ["Registry", "datasets", "models", "metrics", "register_dataset", "register_model", "register_metric",
           "dataset_info"]

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of entries with 'did you mean' lookups."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers an entry under `name` (names are unique)."""

        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        """Return the entry called `name`, or raise a ConfigError listing the known names."""
        if name not in self._entries:
            known = ", ".join(sorted(self._entries))
            raise ConfigError(
                f"unknown {self.kind} '{name}'.{did_you_mean(name, self._entries)} Known {self.kind}s: {known}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._entries[n]) for n in self.names()]


datasets: Registry = Registry("dataset")
models: Registry = Registry("model")
metrics: Registry = Registry("metric")

register_dataset = datasets.register


def dataset_info(**info: str) -> Callable[[T], T]:
    """Attach the task, size and source shown by `medflow datasets` to a dataset factory."""

    def wrap(fn: T) -> T:
        fn.info = info  # type: ignore[attr-defined]
        return fn

    return wrap
register_model = models.register
register_metric = metrics.register
