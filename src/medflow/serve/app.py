"""The decision-support service: finished runs served over REST (FastAPI), a thin layer over `Run.predict`.

The service never trains and never re-implements prediction: it validates a request against the run's input
schema, calls `Run.predict`, and adds what a hospital needs around it (keys, rate limits, an audit row per
prediction committed before the response, Prometheus metrics, model versions picked up on promotion, drift
monitoring, CDS Hooks cards and a page for clinicians). Design notes: docs/service.md.
"""

from __future__ import annotations

import asyncio
import gc
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from medflow.errors import MedflowError
from medflow.runs import load_run
from medflow.serve.guard import BodyLimit
from medflow.serve.routes import add_routes
from medflow.serve.service import Service, ServiceConfig, slug
from medflow.serve.store import Store

__all__ = ["create_app", "register_runs", "serve", "ServiceHandle"]


def create_app(runs: list[str | Path] | None = None, config: ServiceConfig | None = None,
               names: list[str] | None = None) -> FastAPI:
    """The service app for run directories (each added to the registry and promoted when it is not already the
    live version of its name) or, with none, for the registry's live versions."""
    config = config or ServiceConfig()
    store = Store(config.db)
    given = register_runs(store, runs or [], names)
    if given:
        config.names = sorted(set(config.names) | set(given))
    service = Service(store, config)
    @asynccontextmanager
    async def lifespan(app: FastAPI):  # pick up promotions without a restart
        async def poll() -> None:
            last_save = time.monotonic()
            while True:
                await asyncio.sleep(config.poll_seconds)
                try:
                    if await run_in_threadpool(service.refresh):
                        app.openapi_schema = None
                except Exception:  # noqa: BLE001 - a bad promotion must not stop the service; the old one serves
                    pass
                if time.monotonic() - last_save >= config.monitoring_save_seconds:
                    last_save = time.monotonic()
                    await run_in_threadpool(service.save_monitoring)
        task = asyncio.get_running_loop().create_task(poll())
        # the runs, torch and pandas loaded at startup are long-lived: keep them out of the collector's full
        # passes, which otherwise stall every request for tens of milliseconds now and then
        gc.collect()
        gc.freeze()
        # and collect young objects less often: a batch of requests allocates a few thousand short-lived ones,
        # so the default threshold (700) ran a collection per batch (measured: +4% requests/s at 8 connections)
        threshold = gc.get_threshold()
        gc.set_threshold(max(threshold[0], 20_000), *threshold[1:])
        yield
        gc.set_threshold(*threshold)
        task.cancel()
        service.save_monitoring()

    app = FastAPI(title="medflow decision support", version="1", lifespan=lifespan,
                  description="Predictions from validated medflow runs, with explanations, an audit trail and "
                              "drift monitoring. Every endpoint but /health and / needs `Authorization: Bearer KEY`.")
    app.state.service = service
    add_routes(app, service)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    return app


def register_runs(store: Store, runs: list[str | Path], names: list[str] | None = None) -> list[str]:
    """Add each run to the registry under its study name (or `names`) and promote it unless already live."""
    out = []
    live = store.live_versions()
    for i, path in enumerate(runs):
        run = load_run(path)
        name = (names[i] if names and i < len(names) else None) or slug(run.config.get("name") or run.path.parent.name)
        run_dir = str(run.path.resolve())
        known = [v for v in store.versions(name) if v["run_dir"] == run_dir]
        if live.get(name, {}).get("run_dir") != run_dir:
            version = known[-1]["version"] if known else store.add_version(name, run_dir)
            store.promote(name, version)
        out.append(name)
    return out




ENV = "MEDFLOW_SERVE_CONFIG"


def app_from_env() -> FastAPI:
    """The app for each uvicorn worker process (`medflow serve --workers N`): the parent registered the runs and
    passes the names and settings in $MEDFLOW_SERVE_CONFIG."""
    import json
    import os

    import torch

    torch.set_num_threads(1)
    return create_app(None, ServiceConfig(**json.loads(os.environ[ENV])))


class ServiceHandle:
    """A service started by `serve(..., background=True)`: its URL, its app, and `stop()`."""

    def __init__(self, server: Any, thread: Any, url: str, app: FastAPI) -> None:
        self.server, self.thread, self.url, self.app = server, thread, url, app

    @classmethod
    def start(cls, app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> ServiceHandle:
        """Run `app` under uvicorn in a background thread; returns once it accepts connections."""
        import threading

        import uvicorn

        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, name="medflow-serve", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise MedflowError(f"the service did not start on {host}:{port} (is the port in use?)")
            time.sleep(0.02)
        return cls(server, thread, f"http://{host}:{port}", app)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __repr__(self) -> str:
        return f"<medflow service at {self.url}>"


def serve(*runs: Any, host: str = "127.0.0.1", port: int = 8000, background: bool = False,
          names: list[str] | None = None, **config: Any) -> ServiceHandle | None:
    """Serve runs (Run objects or run directories) from Python: `mf.start_service(run)` blocks like
    `medflow serve`; `mf.start_service(run, background=True)` returns a handle (`.url`, `.stop()`) for
    notebooks and tests. Keyword arguments are ServiceConfig fields (db, store_inputs, rate_per_minute, ...)."""
    paths = [getattr(r, "path", r) for r in runs]
    app = create_app(paths, ServiceConfig(**config), names=names)
    if background:
        return ServiceHandle.start(app, host, port)
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning")
    return None
