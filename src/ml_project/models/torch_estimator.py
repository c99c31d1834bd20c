"""scikit-learn estimators around a torch module, and the one training loop they all share.

`TorchClassifier` and `TorchRegressor` follow the estimator contract (`__init__` only stores
hyperparameters, `fit` returns self, learned state ends in `_`), so `clone`, CV utilities and
ensembles work on them. The loop knows no architecture: it gets an `nn.Module` from the
`ARCHITECTURES` registry and trains it with

- batches sliced from tensors held in memory (no per-sample Dataset or collate),
- early stopping on the selection metric with patience, restoring the best weights at the end,
- an LR scheduler, a progress bar (on a terminal),
- a checkpoint after each epoch (weights, optimizer, scheduler, RNG, early-stopping state and
  the metric history), from which a killed run resumes and ends with identical metrics,
- DistributedDataParallel under torchrun (gloo on CPU, NCCL on GPU); each process takes a
  slice of every global batch, so the gradients equal single-process training's.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from torch import nn

from ml_project import metrics as M
from ml_project.errors import UserError
from ml_project.models.base import StopFit
from ml_project.models.torch_models import ARCHITECTURES

CHECKPOINT_VERSION = 1
PREDICT_CHUNK = 65536

Callback = Callable[[dict[str, float], int], None]  # (metrics row, epoch)


def architecture(name: str) -> type[nn.Module]:
    if name not in ARCHITECTURES:
        raise UserError(f"unknown torch architecture '{name}' (valid: {', '.join(ARCHITECTURES)})")
    module, attr = ARCHITECTURES[name].split(":")
    return getattr(importlib.import_module(module), attr)


def resolve_device(spec: str) -> torch.device:
    """`auto`: a GPU when there is one, else the CPU. Parallel workers (torchrun's processes,
    DVC queue workers) take the visible GPUs round robin instead of all using the first."""
    if spec == "auto":
        if torch.cuda.is_available():
            from ml_project.threads import pick_gpu, worker_index

            return torch.device("cuda", pick_gpu(torch.cuda.device_count(), worker_index()))
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"device '{spec}' requested but no CUDA GPU is available (valid: auto, cpu)"
        )
    return device


@dataclass
class Dist:
    """This process's place under torchrun; rank 0 of 1 otherwise."""

    rank: int = 0
    world: int = 1
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device: torch.device) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", 1))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        owns = False
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            owns = True
        return cls(dist.get_rank(), dist.get_world_size(), owns)

    def all_sum(self, value: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(value)
        return value

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def stop(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def is_main_process() -> bool:
    """True outside torchrun and on its rank 0: the only process that logs and writes files."""
    return int(os.environ.get("RANK", 0)) == 0


def _notify(callbacks: Sequence[Callback], row: dict[str, float], epoch: int) -> str | None:
    """Give every callback the epoch's row; the reason of the first `StopFit` raised."""
    stopped_by = None
    for callback in callbacks:
        try:
            callback(row, epoch)
        except StopFit as exc:
            stopped_by = stopped_by or str(exc) or "StopFit"
    return stopped_by


def _optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    return cls(params, lr=lr, weight_decay=weight_decay)


def _scheduler(name: str, optimizer, max_epochs: int, patience: int):
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epochs)
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=max(1, patience // 2))
    return None


def _batches(n: int, size: int) -> list[tuple[int, int]]:
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


class _TorchEstimator(BaseEstimator):
    """Shared by the classifier and the regressor; they differ only in targets and heads."""

    def __init__(
        self,
        arch: str = "mlp",
        arch_params: dict | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 64,
        max_epochs: int = 50,
        optimizer: str = "adamw",
        scheduler: str = "cosine",
        patience: int = 10,
        validation_fraction: float = 0.1,
        device: str = "auto",
        seed: int = 0,
        metric: str | None = None,
        progress: bool | None = None,
    ):
        self.arch = arch
        self.arch_params = arch_params
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.device = device
        self.seed = seed
        self.metric = metric
        self.progress = progress

    # --- what the two tasks define -------------------------------------------------------
    task: str = ""

    def _encode_targets(self, y) -> tuple[np.ndarray, int]:
        raise NotImplementedError

    def _targets(self, y) -> np.ndarray:
        raise NotImplementedError

    def _loss(self, out: torch.Tensor, target: torch.Tensor, reduction: str) -> torch.Tensor:
        raise NotImplementedError

    def _head(self) -> nn.Module:
        raise NotImplementedError

    def _decode(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(predictions, probabilities or None) from the inference head's outputs."""
        raise NotImplementedError

    def _train_loss_scale(self) -> float:
        return 1.0

    # --- fit -----------------------------------------------------------------------------
    def fit(
        self,
        X,
        y,
        eval_set: tuple[Any, Any] | None = None,
        callbacks: Sequence[Callback] = (),
        checkpoint: str | Path | None = None,
        resume: bool = True,
    ):
        """Train; `eval_set` (preprocessed like X) drives early stopping and the val curve.

        Without `eval_set`, `validation_fraction` of X is held out for early stopping (none
        when it or `patience` is 0). `callbacks` get each epoch's metrics row. With
        `checkpoint`, the state is saved there after every epoch; with `resume`, a checkpoint
        of this same configuration and data is continued from, and the row history it holds
        is replayed to `callbacks` first. The checkpoint is removed once training completes.
        """
        X = np.asarray(X, dtype=np.float32)
        encoded, n_outputs = self._encode_targets(y)
        y = np.asarray(y)
        if eval_set is None and self.patience > 0 and self.validation_fraction > 0:
            X, encoded, y, eval_set = self._hold_out(X, encoded, y)
        self.n_features_in_ = X.shape[1]
        metric = None if self.metric is None else M.METRICS[self.metric]
        device = resolve_device(self.device)
        dist = Dist.start(device)
        try:
            self._fit(
                X,
                encoded,
                n_outputs,
                eval_set,
                callbacks,
                checkpoint,
                resume,
                metric,
                device,
                dist,
            )
        finally:
            dist.stop()
        return self

    def _hold_out(self, X, encoded, y):
        from sklearn.model_selection import train_test_split

        stratify = y if self.task == "classification" else None
        parts = train_test_split(
            X,
            encoded,
            y,
            test_size=self.validation_fraction,
            random_state=self.seed,
            stratify=stratify,
        )
        X_tr, X_va, e_tr, _, y_tr, y_va = parts
        return X_tr, e_tr, y_tr, (X_va, y_va)

    def _fit(
        self,
        X,
        encoded,
        n_outputs,
        eval_set,
        callbacks,
        checkpoint,
        resume,
        metric,
        device,
        dist: Dist,
    ):
        torch.manual_seed(self.seed)
        shuffle = torch.Generator().manual_seed(self.seed)
        net = architecture(self.arch)(X.shape[1], n_outputs, **(self.arch_params or {}))
        net = net.to(device)
        model = net
        if dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(
                net, device_ids=[device] if device.type == "cuda" else None
            )
        optimizer = _optimizer(self.optimizer, net.parameters(), self.lr, self.weight_decay)
        scheduler = _scheduler(self.scheduler, optimizer, self.max_epochs, self.patience)
        stopper = EarlyStopping(self.patience if eval_set is not None else 0)
        history: list[dict[str, float]] = []

        Xt = torch.from_numpy(X).to(device)
        yt = torch.from_numpy(encoded).to(device)
        X_val = None if eval_set is None else np.asarray(eval_set[0], dtype=np.float32)
        y_val = None if eval_set is None else np.asarray(eval_set[1])
        Xv = None if X_val is None else torch.from_numpy(X_val).to(device)

        path = Path(checkpoint) if checkpoint else None
        stopped_by: str | None = None
        fingerprint = self._fingerprint(X, encoded, X_val, y_val, dist.world)
        start = 0
        if path is not None and resume and path.is_file():
            state = torch.load(path, map_location=device, weights_only=True)
            if state.get("version") == CHECKPOINT_VERSION and state["fingerprint"] == fingerprint:
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
                if dist.is_main:
                    print(
                        f"resuming from {path}: epoch {start} of {self.max_epochs}", file=sys.stderr
                    )
                for epoch, row in enumerate(history):
                    stopped_by = stopped_by or _notify(callbacks, row, epoch)
            elif dist.is_main:
                print(
                    f"ignoring {path}: it belongs to another configuration or data", file=sys.stderr
                )
        done = stopped_by is not None or (start > 0 and stopper.should_stop)

        bar = self._progress_bar(start, dist)
        epoch = start
        for epoch in range(start, 0 if done else self.max_epochs):
            train_loss = self._train_epoch(model, Xt, yt, optimizer, shuffle, dist)
            row = {"train/loss": train_loss * self._train_loss_scale()}
            if Xv is not None:
                row.update(self._evaluate(net, Xv, y_val, metric))
                score = row[f"val/{metric.name}"] if metric else -row["val/loss"]
                if metric is not None and not metric.greater_is_better:
                    score = -score
                stopper.update(score, epoch, net)
            if scheduler is not None:
                is_plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
                scheduler.step(row.get("val/loss", train_loss)) if is_plateau else scheduler.step()
            history.append(row)
            stopped_by = _notify(callbacks, row, epoch)
            if path is not None and dist.is_main:
                self._save_checkpoint(
                    path,
                    fingerprint,
                    epoch,
                    net,
                    optimizer,
                    scheduler,
                    stopper,
                    shuffle,
                    history,
                    device,
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
        self.module_ = net
        self.device_ = device
        self.history_ = history
        self.n_epochs_ = len(history)
        self.stopped_by_ = stopped_by
        self.best_epoch_ = stopper.best_epoch if stopper.best_epoch >= 0 else len(history) - 1
        dist.barrier()  # no process may see the checkpoint vanish while another still reads it
        if path is not None and dist.is_main:
            path.unlink(missing_ok=True)

    def _progress_bar(self, start: int, dist: Dist):
        enabled = self.progress if self.progress is not None else sys.stderr.isatty()
        if not enabled or not dist.is_main:
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=self.max_epochs,
            initial=start,
            desc=self.arch,
            unit="epoch",
            file=sys.stderr,
            leave=False,
        )

    def _train_epoch(self, model, Xt, yt, optimizer, shuffle, dist: Dist) -> float:
        """One pass; returns the mean training loss. Per batch, exactly the work of a
        hand-written loop: the losses are only collected, and summed once at the end."""
        model.train()
        n = len(Xt)
        order = torch.randperm(n, generator=shuffle).to(Xt.device)
        losses, rows = [], []
        for lo, hi in _batches(n, self.batch_size):
            idx = order[lo:hi]
            if dist.world == 1:
                loss = self._loss(model(Xt[idx]), yt[idx], "mean")
                rows.append(hi - lo)
            else:
                # This process's sum over the global batch size: DDP's gradient average over
                # processes then equals the single-process mean over the whole batch.
                idx = idx[dist.rank :: dist.world]
                loss = self._loss(model(Xt[idx]), yt[idx], "sum") * (dist.world / (hi - lo))
                rows.append((hi - lo) / dist.world)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        weights = torch.tensor(rows, dtype=torch.float64, device=Xt.device)
        total = (torch.stack(losses).double() * weights).sum()
        return float(dist.all_sum(total)) / n

    @torch.no_grad()
    def _forward(self, net: nn.Module, X: torch.Tensor) -> np.ndarray:
        net.eval()
        head = self._head().to(X.device)
        outs = [head(net(X[i : i + PREDICT_CHUNK])) for i in range(0, len(X), PREDICT_CHUNK)]
        return torch.cat(outs).double().cpu().numpy()

    def _evaluate(self, net, Xv, y_val, metric) -> dict[str, float]:
        pred, proba = self._decode(self._forward(net, Xv))
        classes = getattr(self, "classes_", None)
        row = {"val/loss": M.loss(self.task, y_val, pred, proba, classes)}
        if metric is not None:
            row[f"val/{metric.name}"] = float(metric.fn(y_val, pred, proba, classes))
        return row

    def _fingerprint(self, X, encoded, X_val, y_val, world: int) -> str:
        """What a checkpoint must match to be resumed: params, data and process count."""
        digest = hashlib.blake2b(digest_size=16)
        params = {k: v for k, v in self.get_params().items() if k != "progress"}
        digest.update(json.dumps(params, sort_keys=True, default=str).encode())
        digest.update(f"world={world}".encode())
        for part in (X, encoded, X_val, y_val):
            if part is not None:
                digest.update(
                    np.ascontiguousarray(part).tobytes()
                    if part.dtype != object
                    else repr(part.tolist()).encode()
                )
        return digest.hexdigest()

    def _save_checkpoint(
        self, path, fingerprint, epoch, net, optimizer, scheduler, stopper, shuffle, history, device
    ) -> None:
        rng = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(device)
        state = {
            "version": CHECKPOINT_VERSION,
            "fingerprint": fingerprint,
            "epoch": epoch,
            "net": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "stopper": stopper.state_dict(),
            "rng": rng,
            "history": history,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)  # a kill mid-write leaves the previous epoch's checkpoint intact

    # --- inference -----------------------------------------------------------------------
    def inference_module(self) -> nn.Module:
        """The fitted network plus its output head (probabilities, or de-standardised
        predictions), on the CPU in eval mode: what TorchScript and ONNX export."""
        module = nn.Sequential(self.module_, self._head()).cpu().eval()
        return module

    def _outputs(self, X) -> np.ndarray:
        X = torch.from_numpy(np.asarray(X, dtype=np.float32)).to(self.device_)
        return self._forward(self.module_, X)

    def onnx_model(self, opset: int):
        """The network as an ONNX model: input `features` (float, n x n_features_in_)."""
        import io

        buffer = io.BytesIO()
        example = torch.zeros(2, self.n_features_in_)
        torch.onnx.export(
            self.inference_module(),
            (example,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=["features"],
            output_names=[self._onnx_output],
            dynamic_axes={"features": {0: "n"}, self._onnx_output: {0: "n"}},
        )
        import onnx

        return onnx.load_from_string(buffer.getvalue())

    # --- pickling: skops stores plain arrays, never torch objects ------------------------
    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: object's own is the live __dict__
        module = state.pop("module_", None)
        state.pop("device_", None)
        if module is not None:
            state["module_state_"] = {
                k: v.detach().cpu().numpy() for k, v in module.state_dict().items()
            }
        return state

    def __setstate__(self, state):
        weights = state.pop("module_state_", None)
        super().__setstate__(state)
        if weights is not None:
            n_out = len(self.classes_) if self.task == "classification" else 1
            net = architecture(self.arch)(self.n_features_in_, n_out, **(self.arch_params or {}))
            net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
            self.module_ = net.eval()
            self.device_ = torch.device("cpu")


class _Softmax(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=1)


class _Affine(nn.Module):
    """Undo the target standardisation: `x * scale + shift`."""

    def __init__(self, scale: float, shift: float):
        super().__init__()
        self.register_buffer("scale", torch.tensor([scale], dtype=torch.float32))
        self.register_buffer("shift", torch.tensor([shift], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class TorchClassifier(ClassifierMixin, _TorchEstimator):
    task = "classification"
    _onnx_output = "probabilities"

    def _encode_targets(self, y):
        self.classes_, encoded = np.unique(np.asarray(y), return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"need at least 2 classes in y, got {len(self.classes_)}")
        return encoded.astype(np.int64), len(self.classes_)

    def _loss(self, out, target, reduction):
        return nn.functional.cross_entropy(out, target, reduction=reduction)

    def _head(self) -> nn.Module:
        return _Softmax()

    def _decode(self, out):
        out = out / out.sum(axis=1, keepdims=True)  # float32 softmax sums to 1 +- 1e-7
        return self.classes_[np.argmax(out, axis=1)], out

    def predict_proba(self, X) -> np.ndarray:
        return self._decode(self._outputs(X))[1]

    def predict(self, X) -> np.ndarray:
        return self._decode(self._outputs(X))[0]


class TorchRegressor(RegressorMixin, _TorchEstimator):
    task = "regression"
    _onnx_output = "variable"

    def _encode_targets(self, y):
        y = np.asarray(y, dtype=np.float64)
        self.y_mean_ = float(y.mean())
        self.y_std_ = float(y.std()) or 1.0
        return ((y - self.y_mean_) / self.y_std_).astype(np.float32).reshape(-1, 1), 1

    def _loss(self, out, target, reduction):
        return nn.functional.mse_loss(out, target, reduction=reduction)

    def _train_loss_scale(self) -> float:
        return self.y_std_**2  # the loss in the target's own units, like val/loss

    def _head(self) -> nn.Module:
        return _Affine(self.y_std_, self.y_mean_)

    def _decode(self, out):
        return out.ravel(), None

    def predict(self, X) -> np.ndarray:
        return self._outputs(X).ravel()


def estimator_for(task: str) -> type[_TorchEstimator]:
    return TorchClassifier if task == "classification" else TorchRegressor
