"""Tiny in-memory data for fast tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medflow.train.trainer import TrainConfig


def make_frame(n: int = 200, seed: int = 0, kind: str = "binary", rows_per_patient: int = 1) -> pd.DataFrame:
    """Records whose label depends on x1 and the category; a few missing values."""
    rng = np.random.default_rng(seed)
    n_pat = n // rows_per_patient
    pid = np.repeat([f"p{i:04d}" for i in range(n_pat)], rows_per_patient)
    x1 = rng.normal(size=len(pid))
    x2 = rng.normal(size=len(pid))
    cat = rng.choice(["a", "b", "c"], size=len(pid))
    z = 2.0 * x1 + (cat == "a") * 1.5 - 0.5
    frame = pd.DataFrame({"pid": pid, "x1": x1, "x2": x2, "cat": cat,
                          "sex": rng.choice(["F", "M"], size=len(pid))})
    if kind == "binary":
        frame["y"] = (rng.random(len(pid)) < 1 / (1 + np.exp(-2 * z))).astype(int)
    elif kind == "multiclass":
        frame["y"] = np.digitize(z + rng.normal(scale=0.3, size=len(pid)), [-0.5, 1.0]).astype(int)
        frame["y"] = frame["y"].map({0: "low", 1: "mid", 2: "high"})
    elif kind == "survival":  # proportional hazards with log-hazard z, uniform censoring
        t = rng.exponential(100 * np.exp(-z))
        c = rng.uniform(0, 250, size=len(pid))
        frame["time"], frame["event"] = np.minimum(t, c).round(2) + 0.01, (t <= c).astype(int)
    elif kind == "treatment_effect":  # confounded by x1, effect grows with x1 (true effect in "tau")
        frame["t"] = (rng.random(len(pid)) < 1 / (1 + np.exp(-0.8 * x1))).astype(int)
        frame["tau"] = 3 + 3 * x1
        frame["y"] = 10 + 2 * z + frame["t"] * frame["tau"] + rng.normal(scale=0.5, size=len(pid))
    else:
        frame["y"] = 10 + 3 * z + rng.normal(scale=0.5, size=len(pid))
    frame.loc[rng.choice(len(frame), 5, replace=False), "x2"] = np.nan
    return frame


@pytest.fixture
def binary_frame() -> pd.DataFrame:
    return make_frame(kind="binary")


@pytest.fixture
def fast_train() -> TrainConfig:
    return TrainConfig(max_epochs=15, patience=5, batch_size=32, progress=False)


def make_events(n: int = 240, seed: int = 0, kind: str = "binary", plant_after: bool = False):
    """EventData + samples: the label depends on how often code SIG occurs before the prediction time.

    With `plant_after=True` a perfectly predictive code LEAK is added one hour *after* each positive
    sample's prediction time (and never before it): a leak-free featurizer must not let a model use it.
    """
    import polars as pl

    from medflow.data.sources.meds import EventData

    rng = np.random.default_rng(seed)
    day = 86_400_000_000
    rows = {"subject_id": [], "time": [], "code": [], "numeric_value": []}
    pts, ys = [], []
    for s in range(n):
        n_sig = rng.integers(0, 3)
        m = int(rng.integers(3, 12))
        t = 1_600_000_000_000_000 + np.sort(rng.integers(0, 300, m + n_sig)) * day
        codes = list(rng.choice(["A", "B", "C", "LAB//K"], m)) + ["SIG"] * n_sig
        rng.shuffle(codes)
        rows["subject_id"] += [s] * (len(t) + 1)
        rows["time"] += [None] + t.tolist()
        rows["code"] += ["GENDER//" + ("F" if s % 2 else "M")] + codes
        rows["numeric_value"] += [None] + [float(rng.normal(4, 1)) if c == "LAB//K" else None for c in codes]
        pt = int(t[-1]) + day
        if kind == "binary":
            y = int(n_sig > 0) if not plant_after else int(rng.random() < 0.5)
        elif kind == "multiclass":
            y = ["none", "one", "two"][int(n_sig)]
        else:
            y = float(n_sig) + rng.normal(0, 0.1)
        if plant_after and y == 1:
            rows["subject_id"].append(s)
            rows["time"].append(pt + 3_600_000_000)
            rows["code"].append("LEAK")
            rows["numeric_value"].append(None)
        pts.append(pt)
        ys.append(y)
    ev = pl.DataFrame(rows, schema={"subject_id": pl.Int64, "time": pl.Int64, "code": pl.String,
                                    "numeric_value": pl.Float32})
    ev = ev.with_columns(pl.col("time").cast(pl.Datetime("us"))).sort(["subject_id", "time"], nulls_last=False)
    samples = pl.DataFrame({"subject_id": np.arange(n, dtype=np.int64), "prediction_time": pts, "y": ys}).with_columns(
        pl.col("prediction_time").cast(pl.Datetime("us")))
    return EventData(events=ev, source="test-events"), samples


def make_images(frame: pd.DataFrame, size: int = 32, dims: int = 2, seed: int = 0):
    """An ImageData whose images encode make_frame's signal: a central blob of brightness x1 and a corner blob
    when cat == 'a' (the label depends on both), plus noise. One image per row, id = row number."""
    from medflow.data.images import ImageData

    rng = np.random.default_rng(seed)
    q = size // 4
    centre = (slice(None),) + (slice(q + q // 2, 2 * q + q // 2),) * dims
    corner = (slice(None),) + (slice(0, q),) * dims
    arrays = {}
    for i, (x1, cat) in enumerate(zip(frame["x1"], frame["cat"], strict=True)):
        img = rng.normal(0, 0.5, (1,) + (size,) * dims).astype(np.float32)
        img[centre] += x1
        img[corner] += 1.5 * (cat == "a")
        arrays[str(i)] = img
    return ImageData(arrays, "memory:test-images")


def make_shapes(n: int = 240, size: int = 32, seed: int = 0):
    """Images with a bright square (label 1) and a dimmer disc (label 2) at random places, masks known."""
    from medflow.data.images import ImageData

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    arrays, masks = {}, {}
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        a, b = rng.integers(2, size - 10, 2)
        mask[a:a + 8, b:b + 8] = 1
        c, d = rng.integers(5, size - 5, 2)
        mask[((yy - c) ** 2 + (xx - d) ** 2 <= 16) & (mask == 0)] = 2
        img = rng.normal(0, 0.3, (1, size, size)).astype(np.float32) + np.where(mask == 1, 1.5, 0) + (mask == 2)
        arrays[str(i)], masks[str(i)] = img.astype(np.float32), mask
    return ImageData(arrays, "memory:test-shapes", masks=masks)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def start_postgres():
    """A PostgreSQL cluster in a temporary folder on loopback (Debian's server binaries; `make test` installs
    them), torn down on exit; yields its URL. Fails, never skips, when the server cannot start."""
    bindir = next((p for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)
    assert bindir is not None, "PostgreSQL server binaries not found: `apt-get install -y postgresql` (make test does)"
    data = Path(tempfile.mkdtemp(prefix="medflow-pg-"))
    port = _free_port()
    as_root = os.geteuid() == 0
    if as_root:
        shutil.chown(data, "postgres", "postgres")
    data.chmod(0o700)

    def pg(*args: str) -> None:
        cmd = [str(bindir / args[0]), *args[1:]]
        if as_root:
            cmd = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in cmd)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    pg("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
    pg("pg_ctl", "-D", str(data), "-l", str(data / "server.log"), "-w", "start", "-o",
       f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={data} -c fsync=off")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        pg("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL 15 cluster for the session (`start_postgres`)."""
    with start_postgres() as url:
        yield url


def run_cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    """`medflow ARGS` run in this process through the console script's own entry point (`medflow.cli.main`: its
    one-line errors and exit codes), in `cwd`, with stdout and stderr captured: what a subprocess would give,
    without paying the 5 s of imports a fresh Python process pays. Tests of process behaviour (a kill, a resume
    in another process, signals) keep a real subprocess."""
    import contextlib
    import io
    import sys

    from medflow.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv, here = sys.argv, os.getcwd()
    code = 0
    try:
        os.chdir(cwd)
        sys.argv = ["medflow", *map(str, args)]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
        os.chdir(here)
    return subprocess.CompletedProcess(["medflow", *map(str, args)], code, out.getvalue(), err.getvalue())


_TINY_BERT: dict[str, str] = {}


def tiny_checkpoint() -> str:
    """A tiny BERT (hidden 32, 2 layers, random weights) with a WordPiece tokenizer trained on 2,000 real IU chest
    X-ray reports, saved as a Hugging Face folder once per test process: what `hf_classifier` reads, built here so
    nothing is downloaded. Not a pretrained clinical model."""
    if "path" not in _TINY_BERT:
        import medflow as mf
        from medflow.models.hf import small_bert

        texts = mf.datasets.load("iu_reports").frame["text"].astype(str).tolist()[:2000]
        folder = Path(tempfile.mkdtemp(prefix="tiny_bert_"))
        _TINY_BERT["path"] = str(small_bert(folder, texts, hidden=32, layers=2, heads=2, vocab_size=2000))
    return _TINY_BERT["path"]
