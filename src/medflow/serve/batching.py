"""Opportunistic micro-batching of table predictions, on the event loop: requests that arrive together are
predicted in one `Run.predict_rows` call, and their audit rows committed in one transaction.

A batch is gathered over turns of the event loop, not over a clock: the first request schedules the gathering,
which takes one more turn whenever the turn brought a new request, and runs once `quiet_turns` turns in a row
brought none (or at `max_batch` requests, or after `max_wait` seconds). A lone request therefore waits a few
empty turns (microseconds); under load a batch holds about one request per open connection, so each request
pays a share of the featurizer's, the model's and the database's fixed costs instead of all of them.

Cheap batches (no explanations, at most `inline_records` records) are predicted on the event loop itself: a
batch thread would hand the interpreter lock back and forth with the loop at every torch call, which cost more
than the prediction (docs/service.md, "Throughput"). Explanations, large batches and the commit to a database
server (PostgreSQL: a network round trip) run on the prediction thread, so the loop keeps answering meanwhile.
Every audit row is committed before any of the batch's responses is released. If a batch fails (one record the
featurizer refuses), each request is retried alone, so only the bad one gets the error.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Executor
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


class Batcher:
    """Per served model version; `submit` returns the request's response (or raises its error)."""

    def __init__(self, served: Any, predict: Any, finish: Any, executor: Executor, *, offload_finish: bool = False,
                 max_batch: int = 64, inline_records: int = 256, quiet_turns: int = 3, max_wait: float = 0.002) -> None:
        self.served, self.predict, self.finish, self.executor = served, predict, finish, executor
        self.offload_finish, self.max_batch, self.inline_records = offload_finish, max_batch, inline_records
        self.quiet_turns, self.max_wait = quiet_turns, max_wait
        self.sizes: list[int] = []  # batch sizes seen (for the benchmark and tests), bounded
        self._pending: list[_Item] = []
        self._lock = threading.Lock()
        self._seen = self._quiet = 0
        self._since = 0.0

    async def submit(self, records: list[dict[str, Any]], explain: bool, meta: dict[str, Any]) -> Any:
        """Predict one request's checked records (`InputSchema.check`) with whatever else arrives meanwhile."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:  # one loop in a server; several when an app is driven from several threads
            self._pending.append(_Item(records, explain, meta, fut))
            first = len(self._pending) == 1
        if first:
            self._seen, self._quiet, self._since = 0, 0, loop.time()
            loop.call_soon(self._gather, loop)
        return await fut

    def close(self) -> None:
        """Nothing to stop: requests already queued on this version are still answered by it."""

    def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        n = len(self._pending)
        if n < self.max_batch and loop.time() - self._since < self.max_wait:
            self._quiet = 0 if n != self._seen else self._quiet + 1
            self._seen = n
            if self._quiet < self.quiet_turns:  # requests are still arriving: one more turn of the loop
                loop.call_soon(self._gather, loop)
                return
        with self._lock:
            items, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
            more = bool(self._pending)
        if more:  # more than one batch's worth queued: the rest form the next batch
            self._seen, self._quiet, self._since = 0, 0, loop.time()
            loop.call_soon(self._gather, loop)
        if len(self.sizes) < 100_000:
            self.sizes.append(len(items))
        for explain in (False, True):
            group = [i for i in items if i.explain == explain]
            if not group:
                continue
            if explain or sum(len(i.records) for i in group) > self.inline_records:
                loop.run_in_executor(self.executor, self._answer, group, explain, loop)
            elif self.offload_finish:
                self._predict_then_offload(group, loop)
            else:
                self._answer(group, explain, None)

    def _predict_then_offload(self, items: list[_Item], loop: asyncio.AbstractEventLoop) -> None:
        done = self._predict(items, False, None)
        if done:
            loop.run_in_executor(self.executor, self._finish, done, loop)

    def _answer(self, items: list[_Item], explain: bool, loop: asyncio.AbstractEventLoop | None) -> None:
        """Predict, audit and answer `items` (on the loop when `loop` is None, else from a thread)."""
        done = self._predict(items, explain, loop)
        if done:
            self._finish(done, loop)

    def _predict(self, items: list[_Item], explain: bool, loop: asyncio.AbstractEventLoop | None
                 ) -> list[tuple[_Item, list[dict[str, Any]]]]:
        try:
            frame = self.served.schema.frame([r for i in items for r in i.records])  # one frame per batch
            results = self.predict(self.served, frame, explain)
        except Exception as e:  # noqa: BLE001 - retried one by one so only the request at fault fails
            if len(items) == 1:
                _settle(loop, [(items[0].future, None, _refusal(e))])
                return []
            return [part for item in items for part in self._predict([item], explain, loop)]
        parts, start = [], 0
        for item in items:
            parts.append((item, results[start:start + len(item.records)]))
            start += len(item.records)
        return parts

    def _finish(self, done: list[tuple[_Item, list[dict[str, Any]]]], loop: asyncio.AbstractEventLoop | None) -> None:
        try:
            answers = self.finish(self.served, [(item.meta, results) for item, results in done])
        except Exception as e:  # noqa: BLE001 - an audit failure fails the batch: nothing is answered unaudited
            _settle(loop, [(item.future, None, e) for item, _ in done])
            return
        _settle(loop, [(item.future, answer, None) for (item, _), answer in zip(done, answers, strict=True)])


def _refusal(e: Exception) -> Exception:
    if isinstance(e, MedflowError):  # e.g. a value the featurizer cannot read: the message names the field
        return RequestError(str(e), [{"field": "records", "problem": str(e)}], status=422)
    return e


def _settle(loop: asyncio.AbstractEventLoop | None, outcomes: list[tuple[asyncio.Future, Any, Exception | None]]
            ) -> None:
    """Resolve futures: directly when on their loop, else with one wake-up of each future's loop (from the
    prediction thread; or a request that came in on another loop, e.g. a TestClient used from several threads)."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
    for owner, some in by_loop.items():
        if loop is None and owner is _running_loop():
            _resolve_all(some)
        else:
            owner.call_soon_threadsafe(_resolve_all, some)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _resolve_all(outcomes: list[tuple[asyncio.Future, Any, Exception | None]]) -> None:
    for fut, value, exc in outcomes:
        if fut.done():  # the client went away
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)
