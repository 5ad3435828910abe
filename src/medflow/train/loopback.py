"""Federated training as separate processes on this machine (`medflow federate --deployment loopback`): a Flower
SuperLink, one SuperNode per site, and `flwr run` of medflow's Flower app (`federate/flower_app.py`).

Every process talks to the others only through the SuperLink's HTTP API on 127.0.0.1 (no TLS on loopback,
`--insecure`); each SuperNode's ClientApp reads its own site file and nothing else; weights, losses, record
counts and featurizer summaries are all that travel. Nothing is installed at run time
(`--disable-runtime-dependency-installation`): the app's code is medflow itself, from this environment. Flower's
CLI configuration goes to a private `FLWR_HOME` under the work folder, never to the user's `~/.flwr`. Every
process is stopped when training ends or fails; their logs stay in the work folder and a failure names them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from medflow.errors import ConfigError, MedflowError
from medflow.train.federated import FederatedResult

__all__ = ["loopback_fit"]

_PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "medflow-federated"
version = "1.0.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "medflow"

[tool.flwr.app.components]
serverapp = "medflow.federate.flower_app:server_app"
clientapp = "medflow.federate.flower_app:client_app_deployed"

[tool.flwr.app.config]
plan = "{plan}"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        raise ConfigError(f"--deployment loopback needs Flower's '{name}' command (pip install flwr).")
    return found


def _wait_port(port: int, proc: subprocess.Popen, log: Path, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MedflowError(f"the {what} stopped at start (exit {proc.returncode}); see {log}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise MedflowError(f"the {what} did not open 127.0.0.1:{port} within {timeout:.0f} s; see {log}")


def loopback_fit(module: Any, loss_fn: Any, sites: list, train: Any, fed: Any, seed: int, progress: Any = None, *,
                 plan: dict[str, Any], workdir: Path, timeout_s: float = 3600.0) -> FederatedResult:
    """Run the plan's federated training as a SuperLink, one SuperNode per site and `flwr run`; returns the
    best round's weights and the history, as `federated_fit` does in one process (same signature, so
    `DeepEstimator.fit_federated` takes either). `module`, `loss_fn` and `sites` are the launcher's and unused:
    each process builds its own from the plan."""
    workdir = Path(workdir).resolve()
    (workdir / "app").mkdir(parents=True, exist_ok=True)
    home = workdir / "flwr_home"
    home.mkdir(exist_ok=True)
    out = workdir / "result.pt"
    plan = {**plan, "out": str(out)}
    plan_path = workdir / "plan.json"
    plan_path.write_text(json.dumps(plan, default=str))
    (workdir / "app" / "pyproject.toml").write_text(_PYPROJECT.format(plan=plan_path.as_posix()))
    link = _free_port()
    (home / "config.toml").write_text(f'[superlink]\ndefault = "loop"\n\n[superlink.loop]\n'
                                      f'address = "127.0.0.1:{link}"\ninsecure = true\n')
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_DISABLE_UPDATE_CHECK": "1",
           # Flower's processes start each other by name (flower-superexec, flwr-serverapp, flwr-clientapp)
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).resolve().parents[2]),
                                                      os.environ.get("PYTHONPATH", "")] if p)}
    procs: list[tuple[subprocess.Popen, Any]] = []

    def spawn(args: list[str], log: Path) -> subprocess.Popen:
        fh = open(log, "w")  # noqa: SIM115  (closed with the process below)
        proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        procs.append((proc, fh))
        return proc

    try:
        log = workdir / "superlink.log"
        proc = spawn([_tool("flower-superlink"), "--insecure", "--database", ":flwr-in-memory:", "--port", str(link),
                      "--disable-runtime-dependency-installation"], log)
        _wait_port(link, proc, log, "SuperLink")
        for site in plan["sites"]:
            spawn([_tool("flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{link}",
                   "--port", str(_free_port()), "--node-config", f"site='{site['name']}'"],
                  workdir / f"supernode_{site['name']}.log")
        run_log = workdir / "flwr_run.log"
        with open(run_log, "w") as fh:
            done = subprocess.run([_tool("flwr"), "run", str(workdir / "app"), "loop", "--stream"], stdout=fh,
                                  stderr=subprocess.STDOUT, env=env, cwd=workdir, timeout=timeout_s)
        if done.returncode != 0 or not out.exists():
            raise MedflowError(f"federated training over loopback failed (flwr run exit {done.returncode}); see "
                               f"{run_log}, {workdir / 'superlink.log'} and the supernode logs in {workdir}")
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, fh in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            fh.close()
    result = torch.load(out, weights_only=False)
    expected = plan.get("launcher_featurizer")
    same = json.dumps(result["featurizer"], sort_keys=True) == json.dumps(expected, sort_keys=True)
    if expected is not None and not same:
        raise MedflowError("the featurizer the Flower server merged from the sites' summaries differs from the one "
                           f"merged here from the same files; see {workdir}")
    for leftover in (out, home):  # the weights are returned; Flower's CLI state is not needed; logs stay
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    return FederatedResult(result["state"], result["best_round"], result["history"], result["privacy"])
