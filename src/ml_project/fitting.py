"""Fit one model on one split and log its curve: what a normal run and each CV fold share.

The config carries the model's spec and the selection metric, resolved once (`for_task`), so
nothing below looks a model up by name or branches on its type: the spec builds, fits and
gives the outputs; this module turns outputs into metric rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ml_project import metrics as M
from ml_project.errors import UserError
from ml_project.models import Hyperparams, ModelSpec, StopFit, get_spec
from ml_project.params import DataParams, TrackingParams, TrainParams, flatten, resolve_task

if TYPE_CHECKING:
    import pandas as pd

    from ml_project.cv import CvOutcome
    from ml_project.data import Manifest

Log = Callable[[dict[str, float], int], None]
Splits = tuple["pd.DataFrame", np.ndarray, "pd.DataFrame | None", "np.ndarray | None"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything the train stage reads from params.yaml, parsed and cross-checked, plus the
    model's spec and (once the task is known, see `for_task`) the selection metric."""

    data: DataParams
    model: str
    hyperparams: Hyperparams
    train: TrainParams
    tracking: TrackingParams
    spec: ModelSpec = None  # type: ignore[assignment]  # filled from `model`
    metric: M.Metric | None = None  # resolved by `for_task`

    def __post_init__(self) -> None:
        if self.spec is None:
            object.__setattr__(self, "spec", get_spec(self.model))

    def run_params(self) -> dict[str, Any]:
        """The run's effective params, flattened, as every tracker receives them."""
        return flatten(
            {
                "data": self.data.model_dump(),
                "model": self.model,
                "models": {self.model: self.hyperparams.model_dump()},
                "train": self.train.model_dump(),
            }
        )

    def for_task(self, task: str) -> TrainConfig:
        """This config for data of `task`: `auto` task and metric resolved (params.py), and
        the selection metric looked up once."""
        data, train = resolve_task(self.data, self.train, task)
        metric = M.selection_metric(train.metric, task)
        return dataclasses.replace(self, data=data, train=train, metric=metric)

    @property
    def task(self) -> str:
        return self.data.task

    @property
    def selection(self) -> M.Metric:
        if self.metric is None:
            raise RuntimeError("TrainConfig.for_task(task) first: the metric is not resolved")
        return self.metric

    def new_pipeline(self, manifest: Manifest):
        return self.spec.pipeline(
            manifest, self.task, self.hyperparams, self.train.seed, self.selection
        )


@dataclass
class TrainResult:
    pipeline: Any
    input_example: pd.DataFrame  # a few raw training rows, for tracker model signatures
    history: list[dict[str, float]] = field(default_factory=list)
    fit_seconds: float = 0.0
    cv: CvOutcome | None = None  # when `train.cv_folds` is on
    stopped_by: str | None = None  # why a `StopFit` ended training early (e.g. pruning)

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def training_failed(config: TrainConfig, exc: Exception) -> UserError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return UserError(f"models.{config.model}: training failed: {first}")


def step_metrics(config: TrainConfig, classes, train, val, final: bool) -> dict[str, float]:
    """One curve step from `(y, pred, proba)` of both splits: both losses and the selection
    metric; every val metric at the end."""
    task, metric = config.task, config.selection
    (y_tr, pred_tr, proba_tr), (y_val, pred_val, proba_val) = train, val
    row = {
        "train/loss": M.loss(task, y_tr, pred_tr, proba_tr, classes),
        "val/loss": M.loss(task, y_val, pred_val, proba_val, classes),
    }
    if final:
        scores = M.compute(task, y_val, pred_val, proba_val, classes)
        # `val/loss` is the log loss already; a second name for it only doubles the columns
        # of `dvc exp show` (it stays when it is the selection metric, which every step has).
        if task == "classification" and metric.name != "log_loss" and proba_val is not None:
            scores.pop("log_loss", None)
    else:
        scores = {metric.name: float(metric.fn(y_val, pred_val, proba_val, classes))}
    row.update({f"val/{k}": v for k, v in scores.items()})
    return row


def _staged_outputs(model, out: np.ndarray, task: str):
    """(predictions, probabilities or None) from one staged output of `spec.staged`."""
    if task == "classification" and np.ndim(out) == 2:
        return model.classes_[np.argmax(out, axis=1)], out
    return out, None


def _with_last(items):
    """Yield `(item, is_last)`."""
    iterator = iter(items)
    try:
        previous = next(iterator)
    except StopIteration:
        return
    for item in iterator:
        yield previous, False
        previous = item
    yield previous, True


def _log_final(result: TrainResult, log: Log, row: dict[str, float], step: int) -> None:
    """The last row, logged whatever a `StopFit` callback thinks of it: training is over."""
    if result.stopped_by is not None:
        row["train/stopped"] = 1.0
    result.history.append(row)
    with contextlib.suppress(StopFit):
        log(row, step)


def fit_one(
    config: TrainConfig,
    manifest: Manifest,
    splits: Splits,
    log: Log,
    checkpoint: Path | None = None,
) -> TrainResult:
    """Fit one pipeline on `splits` = (X_train, y_train, X_val, y_val), logging its curve.

    Per-epoch models log one step per epoch and then a last step with every val metric of
    the final model (the best epoch's weights). Models with `staged` outputs log one step per
    iteration, the last holding every val metric; the others one step. Without a val split
    (a refit on train+val) only the per-epoch curve is logged. A `StopFit` from `log` ends
    the curve; the final row is still logged, marked `train/stopped`.
    """
    X_train, y_train, X_val, y_val = splits
    spec, task = config.spec, config.task
    pipeline = config.new_pipeline(manifest)
    result = TrainResult(pipeline, X_train.head(5))

    def on_epoch(row: dict[str, float], epoch: int) -> None:
        result.history.append(row)
        log(row, epoch)  # may raise StopFit: the estimator's loop ends training

    start = time.perf_counter()
    try:
        spec.fit(
            pipeline,
            X_train,
            y_train,
            eval_set=None if X_val is None else (X_val, y_val),
            callbacks=[on_epoch],
            checkpoint=checkpoint,
            resume=config.train.resume,
        )
    except ValueError as exc:
        raise training_failed(config, exc) from None
    result.fit_seconds = time.perf_counter() - start
    model = pipeline[-1]
    result.stopped_by = getattr(model, "stopped_by_", None) if spec.per_epoch else None
    if X_val is None:
        return result
    classes = getattr(pipeline, "classes_", None)

    def final_row() -> dict[str, float]:
        train = (y_train, *spec.outputs(pipeline, X_train))
        val = (y_val, *spec.outputs(pipeline, X_val))
        return step_metrics(config, classes, train, val, final=True)

    if spec.per_epoch:
        row = final_row()
        row["train/best_epoch"] = float(model.best_epoch_)
        _log_final(result, log, row, len(result.history))
        return result
    if spec.staged is None:
        _log_final(result, log, final_row(), 0)
        return result
    Xt_train, Xt_val = pipeline[:-1].transform(X_train), pipeline[:-1].transform(X_val)
    stages = zip(spec.staged(model, Xt_train), spec.staged(model, Xt_val), strict=True)
    # One step held back, so the last one is known without keeping every stage in memory.
    for step, ((out_train, out_val), last) in enumerate(_with_last(stages)):
        train = (y_train, *_staged_outputs(model, out_train, task))
        val = (y_val, *_staged_outputs(model, out_val, task))
        row = step_metrics(config, classes, train, val, last)
        if last:
            _log_final(result, log, row, step)
            break
        result.history.append(row)
        try:
            log(row, step)
        except StopFit as exc:  # the curve ends here; the final row describes the model
            result.stopped_by = str(exc) or "StopFit"
            _log_final(result, log, final_row(), step + 1)
            break
    return result
