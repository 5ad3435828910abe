"""Opportunistic micro-batching of table predictions: requests that arrive while the model is busy are predicted
together in one `Run.predict` call, and their audit rows committed in one transaction.

No request waits for a batch to fill: the worker takes whatever is queued when it becomes free (one request at
low load, so latency is unchanged; up to `max_batch` under load, so throughput grows with the clients instead of
each request paying the featurizer's and the network's fixed costs alone). Every audit row is committed before
any of the batch's responses is released. If a batch fails (one record the featurizer refuses), each request is
retried alone, so only the bad one gets the error.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass
from typing import Any

from medflow.errors import MedflowError
from medflow.serve.errors import RequestError

__all__ = ["Batcher"]


@dataclass
class _Item:
    records: list[dict[str, Any]]
    explain: bool
    meta: dict[str, Any]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class Batcher:
    """One worker thread per served model version; `submit` returns the request's results (or raises)."""

    def __init__(self, served: Any, predict: Any, finish: Any, max_batch: int = 64) -> None:
        self.served, self.predict, self.finish, self.max_batch = served, predict, finish, max_batch
        self.queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self.sizes: list[int] = []  # batch sizes seen (for the benchmark and tests), bounded
        self.thread = threading.Thread(target=self._work, name=f"medflow-batch-{served.name}", daemon=True)
        self.thread.start()

    async def submit(self, records: list[dict[str, Any]], explain: bool, meta: dict[str, Any]) -> Any:
        """Predict one request's checked records (`InputSchema.check`) with whatever else is queued."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.queue.put(_Item(records, explain, meta, fut, loop))
        return await fut

    def close(self) -> None:
        self.queue.put(None)

    def _work(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            items = [first]
            while len(items) < self.max_batch:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self.queue.put(None)
                    break
                items.append(nxt)
            if len(self.sizes) < 100_000:
                self.sizes.append(len(items))
            for explain in (False, True):
                group = [i for i in items if i.explain == explain]
                if group:
                    self._run(group, explain)

    def _run(self, items: list[_Item], explain: bool) -> None:
        try:
            frame = self.served.schema.frame([r for i in items for r in i.records])  # one frame per batch
            results, _ = self.predict(self.served, frame, explain)
        except Exception as e:  # noqa: BLE001 - retried one by one so only the request at fault fails
            if len(items) > 1:
                for item in items:
                    self._run([item], explain)
                return
            self._fail(items[0], e)
            return
        parts, start = [], 0
        for item in items:
            parts.append(results[start:start + len(item.records)])
            start += len(item.records)
        try:
            answers = self.finish(self.served, [(i.meta, p) for i, p in zip(items, parts, strict=True)])
        except Exception as e:  # noqa: BLE001 - an audit failure fails the batch: nothing is answered unaudited
            for item in items:
                self._fail(item, e)
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any]]] = {}
        for item, answer in zip(items, answers, strict=True):
            by_loop.setdefault(item.loop, []).append((item.future, answer))
        for loop, done in by_loop.items():  # one wake-up of the event loop per batch, not per request
            loop.call_soon_threadsafe(_resolve_all, done)

    def _fail(self, item: _Item, e: Exception) -> None:
        if isinstance(e, MedflowError):
            e = RequestError(str(e), [{"field": "records", "problem": str(e)}], status=422)
        item.loop.call_soon_threadsafe(_resolve, item.future, None, e)


def _resolve(fut: asyncio.Future, value: Any, exc: Exception | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)


def _resolve_all(done: list[tuple[asyncio.Future, Any]]) -> None:
    for fut, value in done:
        _resolve(fut, value, None)
