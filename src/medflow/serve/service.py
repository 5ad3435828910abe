"""The service's state: the served model versions, the store, the guards, and prediction as JSON.

The service never trains and never re-implements prediction: it validates a request against the run's input
schema, calls `Run.predict`, and adds what a hospital needs around it (keys, rate limits, an audit row per
prediction committed before the response, Prometheus metrics, model versions picked up on promotion, drift
monitoring, CDS Hooks cards and a page for clinicians). Design notes: docs/service.md.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse, JSONResponse, Response

from medflow.errors import MedflowError
from medflow.runs import Run, json_rows, load_run
from medflow.serve.errors import RequestError
from medflow.serve.guard import RateLimiter, ServiceMetrics
from medflow.serve.monitor import DriftMonitor
from medflow.serve.schema import InputSchema
from medflow.serve.store import Store, dumps

__all__ = ["ServiceConfig", "Service", "Served", "predict_payload"]

ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {
    "error": {"type": "string"},
    "problems": {"type": "array", "items": {"type": "object", "properties": {
        "field": {"type": "string"}, "problem": {"type": "string"}}}}}}


@dataclass
class ServiceConfig:
    """How the service runs: its database, what it stores, and its limits."""

    db: str | None = None
    store_inputs: bool = False
    max_body_bytes: int = 1_000_000
    rate_per_minute: float = 6000.0
    rate_burst: int | None = None
    poll_seconds: float = 1.0
    predict_threads: int = 1
    monitoring_save_seconds: float = 30.0
    names: list[str] = field(default_factory=list)


@dataclass
class Served:
    """One model version as served: its run, schema and drift monitor."""

    name: str
    version: int
    run: Run
    schema: InputSchema
    monitor: DriftMonitor
    batcher: Any = None

    @classmethod
    def load(cls, name: str, version: int, run_dir: str) -> Served:
        run = load_run(run_dir)
        schema = InputSchema(run)
        return cls(name, version, run, schema, DriftMonitor(schema))

    def card(self) -> dict[str, Any]:
        r, m = self.run, self.run.metrics.data
        sel = m["selected_model"]
        return {"name": self.name, "version": self.version, "run": str(r.path), "study": r.config.get("name"),
                "task": {"kind": r.task.kind, "labels": list(r.task.label_columns),
                         "classes": [str(c) for c in getattr(r.task, "classes", []) or []]},
                "model": sel, "threshold": m["models"][sel].get("threshold"),
                "intended_use": r.config.get("intended_use") or "", "synthetic": r.synthetic,
                "training_data": r.manifest.get("data", {}), "splits": r.manifest.get("splits", []),
                "metrics": {k: {"value": _num(v["value"]), "low": _num(v["low"]), "high": _num(v["high"])}
                            for k, v in m["models"][sel]["metrics"].items()},
                "input_schema": self.schema.describe()}


class Service:
    """The served models (live versions from the registry), the store and the guards."""

    def __init__(self, store: Store, config: ServiceConfig) -> None:
        self.store, self.config = store, config
        self.metrics = ServiceMetrics()
        self.limiter = RateLimiter(config.rate_per_minute, config.rate_burst)
        self.models: dict[str, Served] = {}
        # predictions run on a few dedicated threads: Python work under one GIL gains nothing from 40 threads
        # taking turns, and queueing keeps p99 latency flat as clients are added (benchmarks/README.md (i))
        import torch

        self.executor = ThreadPoolExecutor(max_workers=max(1, config.predict_threads),
                                           thread_name_prefix="medflow-predict", initializer=torch.set_num_threads,
                                           initargs=(torch.get_num_threads(),))
        # OpenMP's thread count is per calling thread: a new thread would take the machine's default, and its
        # idle OpenMP team spins on a core between predictions (measured: a full core, docs/service.md)
        self.refresh()
        if not self.models:
            raise MedflowError("nothing to serve: give run directories (`medflow serve RUN_DIR`) or promote a "
                               "version (`medflow registry add NAME RUN_DIR`, then `medflow registry promote NAME`).")

    async def call(self, fn: Any, *args: Any) -> Any:
        """Run `fn(*args)` on the prediction threads; the event loop keeps accepting requests meanwhile."""
        import asyncio
        import functools

        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args))

    def refresh(self) -> list[str]:
        """Load any newly promoted version; the swap is one assignment, so in-flight requests finish on the
        version they started with. Returns the names that changed."""
        live = self.store.live_versions()
        changed = []
        for name, v in live.items():
            if self.config.names and name not in self.config.names:
                continue
            cur = self.models.get(name)
            if cur is None or cur.version != v["version"]:
                new = Served.load(name, v["version"], v["run_dir"])
                if new.schema.kind == "table":
                    from medflow.serve.batching import Batcher

                    new.batcher = Batcher(new, predict_payload, self.finish, self.executor,
                                          offload_finish=not self.store.local)
                self.models[name] = new
                if cur is not None and cur.batcher is not None:
                    cur.batcher.close()  # after the requests already queued on the old version are answered
                changed.append(name)
        return changed

    def save_monitoring(self) -> None:
        """Persist each served model's drift counts into its run directory (for the report's section)."""
        for s in list(self.models.values()):
            if s.schema.kind != "table":
                continue
            try:
                s.monitor.save(s.run.path, s.name, s.version)
            except OSError as e:  # a read-only run folder: monitoring stays available over HTTP
                if not getattr(s, "_save_warned", False):
                    import warnings

                    warnings.warn(f"{s.run.path}: cannot save drift counts ({e}); /monitoring still answers",
                                  stacklevel=2)
                    s._save_warned = True

    def finish(self, served: Served, parts: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> list[Any]:
        """Audit a batch of answered requests in one transaction (committed before any is released), count
        them, and build their responses."""
        now = time.perf_counter()
        outputs = [dumps(results, strict=True) for _, results in parts]  # once: the audit row and the response
        rows = [audit_row(m["request_id"], m["key"], "predict", served, m["body"], results, now - m["start"],
                          self.config.store_inputs, len(results), output)
                for (m, results), output in zip(parts, outputs, strict=True)]
        self.store.audit(rows)
        self.metrics.batches.labels(served.name).observe(len(parts))
        self.metrics.records.labels(served.name, str(served.version)).inc(sum(len(r) for _, r in parts))
        out = []
        about = dumps({"model": served.name, "version": served.version, "synthetic": served.run.synthetic,
                       "task": served.run.task.kind}, strict=True)[1:-1]  # the same for the whole batch
        for (m, _), row, output in zip(parts, rows, outputs, strict=True):
            self.metrics.observe("predict", served.name, 200, row["latency_ms"] / 1000)
            # request ids are hex digits: nothing to escape
            out.append(Response(f'{{"request_id":"{m["request_id"]}",{about},"predictions":{output}}}',
                                media_type="application/json"))
        return out


def predict_payload(served: Served, inputs: Any, explain: bool) -> list[dict[str, Any]]:
    """`Run.predict_rows` on validated records (or a patient's events), as JSON-ready results: the prediction,
    the decision, out-of-range flags and the explanation."""
    import warnings

    run = served.run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unseen categories, extrapolated horizons: flagged in the response instead
        if served.schema.kind in ("events", "multimodal"):
            if served.schema.kind == "events":
                from medflow.serve.events import events_dataset, request_subject_ids

                out = request_subject_ids(run.predict(events_dataset(run, inputs), explain=explain), inputs)
            else:  # one patient's joined record; named by the request's patient id
                out = run.predict(inputs, explain=explain)
                out[out.columns[0]] = inputs.meta["request_patient"]
            results = json_rows({c: out[c] for c in out.columns if c != "survival_curve"}, len(out))
            flags: list[list[str]] = [[] for _ in results]
        else:
            results = run.predict_rows(inputs, explain=explain, source="request")
            flags = served.schema.out_of_range(inputs)
            if served.schema.kind == "table":  # drift counts per feature; a SMILES is not a feature to bin
                served.monitor.observe(inputs)
    decide = _decider(run)
    for item, flag in zip(results, flags, strict=True):
        item.pop("survival_curve", None)  # S(t) at the horizons is what a clinician reads; the curve stays in Python
        item["decision"] = decide(item)
        item["out_of_training_range"] = flag
    return results


def _decider(run: Run) -> Any:
    """The decision for one result item: the label at the run's threshold (binary), the recommendation
    (treatment effects), or the prediction."""
    kind = run.task.kind
    if kind == "binary":
        classes = run.task.classes
        positive, rule = str(classes[1]), f"{classes[1]} when probability >= threshold (chosen on validation)"
        return lambda item: {"label": item["prediction"], "positive": str(item["prediction"]) == positive,
                             "threshold": item.get("threshold"), "rule": rule}
    if kind == "treatment_effect":
        return lambda item: {"label": item.get("recommendation"), "benefit": item.get("benefit")}
    return lambda item: {"label": item.get("prediction")}


def _num(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def slug(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-.") or "model"


def audit_row(request_id: str, key: str, endpoint: str, served: Served, body: bytes, results: Any,
              latency: float, store_inputs: bool, n: int, output: str | None = None) -> dict[str, Any]:
    """One audit row; `output` is the results' JSON when the caller has it already."""
    return {"request_id": request_id, "time": datetime.now(UTC), "key_name": key, "endpoint": endpoint,
            "model": served.name, "version": served.version, "run_dir": str(served.run.path),
            "input_hash": hashlib.sha256(body).hexdigest(), "n_records": n,
            "output": dumps(results) if output is None else output,
            "latency_ms": latency * 1000, "input": body.decode("utf-8", "replace") if store_inputs else None}


def error(status: int, message: str, problems: list[dict[str, str]] | None = None,
          headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "problems": problems or []}, status_code=status, headers=headers)


def _new_id_source() -> None:
    global _IDS
    _IDS = (uuid.uuid4().hex[:20], itertools.count())


_IDS: tuple[str, Any] = ("", None)
_new_id_source()
os.register_at_fork(after_in_child=_new_id_source)  # a forked worker gets a prefix of its own


def new_request_id() -> str:
    """A unique request id (32 hex digits): a per-process random prefix and a counter (no urandom per request)."""
    return f"{_IDS[0]}{next(_IDS[1]):012x}"


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(f"the body is not valid JSON ({e})", [{"field": "body", "problem": "malformed JSON"}],
                           status=400) from None


def page() -> HTMLResponse:
    return HTMLResponse((Path(__file__).parent / "page.html").read_text())


def prometheus(service: Service) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

