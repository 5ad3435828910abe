"""The service's commands: keys, registry, audit export and ONNX export, with one-line errors."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from medflow.cli import app
from medflow.serve.store import Store


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_keys_registry_audit_commands(runs_root, tmp_path):
    db = str(tmp_path / "cli.db")
    res = _cli("keys", "create", "--name", "ward7", "--db", db)
    assert res.exit_code == 0, res.output
    key = res.stdout.strip().splitlines()[0]
    assert key.startswith("mf_") and Store(db).key_name(key) == "ward7"
    res = _cli("keys", "create", "--name", "ward7", "--db", db)
    assert res.exit_code == 1 or "exists and is active" in str(res.exception)
    assert "ward7" in _cli("keys", "list", "--db", db).stdout
    assert _cli("keys", "revoke", "ward7", "--db", db).exit_code == 0
    assert Store(db).key_name(key) is None

    assert _cli("registry", "add", "risk", str(runs_root["risk"]), "--db", db, "--promote").exit_code == 0
    assert _cli("registry", "add", "risk", str(runs_root["risk2"]), "--db", db).exit_code == 0
    assert Store(db).live_versions()["risk"]["version"] == 1
    assert _cli("registry", "promote", "risk", "--db", db).exit_code == 0
    assert Store(db).live_versions()["risk"]["version"] == 2
    assert _cli("registry", "rollback", "risk", "--db", db).exit_code == 0
    assert Store(db).live_versions()["risk"]["version"] == 1
    listing = _cli("registry", "list", "--db", db).stdout
    assert "risk" in listing and "*" in listing
    res = _cli("registry", "add", "risk", str(tmp_path / "nope"), "--db", db)
    assert res.exit_code != 0

    from datetime import UTC, datetime
    Store(db).audit([{"request_id": "r1", "time": datetime.now(UTC), "key_name": "ward7", "endpoint": "predict",
                      "model": "risk", "version": 1, "run_dir": "/r", "input_hash": "0" * 64, "n_records": 2,
                      "output": "[]", "latency_ms": 3.5, "input": None}])
    out = tmp_path / "audit.csv"
    assert _cli("audit", "--db", db, "--since", "2020-01-01", "-o", str(out)).exit_code == 0
    frame = pd.read_csv(out)
    assert frame["request_id"].tolist() == ["r1"] and frame["n_records"].tolist() == [2]
    assert "r1" not in _cli("audit", "--db", db, "--since", "2999-01-01").stdout
    res = _cli("audit", "--db", db, "--since", "last week")
    assert res.exit_code != 0 and "ISO date" in str(res.exception or res.output)


def test_export_command(runs_root, tmp_path):
    res = _cli("export", str(runs_root["risk"]), "--onnx", "--model", "mlp", "-o", str(tmp_path / "o"))
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "export.json").exists()
    res = _cli("export", str(runs_root["risk"]), "--model", "mlp")
    assert res.exit_code != 0 and "--onnx" in str(res.exception or res.output)
