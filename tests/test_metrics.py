"""The METRICS registry agrees with scikit-learn, and user metrics plug in."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from ml_project import metrics as M
from ml_project.errors import ParamsError

rng = np.random.default_rng(0)
Y = rng.integers(0, 3, 200)
PROBA = rng.dirichlet([1, 1, 1], 200)
PRED = PROBA.argmax(axis=1)
CLASSES = np.array([0, 1, 2])


def test_classification_metrics_match_sklearn():
    got = M.compute("classification", Y, PRED, PROBA, CLASSES)
    assert got == pytest.approx(
        {
            "accuracy": skm.accuracy_score(Y, PRED),
            "f1": skm.f1_score(Y, PRED, average="macro"),
            "roc_auc": skm.roc_auc_score(Y, PROBA, multi_class="ovr"),
            "log_loss": skm.log_loss(Y, PROBA),
        }
    )


@pytest.mark.parametrize("seed", range(6))
def test_fast_f1_and_accuracy_equal_sklearn_on_awkward_labels(seed):
    r = np.random.default_rng(seed)
    labels = np.array(["no", "yes", "maybe", "never"])
    y = labels[r.integers(0, 3, 40)]  # "never" only ever predicted, never true
    pred = labels[r.integers(0 if seed % 2 else 1, 4, 40)]  # odd seeds: a class never predicted
    assert M.METRICS["f1"].fn(y, pred, None, None) == pytest.approx(
        skm.f1_score(y, pred, average="macro", zero_division=0), abs=1e-15
    )
    assert M.METRICS["accuracy"].fn(y, pred, None, None) == skm.accuracy_score(y, pred)
    assert M.METRICS["f1"].fn(y, y, None, None) == 1.0


def test_probability_metrics_are_skipped_without_probabilities():
    assert set(M.compute("classification", Y, PRED)) == {"accuracy", "f1"}


def test_regression_metrics_match_sklearn():
    y, pred = rng.normal(size=50), rng.normal(size=50)
    got = M.compute("regression", y, pred)
    assert got == pytest.approx(
        {
            "rmse": skm.root_mean_squared_error(y, pred),
            "mae": skm.mean_absolute_error(y, pred),
            "r2": skm.r2_score(y, pred),
        }
    )


def test_fast_loss_equals_sklearn():
    assert M.loss("classification", Y, PRED, PROBA, CLASSES) == pytest.approx(
        skm.log_loss(Y, PROBA)
    )
    labels = np.array(["a", "b"])[Y % 2]
    proba2 = np.c_[PROBA[:, 0], 1 - PROBA[:, 0]]
    assert M.loss("classification", labels, None, proba2, np.array(["a", "b"])) == pytest.approx(
        skm.log_loss(labels, proba2, labels=["a", "b"])
    )
    y, pred = rng.normal(size=50), rng.normal(size=50)
    assert M.loss("regression", y, pred) == pytest.approx(skm.mean_squared_error(y, pred))


def test_user_metric_registers_in_one_place():
    @M.metric("balanced_accuracy", "classification")
    def _bal(y, pred, proba, classes):
        return skm.balanced_accuracy_score(y, pred)

    try:
        assert M.selection_metric("balanced_accuracy", "classification").name == "balanced_accuracy"
        assert "balanced_accuracy" in M.compute("classification", Y, PRED)
    finally:
        del M.METRICS["balanced_accuracy"]


def test_selection_metric_lists_valid_names():
    with pytest.raises(
        ParamsError, match=r"'f1' is not a regression metric \(valid: rmse, mae, r2\)"
    ):
        M.selection_metric("f1", "regression")
