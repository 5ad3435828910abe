"""Federated training with Flower: each site trains on its own rows; only weights and aggregate metrics travel.

The server side is Flower's own strategy (`flwr.serverapp.strategy.FedAvg` or `FedProx`, its `start` loop and its
weighted aggregation); each site is a Flower `ClientApp` whose `train` handler runs the core `Trainer` for
`local_epochs` on the site's records and whose `evaluate` handler reports the site's validation loss. Messages go
through `LocalGrid`, a Flower `Grid` that delivers them in this process, one site after another (a simulation
on one machine without Ray, which Flower's own simulation engine requires); the strategy, the messages, the
records and the ClientApp are the ones a deployment over Flower's SuperLink would run.

Each site keeps its optimizer, learning-rate schedule, batch generator and (with `train.privacy`) its DP-SGD
ledger across rounds, as a Flower client process would keep them in memory: with one site holding all records,
federated training is centralized training (tested). The server keeps the global weights of the round with the
lowest validation loss aggregated over sites (weighted by their validation records), the federated counterpart of
early stopping; sites never share rows, only weights, losses and record counts.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from medflow.errors import ConfigError
from medflow.train.trainer import TrainConfig, Trainer, predict_outputs

__all__ = ["FederatedConfig", "Site", "FederatedResult", "federated_fit", "client_app", "Recorder", "start",
           "check_federated", "LocalSite"]


class FederatedConfig(BaseModel):
    """Options of federated training (YAML: `federated:`)."""

    model_config = ConfigDict(extra="forbid")
    rounds: int = Field(30, ge=1, le=10_000)
    local_epochs: int = Field(1, ge=1, le=1_000)
    strategy: Literal["fedavg", "fedprox"] = "fedavg"
    proximal_mu: float = Field(0.1, ge=0)  # FedProx: weight of the pull toward the round's global weights
    # simulation: every site in this process (LocalGrid); loopback: a SuperLink, one SuperNode per site file and
    # `flwr run` as separate processes on 127.0.0.1 (train/loopback.py)
    deployment: Literal["simulation", "loopback"] = "simulation"


@dataclass
class Site:
    """One site's training and validation tensors (they never leave the site's ClientApp)."""

    name: str
    x_train: Any
    y_train: torch.Tensor
    x_valid: Any
    y_valid: torch.Tensor


@dataclass
class FederatedResult:
    state_dict: dict[str, torch.Tensor]
    best_round: int
    history: list[dict[str, Any]] = field(default_factory=list)
    privacy: dict[str, Any] = field(default_factory=dict)  # per site: the epsilon its DP-SGD spent


class LocalSite:
    """What a site's process keeps between rounds: its module, Trainer (optimizer, schedule, generator, ledger)."""

    def __init__(self, site: Site, module: nn.Module, loss_fn: Callable, cfg: TrainConfig, seed: int) -> None:
        self.site, self.base_loss = site, loss_fn
        self.module = copy.deepcopy(module)
        self.eval_module = copy.deepcopy(module)
        self.trainer = Trainer(cfg, seed=seed)
        self.trainer.setup(self.module, self._loss, len(site.x_train))
        self.anchor: list[torch.Tensor] = []
        self.mu = 0.0

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self.base_loss(out, y)
        if self.mu > 0:  # FedProx: mu/2 * ||w - w_global||^2 keeps a site near the round's global model
            loss = loss + self.mu / 2 * sum(((p - a) ** 2).sum() for p, a in zip(self.module.parameters(),
                                                                                  self.anchor, strict=True))
        return loss

    def train(self, state: dict[str, torch.Tensor], epochs: int, mu: float) -> tuple[dict[str, torch.Tensor], float]:
        self.module.load_state_dict(state)
        self.mu = mu
        self.anchor = [p.detach().clone() for p in self.module.parameters()] if mu > 0 else []
        losses = [self.trainer.train_epoch(self.site.x_train, self.site.y_train) for _ in range(epochs)]
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}, losses[-1]

    @torch.no_grad()
    def evaluate(self, state: dict[str, torch.Tensor]) -> float:
        self.eval_module.load_state_dict(state)
        return float(self.base_loss(predict_outputs(self.eval_module, self.site.x_valid), self.site.y_valid))


def client_app(get_site: Callable[[Any, Any], LocalSite],
               keep: Callable[[Any, LocalSite], None] = lambda context, local: None) -> Any:
    """The sites' Flower ClientApp: `get_site(context, message)` gives the site's state (kept in memory in a
    simulation; rebuilt from the site's own file and `context.state` in a deployment, where every message runs in
    a fresh process), `keep(context, site)` stores it after training."""
    from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Any) -> Message:
        local = get_site(context, msg)
        config = msg.content["config"]
        state, loss = local.train(msg.content["arrays"].to_torch_state_dict(), int(config["local-epochs"]),
                                  float(config.get("proximal-mu", 0.0)))
        keep(context, local)
        metrics = {"train_loss": loss, "num-examples": len(local.site.x_train)}
        reply = {"arrays": ArrayRecord(state), "metrics": MetricRecord(metrics)}
        if local.trainer.state.privacy is not None:  # the site's DP-SGD ledger so far (epsilon spent, noise, ...)
            reply["privacy"] = ConfigRecord(dict(local.trainer.state.privacy))
        return Message(RecordDict(reply), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Any) -> Message:
        local = get_site(context, msg)
        loss = local.evaluate(msg.content["arrays"].to_torch_state_dict())
        metrics = MetricRecord({"val_loss": loss, "num-examples": len(local.site.x_valid)})
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    return app


def _grid_class() -> type:
    from flwr.app import Context, Message, RecordDict
    from flwr.serverapp import Grid
    from flwr.supercore.run import Run

    class LocalGrid(Grid):
        """A Flower Grid that hands each message to the destination site's ClientApp in this process."""

        def __init__(self, app: Any, node_ids: list[int]) -> None:
            self.app, self.node_ids = app, node_ids
            self._run = Run.create_empty(run_id=1)
            self.contexts = {n: Context(run_id=1, node_id=n, node_config={"partition-id": i}, state=RecordDict(),
                                        run_config={}) for i, n in enumerate(node_ids)}
            self.replies: dict[str, Message] = {}

        def set_run(self, run: Any) -> None:
            self._run = run

        @property
        def run(self) -> Any:
            return self._run

        def create_message(self, content: Any, message_type: str, dst_node_id: int, group_id: str,
                           ttl: float | None = None) -> Message:
            return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

        def get_node_ids(self) -> Iterable[int]:
            return list(self.node_ids)

        def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
            ids = []
            for msg in messages:
                msg.metadata.__dict__["_message_id"] = str(uuid.uuid4())
                msg.metadata.__dict__["_run_id"] = self._run.run_id
                reply = self.app(msg, self.contexts[msg.metadata.dst_node_id])
                self.replies[msg.metadata.message_id] = reply
                ids.append(msg.metadata.message_id)
            return ids

        def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
            return [self.replies.pop(i) for i in list(message_ids) if i in self.replies]

        def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
            return self.pull_messages(self.push_messages(messages))

    return LocalGrid


def _strategy(cfg: FederatedConfig, n_sites: int, on_train: Callable, on_evaluate: Callable) -> Any:
    from flwr.serverapp.strategy import FedAvg, FedProx

    base = FedProx if cfg.strategy == "fedprox" else FedAvg

    class Recording(base):  # Flower's strategy, recording each round's global weights and aggregated metrics
        def aggregate_train(self, server_round: int, replies: Iterable[Any]) -> Any:
            replies = list(replies)
            arrays, metrics = super().aggregate_train(server_round, replies)
            on_train(server_round, arrays, metrics, replies)
            return arrays, metrics

        def aggregate_evaluate(self, server_round: int, replies: Iterable[Any]) -> Any:
            metrics = super().aggregate_evaluate(server_round, replies)
            on_evaluate(server_round, metrics)
            return metrics

    kwargs: dict[str, Any] = {"min_train_nodes": n_sites, "min_evaluate_nodes": n_sites,
                              "min_available_nodes": n_sites}
    if cfg.strategy == "fedprox":
        kwargs["proximal_mu"] = cfg.proximal_mu
    return Recording(**kwargs)


def check_federated(train: TrainConfig, fed: FederatedConfig) -> TrainConfig:
    """Each site's local training options: its schedule spans all rounds (`rounds * local_epochs` epochs)."""
    if train.privacy is not None and fed.strategy == "fedprox":
        raise ConfigError("federated: FedProx's proximal term is not part of DP-SGD's per-sample gradients; use "
                          "strategy: fedavg with train.privacy, or drop train.privacy.")
    return train.model_copy(update={"max_epochs": fed.rounds * fed.local_epochs, "progress": False})


class Recorder:
    """The server's record of the rounds: each round's aggregated train and validation losses, per-site train
    losses and the DP-SGD ledger each site reports, and the global weights of the round with the lowest validation
    loss (federated early stopping)."""

    def __init__(self, names: dict[int, str], progress: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        self.names, self.progress = names, progress
        self.history: list[dict[str, Any]] = []
        self.rounds: dict[int, dict[str, Any]] = {}
        self.best: dict[str, Any] = {"loss": float("inf"), "round": 0, "state": None}
        self.privacy: dict[str, dict[str, Any]] = {}  # per site: its latest DP-SGD ledger

    def on_train(self, rnd: int, arrays: Any, metrics: Any, replies: list) -> None:
        per_site = {self.names[r.metadata.src_node_id]: float(r.content["metrics"]["train_loss"]) for r in replies}
        for r in replies:
            if "privacy" in r.content:
                self.privacy[self.names[r.metadata.src_node_id]] = dict(r.content["privacy"])
        self.rounds[rnd] = {"round": rnd, "train_loss": float(metrics["train_loss"]), "site_train_loss": per_site,
                            "state": arrays.to_torch_state_dict()}

    def on_evaluate(self, rnd: int, metrics: Any) -> None:
        entry = self.rounds.pop(rnd)
        entry["val_loss"] = float(metrics["val_loss"])
        state = entry.pop("state")
        if entry["val_loss"] < self.best["loss"] or self.best["state"] is None:  # the first round, even if NaN
            self.best.update(loss=entry["val_loss"], round=rnd, state=state)
        self.history.append(entry)
        if self.progress is not None:
            self.progress(rnd, entry)

    def strategy(self, fed: FederatedConfig, n_sites: int) -> Any:
        return _strategy(fed, n_sites, self.on_train, self.on_evaluate)


def start(strategy: Any, grid: Any, module: nn.Module, fed: FederatedConfig, seed: int,
          extra_config: dict[str, Any] | None = None) -> None:
    """Flower's strategy loop from `module`'s weights (the server's part, in a simulation or a deployment)."""
    from flwr.app import ArrayRecord, ConfigRecord

    torch.manual_seed(seed)
    initial = {k: v.detach().clone() for k, v in module.state_dict().items()}
    strategy.start(grid=grid, initial_arrays=ArrayRecord(initial), num_rounds=fed.rounds,
                   train_config=ConfigRecord({"local-epochs": fed.local_epochs, **(extra_config or {})}),
                   evaluate_config=ConfigRecord(dict(extra_config or {})))


def federated_fit(module: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  sites: list[Site], train: TrainConfig, fed: FederatedConfig, seed: int = 0,
                  progress: Callable[[int, dict[str, Any]], None] | None = None) -> FederatedResult:
    """Train `module` across `sites` with Flower; returns the best round's global weights and the history.

    `train` gives each site's local optimizer (lr, weight decay, batch size, gradient clipping, optional
    DP-SGD per site); its schedule spans all rounds (`rounds * local_epochs` local epochs).
    """
    if not sites:
        raise ConfigError("federated training needs at least one site.")
    local_cfg = check_federated(train, fed)
    node_ids = list(range(101, 101 + len(sites)))  # node 1 is Flower's server (SUPERLINK_NODE_ID)
    locals_ = {n: LocalSite(s, module, loss_fn, local_cfg, seed + 1000 * i)
               for i, (n, s) in enumerate(zip(node_ids, sites, strict=True))}
    names = {n: s.name for n, s in zip(node_ids, sites, strict=True)}
    record = Recorder(names, progress)
    grid = _grid_class()(client_app(lambda context, msg: locals_[context.node_id]), node_ids)
    flwr_logger = logging.getLogger("flwr")
    level = flwr_logger.level
    flwr_logger.setLevel(logging.WARNING)  # Flower logs every round at INFO; medflow shows its own progress
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    # the identity of the server task in this process, which Flower's Message constructor reads
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    try:
        start(record.strategy(fed, len(sites)), grid, module, fed, seed)
    finally:
        TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved
        flwr_logger.setLevel(level)
        for local in locals_.values():
            local.trainer.close()
    return FederatedResult(record.best["state"], record.best["round"], record.history, record.privacy)
