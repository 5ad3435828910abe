"""`medflow serve`, `keys`, `registry`, `audit` and `export`: the decision-support service's commands."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medflow.cli.show import err, out
from medflow.errors import ConfigError

DB_HELP = ("the service database: a SQLite file path or URL (default sqlite:///medflow-service.db), or "
           "postgresql://user:password@host:port/db; also read from $MEDFLOW_DB")
Db = Annotated[str | None, typer.Option("--db", envvar="MEDFLOW_DB", help=DB_HELP)]

keys_app = typer.Typer(no_args_is_help=True, help="API keys for the service (only their hashes are stored).")
registry_app = typer.Typer(no_args_is_help=True, help="Model versions the service serves: add, promote, roll back.")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.add_typer(registry_app, name="registry")

    @app.command()
    def serve(runs: Annotated[list[Path] | None, typer.Argument(help="run directories to serve (default: the "
                                                                       "registry's promoted versions)")] = None,
              host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
              port: Annotated[int, typer.Option(help="port")] = 8000,
              db: Db = None,
              name: Annotated[list[str] | None, typer.Option(help="a name per run (default: its study name)")] = None,
              store_inputs: Annotated[bool, typer.Option(help="keep raw inputs in the audit trail (default: "
                                                              "only their SHA-256)")] = False,
              max_body: Annotated[int, typer.Option(help="largest request body in bytes (413 above)")] = 1_000_000,
              rate: Annotated[float, typer.Option(help="requests per minute per key (429 above); 0 = no limit")]
              = 6000.0,
              workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1) -> None:
        """Serve finished runs over REST and CDS Hooks, with a page for clinicians at /."""
        import os

        # one request, one core: concurrency comes from requests, not from intra-op threads (Polars reads its
        # setting when first imported, which is below)
        os.environ.setdefault("POLARS_MAX_THREADS", "1")
        import torch
        import uvicorn

        from medflow.serve import ServiceConfig, create_app

        torch.set_num_threads(1)
        config = ServiceConfig(db=db, store_inputs=store_inputs, max_body_bytes=max_body, rate_per_minute=rate)
        app_ = create_app([str(r) for r in runs or []], config, names=name)
        served = app_.state.service.models
        err.print(f"serving {', '.join(f'{n} v{s.version}' for n, s in served.items())} at http://{host}:{port}/ "
                  f"(audit: {app_.state.service.store.safe_url})"
                  + (f" with {workers} worker processes" if workers > 1 else ""), soft_wrap=True, highlight=False)
        if workers > 1:  # each worker builds its own app from the registry the runs were just promoted in
            import dataclasses
            import json
            import os

            from medflow.serve.app import ENV

            os.environ[ENV] = json.dumps(dataclasses.asdict(config) | {"names": sorted(served)})
            # one OpenMP thread per worker, read by each worker's OpenMP runtime as it loads: otherwise a torch
            # OpenMP thread per worker spins between batches (measured: 2 workers at 32 connections 1,300 ->
            # 5,000+ requests/s, benchmarks/README.md (i))
            os.environ.setdefault("OMP_NUM_THREADS", "1")
            uvicorn.run("medflow.serve.app:app_from_env", factory=True, host=host, port=port, log_level="warning",
                        workers=workers)
            return
        uvicorn.run(app_, host=host, port=port, log_level="warning")

    @keys_app.command("create")
    def keys_create(name: Annotated[str, typer.Option(help="who the key is for, e.g. ward7")], db: Db = None) -> None:
        """Create a key and print it once; only its hash is stored."""
        from medflow.serve.store import Store

        key = Store(db).create_key(name)
        out.print(key, soft_wrap=True, highlight=False)
        err.print(f"key '{name}' created; it is shown only now. Send it as `Authorization: Bearer KEY`.")

    @keys_app.command("revoke")
    def keys_revoke(name: Annotated[str, typer.Argument(help="the key's name")], db: Db = None) -> None:
        """Revoke a key: requests with it get 401 from now on."""
        from medflow.serve.store import Store

        Store(db).revoke_key(name)
        err.print(f"key '{name}' revoked.")

    @keys_app.command("list")
    def keys_list(db: Db = None) -> None:
        """Key names, when they were created and revoked (never the keys)."""
        from medflow.serve.store import Store

        table = Table("name", "created", "revoked")
        for k in Store(db).list_keys():
            table.add_row(k["name"], k["created"], k["revoked"] or "")
        out.print(table)

    @registry_app.command("add")
    def registry_add(name: Annotated[str, typer.Argument(help="the served model's name")],
                     run_dir: Annotated[Path, typer.Argument(help="a finished run directory")], db: Db = None,
                     promote: Annotated[bool, typer.Option(help="serve it at once")] = False) -> None:
        """Add a run as the next version of NAME (served once promoted)."""
        from medflow.runs import load_run
        from medflow.serve.store import Store

        run = load_run(run_dir)  # refuses incomplete runs
        store = Store(db)
        version = store.add_version(name, str(run.path.resolve()))
        if promote:
            store.promote(name, version)
        err.print(f"{name} v{version} <- {run.path}" + (" (promoted)" if promote else
                                                         f"; serve it with `medflow registry promote {name}`"))

    @registry_app.command("promote")
    def registry_promote(name: Annotated[str, typer.Argument(help="the served model's name")],
                         version: Annotated[int | None, typer.Option(help="default: the newest")] = None,
                         db: Db = None) -> None:
        """Serve VERSION of NAME; a running service picks it up within a second, finishing in-flight requests
        on the old one."""
        from medflow.serve.store import Store

        err.print(f"{name}: v{Store(db).promote(name, version)} is live.")

    @registry_app.command("rollback")
    def registry_rollback(name: Annotated[str, typer.Argument(help="the served model's name")], db: Db = None) -> None:
        """Serve again the version that was live before the current one."""
        from medflow.serve.store import Store

        err.print(f"{name}: rolled back; v{Store(db).rollback(name)} is live.")

    @registry_app.command("list")
    def registry_list(db: Db = None) -> None:
        """Every version of every name, and which is live."""
        from medflow.serve.store import Store

        table = Table("name", "version", "live", "run", "added", "promoted")
        for v in Store(db).versions():
            table.add_row(v["name"], str(v["version"]), "*" if v["live"] else "", v["run_dir"], v["added"],
                          v["promoted"] or "")
        out.print(table)

    @app.command()
    def export(run_dir: Annotated[Path, typer.Argument(help="a finished run directory")],
               onnx: Annotated[bool, typer.Option("--onnx", help="export to ONNX (the one format for now)")] = False,
               model: Annotated[str | None, typer.Option(help="default: the run's selected model")] = None,
               output: Annotated[Path | None, typer.Option("-o", "--output", help="a new folder (default: "
                                                                                  "RUN_DIR/onnx/MODEL)")] = None,
               check: Annotated[bool, typer.Option(help="compare ONNX Runtime with PyTorch on the run's own "
                                                        "test records")] = True) -> None:
        """Export a deep tabular model to ONNX with its preprocessing (ONNX Runtime reproduces Run.predict)."""
        from medflow.export import export_onnx

        if not onnx:
            raise ConfigError("say which format: --onnx (the one export format for now).")
        folder = export_onnx(run_dir, model, output)
        err.print(f"ONNX export -> {folder}", soft_wrap=True, highlight=False)
        if check:
            from medflow.export import compare_with_run

            diff, n = compare_with_run(folder)
            err.print(f"ONNX Runtime vs PyTorch on {n} records: largest difference {diff:.2e}")

    @app.command()
    def audit(db: Db = None,
              since: Annotated[str | None, typer.Option(help="ISO date or time, e.g. 2026-11-01")] = None,
              model: Annotated[str | None, typer.Option(help="one served model's name")] = None,
              output: Annotated[Path | None, typer.Option("-o", "--output", help=".csv, .parquet or .jsonl "
                                                                                 "(default: a table here)")] = None
              ) -> None:
        """Export the audit trail: one row per prediction request."""
        import pandas as pd

        from medflow.serve.store import Store

        start = None
        if since:
            try:
                start = datetime.fromisoformat(since)
            except ValueError:
                raise ConfigError(f"--since {since!r}: give an ISO date or time such as 2026-11-01 or "
                                  "2026-11-01T08:00") from None
            start = start if start.tzinfo else start.replace(tzinfo=UTC)
        rows = pd.DataFrame(Store(db).audit_rows(start, model))
        if output is None:
            table = Table("time", "key", "model", "version", "records", "latency ms", "input sha256")
            for r in rows.tail(50).to_dict(orient="records"):
                table.add_row(r["time"], r["key_name"], r["model"], str(r["version"]), str(r["n_records"]),
                              f"{r['latency_ms']:.1f}", r["input_hash"][:16])
            table.caption = f"{len(rows)} request(s); last 50 shown; -o FILE exports all"
            out.print(table)
            return
        from medflow.artifacts import write_parquet, write_text

        suffix = output.suffix.lower()
        if suffix in (".parquet", ".pq"):
            write_parquet(output, rows)
        elif suffix in (".jsonl", ".ndjson"):
            write_text(output, rows.to_json(orient="records", lines=True))
        elif suffix == ".csv":
            write_text(output, rows.to_csv(index=False))
        else:
            raise ConfigError(f"-o {output}: give a .csv, .parquet or .jsonl file.")
        err.print(f"{len(rows)} audit row(s) -> {output}")
