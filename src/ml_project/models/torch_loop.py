"""The one epoch loop every torch model trains with.

- batches sliced from tensors held in memory (no per-sample Dataset or collate),
- early stopping on the selection metric with patience, restoring the best weights at the end,
- an LR scheduler, a progress bar (on a terminal),
- a `Checkpoint` after each epoch (weights, optimizer, scheduler, RNG, early-stopping state and
  the metric history), from which a killed run resumes and ends with identical metrics,
- `StopFit` from a callback ends training after that epoch, as early stopping would,
- DistributedDataParallel under torchrun (see `torch_dist.py`); each process takes a slice of
  every global batch, so the gradients equal single-process training's.

The loop knows no architecture and no task: the estimator hands it a network factory and a
`Task` (the loss, and the validation metrics of an epoch).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn

from ml_project.models.base import Callback, StopFit
from ml_project.models.torch_checkpoint import Checkpoint
from ml_project.models.torch_dist import Dist


class Task(Protocol):
    """What the loop asks the estimator: its loss and one epoch's validation row."""

    def loss(self, out: torch.Tensor, target: torch.Tensor, reduction: str) -> torch.Tensor: ...

    def validate(self, net: nn.Module, X_val: torch.Tensor) -> dict[str, float]: ...

    @property
    def train_loss_scale(self) -> float: ...


@dataclass(frozen=True)
class Settings:
    lr: float
    weight_decay: float
    batch_size: int
    max_epochs: int
    optimizer: str
    scheduler: str
    patience: int
    seed: int
    metric: str | None  # the `val/<name>` key early stopping follows; None: val/loss
    greater_is_better: bool = True
    progress: bool = False
    label: str = "torch"


@dataclass
class Outcome:
    net: nn.Module
    history: list[dict[str, float]]
    best_epoch: int
    stopped_by: str | None


def notify(callbacks: Sequence[Callback], row: dict[str, float], epoch: int) -> str | None:
    """Give every callback the epoch's row; the reason of the first `StopFit` raised."""
    stopped_by = None
    for callback in callbacks:
        try:
            callback(row, epoch)
        except StopFit as exc:
            stopped_by = stopped_by or str(exc) or "StopFit"
    return stopped_by


def make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    return cls(params, lr=lr, weight_decay=weight_decay)


def make_scheduler(name: str, optimizer, max_epochs: int, patience: int):
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epochs)
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=max(1, patience // 2))
    return None


def batches(n: int, size: int) -> list[tuple[int, int]]:
    """Batch bounds; a last batch of one row joins the previous one (batch norm needs two)."""
    bounds = [(start, min(start + size, n)) for start in range(0, n, size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


@dataclass
class EarlyStopping:
    """Tracks the best epoch of a score where greater is better."""

    patience: int
    best: float = -float("inf")
    best_epoch: int = -1
    bad_epochs: int = 0
    best_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def update(self, score: float, epoch: int, net: nn.Module) -> None:
        if score > self.best or self.best_epoch < 0:
            self.best, self.best_epoch, self.bad_epochs = score, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            self.bad_epochs += 1

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.bad_epochs, self.best_state = state["bad_epochs"], state["best_state"]


def train_epoch(task: Task, model, Xt, yt, optimizer, shuffle, batch_size: int, dist: Dist):
    """One pass; returns the mean training loss. Per batch, exactly the work of a
    hand-written loop: the losses are only collected, and summed once at the end."""
    model.train()
    n = len(Xt)
    order = torch.randperm(n, generator=shuffle).to(Xt.device)
    losses: list[torch.Tensor] = []
    rows: list[float] = []
    for lo, hi in batches(n, batch_size):
        idx = order[lo:hi]
        if dist.world == 1:
            loss = task.loss(model(Xt[idx]), yt[idx], "mean")
            rows.append(hi - lo)
        else:
            # This process's sum over the global batch size: DDP's gradient average over
            # processes then equals the single-process mean over the whole batch.
            idx = idx[dist.rank :: dist.world]
            loss = task.loss(model(Xt[idx]), yt[idx], "sum") * (dist.world / (hi - lo))
            rows.append((hi - lo) / dist.world)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    weights = torch.tensor(rows, dtype=torch.float64, device=Xt.device)
    total = (torch.stack(losses).double() * weights).sum()
    return float(dist.all_sum(total)) / n


def run(
    make_net: Callable[[], nn.Module],
    task: Task,
    settings: Settings,
    X: np.ndarray,
    encoded: np.ndarray,
    X_val: np.ndarray | None,
    device: torch.device,
    dist: Dist,
    callbacks: Sequence[Callback] = (),
    checkpoint: Checkpoint | None = None,
    resume: bool = True,
) -> Outcome:
    """Train a fresh network (seeded by `settings.seed`) and return it with the best
    epoch's weights, in eval mode. With `checkpoint`, resume from it when it matches, save
    after every epoch and remove it at the end (`resume=False`: never read it)."""
    torch.manual_seed(settings.seed)
    shuffle = torch.Generator().manual_seed(settings.seed)
    net = make_net().to(device)
    model = dist.wrap(net, device)
    optimizer = make_optimizer(
        settings.optimizer, net.parameters(), settings.lr, settings.weight_decay
    )
    scheduler = make_scheduler(
        settings.scheduler, optimizer, settings.max_epochs, settings.patience
    )
    stopper = EarlyStopping(settings.patience if X_val is not None else 0)
    history: list[dict[str, float]] = []
    Xt = torch.from_numpy(X).to(device)
    yt = torch.from_numpy(encoded).to(device)
    Xv = None if X_val is None else torch.from_numpy(X_val).to(device)

    start, stopped_by = 0, None
    state = checkpoint.load(device) if checkpoint is not None and resume else None
    if state is not None:
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        stopper.load_state_dict(state["stopper"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        shuffle.set_state(state["rng"]["shuffle"].cpu())
        if device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), device)
        history = [dict(row) for row in state["history"]]
        start = int(state["epoch"]) + 1
        if checkpoint is not None and dist.is_main:
            print(
                f"resuming from {checkpoint.path}: epoch {start} of {settings.max_epochs}",
                file=sys.stderr,
            )
        for epoch, row in enumerate(history):
            stopped_by = stopped_by or notify(callbacks, row, epoch)
    done = stopped_by is not None or (start > 0 and stopper.should_stop)

    bar = _progress_bar(settings, start, dist)
    for epoch in range(start, 0 if done else settings.max_epochs):
        loss = train_epoch(task, model, Xt, yt, optimizer, shuffle, settings.batch_size, dist)
        row = {"train/loss": loss * task.train_loss_scale}
        if Xv is not None:
            row.update(task.validate(net, Xv))
            score = row[f"val/{settings.metric}"] if settings.metric else -row["val/loss"]
            stopper.update(score if settings.greater_is_better else -score, epoch, net)
        if scheduler is not None:
            is_plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
            scheduler.step(row.get("val/loss", loss)) if is_plateau else scheduler.step()
        history.append(row)
        stopped_by = notify(callbacks, row, epoch)
        if checkpoint is not None and dist.is_main:
            rng = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()}
            if device.type == "cuda":
                rng["cuda"] = torch.cuda.get_rng_state(device)
            checkpoint.save(
                {
                    "epoch": epoch,
                    "net": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": None if scheduler is None else scheduler.state_dict(),
                    "stopper": stopper.state_dict(),
                    "rng": rng,
                    "history": history,
                }
            )
        if bar is not None:
            bar.set_postfix(row, refresh=False)
            bar.update(1)
        if stopper.should_stop or stopped_by is not None:
            break
    if bar is not None:
        bar.close()

    if stopper.best_state is not None:
        net.load_state_dict(stopper.best_state)
    net.eval()
    best = stopper.best_epoch if stopper.best_epoch >= 0 else len(history) - 1
    dist.barrier()  # no process may see the checkpoint vanish while another still reads it
    if checkpoint is not None and dist.is_main:
        checkpoint.remove()
    return Outcome(net, history, best, stopped_by)


def _progress_bar(settings: Settings, start: int, dist: Dist):
    if not settings.progress or not dist.is_main:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=settings.max_epochs,
        initial=start,
        desc=settings.label,
        unit="epoch",
        file=sys.stderr,
        leave=False,
    )
