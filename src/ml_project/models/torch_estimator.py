"""scikit-learn estimators around a torch network: `TorchClassifier` and `TorchRegressor`.

They follow the estimator contract and pass scikit-learn's own `check_estimator`
(tests/test_estimator_checks.py): `__init__` only stores hyperparameters (defaults from
`torch_params.py`), `fit` validates its input and returns self, learned state ends in `_`,
predicting before `fit` raises `NotFittedError`. So `clone`, CV utilities and ensembles work
on them. `arch` is the `nn.Module` class itself, built as `arch(n_inputs, n_outputs,
**arch_params)`; the registry (`torch_models.py`) passes it in, and nothing here looks a name
up. Training is `torch_loop.run`; checkpoints are `torch_checkpoint.Checkpoint`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from ml_project import metrics as M
from ml_project.models import torch_loop
from ml_project.models.base import Callback
from ml_project.models.nets import MLP
from ml_project.models.torch_checkpoint import Checkpoint, fingerprint
from ml_project.models.torch_dist import Dist, resolve_device
from ml_project.models.torch_params import TORCH_DEFAULTS as _D

PREDICT_CHUNK = 65536


class _TorchEstimator(BaseEstimator):
    """Shared by the classifier and the regressor; they differ only in targets and heads."""

    def __init__(
        self,
        arch: type[nn.Module] | None = None,
        arch_params: dict | None = None,
        lr: float = _D.lr,
        weight_decay: float = _D.weight_decay,
        batch_size: int = _D.batch_size,
        max_epochs: int = _D.max_epochs,
        optimizer: str = _D.optimizer,
        scheduler: str = _D.scheduler,
        patience: int = _D.patience,
        validation_fraction: float = _D.validation_fraction,
        device: str = _D.device,
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
    _onnx_output: str = ""

    def _encode_targets(self, y) -> tuple[np.ndarray, int]:
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

    def _n_outputs(self) -> int:
        raise NotImplementedError

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
        when it or `patience` is 0, or when X is too small to split). `callbacks` get each
        epoch's metrics row and may raise `StopFit`. With `checkpoint`, the state is saved
        there after every epoch; with `resume`, a checkpoint of this same configuration and
        data is continued from, and the row history it holds is replayed to `callbacks`
        first. The checkpoint is removed once training completes.
        """
        X, y = validate_data(self, X, y, dtype=np.float32, order="C", y_numeric=not self._is_clf)
        encoded, _ = self._encode_targets(y)
        if eval_set is None and self.patience > 0 and self.validation_fraction > 0:
            X, encoded, y, eval_set = self._hold_out(X, encoded, y)
        X_val = None if eval_set is None else np.asarray(eval_set[0], dtype=np.float32)
        y_val = None if eval_set is None else np.asarray(eval_set[1])
        metric = None if self.metric is None else M.METRICS[self.metric]
        device = resolve_device(self.device)
        dist = Dist.start(device)
        try:
            ckpt = None
            if checkpoint:
                params = {k: v for k, v in self.get_params().items() if k != "progress"}
                key = fingerprint(params, [X, encoded, X_val, y_val], dist.world)
                ckpt = Checkpoint(Path(checkpoint), key, announce=dist.is_main)
            outcome = torch_loop.run(
                self._make_net,
                _Task(self, y_val, metric),
                self._settings(metric),
                X,
                encoded,
                X_val,
                device,
                dist,
                callbacks,
                ckpt,
                resume,
            )
        finally:
            dist.stop()
        self.module_ = outcome.net
        self.device_ = device
        self.history_ = outcome.history
        self.n_epochs_ = len(outcome.history)
        self.best_epoch_ = outcome.best_epoch
        self.stopped_by_ = outcome.stopped_by
        return self

    @property
    def _is_clf(self) -> bool:
        return self.task == "classification"

    def _settings(self, metric: M.Metric | None) -> torch_loop.Settings:
        import sys

        return torch_loop.Settings(
            lr=self.lr,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            max_epochs=self.max_epochs,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            patience=self.patience,
            seed=self.seed,
            metric=None if metric is None else metric.name,
            greater_is_better=True if metric is None else metric.greater_is_better,
            progress=self.progress if self.progress is not None else sys.stderr.isatty(),
            label=(self.arch or MLP).__name__,
        )

    def _make_net(self) -> nn.Module:
        arch = self.arch or MLP
        return arch(self.n_features_in_, self._n_outputs(), **(self.arch_params or {}))

    def _hold_out(self, X, encoded, y):
        """Split off `validation_fraction` for early stopping: stratified where the classes
        allow it; not at all when X is too small to leave rows on both sides."""
        from sklearn.model_selection import train_test_split

        n = len(X)
        n_val = math.ceil(self.validation_fraction * n)
        if n_val < 1 or n - n_val < 1:
            return X, encoded, y, None
        stratify = None
        if self._is_clf:
            counts = np.bincount(encoded)
            n_classes = len(counts)
            if counts.min() >= 2 and n_val >= n_classes and n - n_val >= n_classes:
                stratify = y
        X_tr, X_va, e_tr, _, y_tr, y_va = train_test_split(
            X,
            encoded,
            y,
            test_size=self.validation_fraction,
            random_state=self.seed,
            stratify=stratify,
        )
        return X_tr, e_tr, y_tr, (X_va, y_va)

    @torch.no_grad()
    def _forward(self, net: nn.Module, X: torch.Tensor) -> np.ndarray:
        net.eval()
        head = self._head().to(X.device)
        outs = [head(net(X[i : i + PREDICT_CHUNK])) for i in range(0, len(X), PREDICT_CHUNK)]
        return torch.cat(outs).double().cpu().numpy()

    # --- inference -----------------------------------------------------------------------
    def inference_module(self) -> nn.Module:
        """The fitted network plus its output head (probabilities, or de-standardised
        predictions), on the CPU in eval mode: what TorchScript and ONNX export."""
        check_is_fitted(self)
        return nn.Sequential(self.module_, self._head()).cpu().eval()

    def _outputs(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32, order="C")
        return self._forward(self.module_, torch.from_numpy(X).to(self.device_))

    def onnx_model(self, opset: int):
        """The network as an ONNX model: input `features` (float, n x n_features_in_)."""
        import io

        import onnx

        buffer = io.BytesIO()
        example = torch.zeros(2, self.n_features_in_)
        torch.onnx.export(
            self.inference_module(),
            (example,),
            buffer,  # type: ignore[arg-type]  # torch accepts a file object; its stub says path
            dynamo=False,
            opset_version=opset,
            input_names=["features"],
            output_names=[self._onnx_output],
            dynamic_axes={"features": {0: "n"}, self._onnx_output: {0: "n"}},
        )
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
            net = self._make_net()
            net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
            self.module_ = net.eval()
            self.device_ = torch.device("cpu")


class _Task:
    """What the epoch loop asks of one fit: the loss, and an epoch's validation row."""

    def __init__(self, est: _TorchEstimator, y_val, metric: M.Metric | None):
        self.est, self.y_val, self.metric = est, y_val, metric

    def loss(self, out, target, reduction):
        return self.est._loss(out, target, reduction)

    @property
    def train_loss_scale(self) -> float:
        return self.est._train_loss_scale()

    def validate(self, net, X_val) -> dict[str, float]:
        est, y_val, metric = self.est, self.y_val, self.metric
        pred, proba = est._decode(est._forward(net, X_val))
        classes = getattr(est, "classes_", None)
        row = {"val/loss": M.loss(est.task, y_val, pred, proba, classes)}
        if metric is not None:
            row[f"val/{metric.name}"] = float(metric.fn(y_val, pred, proba, classes))
        return row


class _Softmax(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=1)


class _Affine(nn.Module):
    """Undo the target standardisation: `x * scale + shift`."""

    scale: torch.Tensor
    shift: torch.Tensor

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
        check_classification_targets(y)
        self.classes_, encoded = np.unique(np.asarray(y), return_inverse=True)
        if len(self.classes_) < 2:
            n = len(self.classes_)
            raise ValueError(f"need at least 2 classes in y, got {n} class{'es' * (n != 1)}")
        return encoded.astype(np.int64), len(self.classes_)

    def _n_outputs(self) -> int:
        return len(self.classes_)

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

    def _n_outputs(self) -> int:
        return 1

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
