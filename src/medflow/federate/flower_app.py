"""Flower's ServerApp and ClientApp for federated training as separate processes (`medflow federate --deployment
loopback`, `train/loopback.py`): a SuperLink, one SuperNode per site, and `flwr run` of this app.

The ClientApp is `train.federated.client_app`, the one the in-process simulation runs; only where a site's state
lives differs. A SuperNode runs every message in a fresh process, so a site rebuilds its tensors from its own
file (`node_config["site"]` names it in the run's plan; no other process reads it), and its optimizer, schedule,
batch generator and DP-SGD ledger travel between rounds in Flower's `context.state` (the Trainer's own
checkpoint, as bytes). Before training, a `query` round asks each site for its featurizer summary (means, sds,
medians, categories of its training rows) and the width of its inputs; the ServerApp merges the summaries into
one featurizer (exactly the pooled fit, `TabularFeaturizer.merge`) and sends it with every training message.
The ServerApp then runs the same strategy loop (`train.federated.start`: Flower's FedAvg / FedProx) and writes
the best round's weights, the history and the merged featurizer to the plan's `out` file for the launcher.

The plan (`plan.json`, written by the launcher): the resolved study, the model entry, the task's fitted state
(classes, target scale), the federated options, the seed, the sites (name, file) and the output path.
"""

from __future__ import annotations

import io
import json
import time
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import ServerApp

from medflow.errors import MedflowError
from medflow.train.federated import LocalSite, Recorder, check_federated, client_app, start

__all__ = ["server_app", "client_app_deployed", "read_plan"]


@cache
def read_plan(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _plan(context: Any) -> dict[str, Any]:
    return read_plan(str(context.run_config["plan"]))


@cache
def _site_data(plan_path: str, name: str) -> tuple[Any, Any, Any, Any]:
    """A site's study config, its rows (read from its own file only), its patient split and the task."""
    from medflow.config import parse_config
    from medflow.federate import read_sites, site_fold
    from medflow.runs import task_from_dict

    plan = read_plan(plan_path)
    cfg = parse_config(plan["study"])
    path = next(s["path"] for s in plan["sites"] if s["name"] == name)
    ds = read_sites(cfg, [path])
    return cfg, ds, site_fold(ds, cfg, np.arange(len(ds.frame))), task_from_dict(plan["task"])


def _fed(plan: dict[str, Any]) -> Any:
    from medflow.federate import FederateConfig

    return FederateConfig(**plan["federated"])


def _estimator(plan: dict[str, Any], task: Any) -> Any:
    from medflow.models.base import build_estimator

    est = build_estimator(plan["model"]["name"], plan["model"]["params"], task)
    est.head = est._make_head()
    return est


def _local(context: Any, msg: Message) -> LocalSite:
    """The site this SuperNode holds, its tensors rebuilt with the server's merged featurizer and its training
    state restored from `context.state`."""
    from medflow.features import encode_targets, featurize, featurizer_from_dict

    plan = _plan(context)
    name = str(context.node_config["site"])
    cfg, ds, fold, task = _site_data(str(context.run_config["plan"]), name)
    feat = featurizer_from_dict(json.loads(str(msg.content["config"]["featurizer"])))
    x, y = featurize(feat, ds, ds.frame), encode_targets(feat, task, ds, ds.frame)
    est = _estimator(plan, task)
    site = est.site(name, x[fold.train], y[fold.train], x[fold.early_stopping], y[fold.early_stopping])
    index = [s["name"] for s in plan["sites"]].index(name)
    local = LocalSite(site, est.build_module(site.x_train.shape[1]), est.head.loss,
                      check_federated(cfg.train, _fed(plan)), plan["seed"] + 1000 * index)
    if "medflow" in context.state:
        raw = context.state["medflow"]["trainer"]
        local.trainer.load_state_dict(torch.load(io.BytesIO(raw), weights_only=False))
    return local


def _keep(context: Any, local: LocalSite) -> None:
    buf = io.BytesIO()
    torch.save(local.trainer.state_dict(), buf)
    context.state["medflow"] = ConfigRecord({"trainer": buf.getvalue()})


client_app_deployed = client_app(_local, _keep)


@client_app_deployed.query()
def summary(msg: Message, context: Any) -> Message:
    """The site's featurizer summary from its own training rows, and the width of its inputs."""
    from medflow.features import featurize, make_featurizer

    name = str(context.node_config["site"])
    cfg, ds, fold, task = _site_data(str(context.run_config["plan"]), name)
    from medflow.study import feature_columns

    feat = make_featurizer(ds, feature_columns(ds, cfg), ds.frame.iloc[fold.train], cfg.data)
    est = _estimator(_plan(context), task)
    width = int(est.inputs(featurize(feat, ds, ds.frame.iloc[fold.train[:1]])).shape[1])
    reply = ConfigRecord({"site": name, "featurizer": json.dumps(feat.to_dict()), "n": len(fold.train),
                          "in_dim": width})
    return Message(RecordDict({"summary": reply}), reply_to=msg)


server_app = ServerApp()


@server_app.main()
def main(grid: Any, context: Any) -> None:
    from medflow.artifacts import atomic_write_bytes
    from medflow.config import parse_config
    from medflow.features import featurizer_from_dict, featurizers
    from medflow.runs import task_from_dict

    plan = _plan(context)
    cfg, n = parse_config(plan["study"]), len(plan["sites"])
    fed = _fed(plan)
    deadline = time.monotonic() + float(plan.get("wait_s", 120))
    while len(nodes := list(grid.get_node_ids())) < n:
        if time.monotonic() > deadline:
            raise MedflowError(f"only {len(nodes)} of {n} sites connected to the SuperLink")
        time.sleep(0.5)
    asks = [grid.create_message(RecordDict({"config": ConfigRecord({"ask": "featurizer"})}), "query", node, "summary")
            for node in nodes[:n]]
    replies = {r.metadata.src_node_id: r.content["summary"] for r in grid.send_and_receive(asks)}
    names = {node: str(r["site"]) for node, r in replies.items()}
    order = sorted(replies, key=lambda node: [s["name"] for s in plan["sites"]].index(names[node]))
    parts = [(featurizer_from_dict(json.loads(str(replies[node]["featurizer"]))), int(replies[node]["n"]))
             for node in order]
    feat = featurizers.get("tabular").merge(parts)
    torch.manual_seed(plan["seed"])  # the initial weights the in-process simulation starts from
    est = _estimator(plan, task_from_dict(plan["task"]))
    module = est.build_module(int(replies[order[0]]["in_dim"]))
    check_federated(cfg.train, fed)
    record = Recorder(names)
    start(record.strategy(fed, n), grid, module, fed, plan["seed"], {"featurizer": json.dumps(feat.to_dict())})
    buf = io.BytesIO()
    torch.save({"state": record.best["state"], "best_round": record.best["round"], "history": record.history,
                "featurizer": feat.to_dict(), "privacy": record.privacy}, buf)
    atomic_write_bytes(Path(plan["out"]), buf.getvalue())
