"""The METRICS registry: every metric the project reports, per task.

Names are the last part of the logged key: `val/f1`, `test/rmse`. To add your own metric,
decorate a function here, e.g.::

    @metric("balanced_accuracy", task="classification")
    def _balanced_accuracy(y, pred, proba, classes):
        return balanced_accuracy_score(y, pred)

It then appears in every tracker, in `dvc exp show`, and is accepted by `train.metric`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ml_project.errors import ParamsError

MetricFn = Callable[[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None], float]


@dataclass(frozen=True)
class Metric:
    name: str
    task: str
    fn: MetricFn
    greater_is_better: bool = True
    needs_proba: bool = False
    sklearn_scoring: str | None = None  # the equivalent `scoring=` string, for sklearn CV/ES


METRICS: dict[str, Metric] = {}


def metric(
    name: str,
    task: str,
    greater_is_better: bool = True,
    needs_proba: bool = False,
    sklearn_scoring: str | None = None,
) -> Callable[[MetricFn], MetricFn]:
    """Register `fn(y_true, y_pred, proba, classes) -> float` under `name`."""

    def register(fn: MetricFn) -> MetricFn:
        METRICS[name] = Metric(name, task, fn, greater_is_better, needs_proba, sklearn_scoring)
        return fn

    return register


@metric("accuracy", "classification", sklearn_scoring="accuracy")
def _accuracy(y, pred, proba, classes):
    return float(np.mean(np.asarray(y) == np.asarray(pred)))


# accuracy, f1, rmse and mae run at every epoch or iteration: plain numpy, with exactly
# scikit-learn's definitions (tests/test_metrics.py compares them), without its input
# validation, which costs ~10 ms a call on 4,000 rows, more than a small epoch's budget.
@metric("f1", "classification", sklearn_scoring="f1_macro")
def _f1(y, pred, proba, classes):
    """Macro F1 over the labels present in y or pred; 0 for a label with no tp, fp or fn."""
    labels, index = np.unique(
        np.concatenate([np.asarray(y), np.asarray(pred)]), return_inverse=True
    )
    true, guess = index[: len(y)], index[len(y) :]
    tp = np.bincount(true[true == guess], minlength=len(labels))
    support = np.bincount(true, minlength=len(labels))
    predicted = np.bincount(guess, minlength=len(labels))
    denominator = support + predicted
    f1 = np.divide(2 * tp, denominator, out=np.zeros(len(labels)), where=denominator > 0)
    return float(f1.mean())


@metric("roc_auc", "classification", needs_proba=True, sklearn_scoring="roc_auc_ovr")
def _roc_auc(y, pred, proba, classes):
    from sklearn import metrics as skm  # here: the export stage imports this module, never this

    if len(np.unique(y)) < 2:
        return float("nan")
    if proba.shape[1] == 2:
        return skm.roc_auc_score(y, proba[:, 1])
    return skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes)


@metric("log_loss", "classification", False, needs_proba=True, sklearn_scoring="neg_log_loss")
def _log_loss(y, pred, proba, classes):
    from sklearn import metrics as skm

    return skm.log_loss(y, proba, labels=classes)


@metric("rmse", "regression", False, sklearn_scoring="neg_root_mean_squared_error")
def _rmse(y, pred, proba, classes):
    diff = np.asarray(y, dtype=np.float64) - np.asarray(pred, dtype=np.float64)
    return float(np.sqrt(np.mean(diff * diff)))


@metric("mae", "regression", False, sklearn_scoring="neg_mean_absolute_error")
def _mae(y, pred, proba, classes):
    diff = np.asarray(y, dtype=np.float64) - np.asarray(pred, dtype=np.float64)
    return float(np.mean(np.abs(diff)))


@metric("r2", "regression", sklearn_scoring="r2")
def _r2(y, pred, proba, classes):
    from sklearn import metrics as skm

    return skm.r2_score(y, pred)


def for_task(task: str) -> list[Metric]:
    return [m for m in METRICS.values() if m.task == task]


def selection_metric(name: str, task: str) -> Metric:
    """The `train.metric` for this task, or a ParamsError listing the valid names."""
    valid = [m.name for m in for_task(task)]
    if name not in valid:
        raise ParamsError(
            f"params.yaml: train.metric: '{name}' is not a {task} metric "
            f"(valid: {', '.join(valid)})"
        )
    return METRICS[name]


def compute(
    task: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    classes: np.ndarray | None = None,
) -> dict[str, float]:
    """All metrics of `task`; probability metrics are skipped when `proba` is None."""
    return {
        m.name: float(m.fn(y_true, y_pred, proba, classes))
        for m in for_task(task)
        if proba is not None or not m.needs_proba
    }


def loss(task: str, y_true, y_pred, proba=None, classes=None) -> float:
    """The training loss logged as `train/loss` and `val/loss`: log loss, or mean squared error.

    Plain numpy on purpose: it runs at every iteration, where scikit-learn's input validation
    would cost more than the computation itself.
    """
    if task == "classification":
        if proba is None:
            return float("nan")
        index = np.searchsorted(classes, y_true)
        eps = np.finfo(np.float64).eps
        picked = np.clip(np.asarray(proba, dtype=np.float64)[np.arange(len(index)), index], eps, 1)
        return float(-np.mean(np.log(picked)))
    diff = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return float(np.mean(diff * diff))
