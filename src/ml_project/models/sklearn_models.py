"""scikit-learn models: one hyperparameter schema and one builder each, both tasks."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from ml_project.models.base import Hyperparams, ModelSpec, register


def _is_classification(task: str) -> bool:
    return task == "classification"


# --- linear -----------------------------------------------------------------------------------
class LinearParams(Hyperparams):
    alpha: float = Field(1.0, gt=0, description="L2 strength (LogisticRegression C = 1/alpha)")
    max_iter: int = Field(1000, ge=1)


def _build_linear(task, hp: LinearParams, seed, metric):
    from sklearn.linear_model import LogisticRegression, Ridge

    if _is_classification(task):
        return LogisticRegression(C=1.0 / hp.alpha, max_iter=hp.max_iter, random_state=seed)
    return Ridge(alpha=hp.alpha, max_iter=hp.max_iter, random_state=seed)


register(ModelSpec("linear", LinearParams, _build_linear, description="logistic / ridge"))


# --- random forest ----------------------------------------------------------------------------
class RandomForestParams(Hyperparams):
    n_estimators: int = Field(200, ge=1, le=5000)
    max_depth: int | None = Field(None, ge=1)
    min_samples_leaf: int = Field(1, ge=1)
    max_features: float | Literal["sqrt", "log2"] | None = "sqrt"


def _build_rf(task, hp: RandomForestParams, seed, metric):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    cls = RandomForestClassifier if _is_classification(task) else RandomForestRegressor
    max_features = hp.max_features
    if not _is_classification(task) and max_features == "sqrt":
        max_features = 1.0  # the regression default: all features
    return cls(
        n_estimators=hp.n_estimators,
        max_depth=hp.max_depth,
        min_samples_leaf=hp.min_samples_leaf,
        max_features=max_features,
        random_state=seed,
        n_jobs=1,
    )


def _staged_forest(model, X):
    """Running average over the first k trees: the forest's prediction after k 'iterations'."""
    total = None
    proba = hasattr(model, "predict_proba")
    for k, tree in enumerate(model.estimators_, start=1):
        out = tree.predict_proba(X) if proba else tree.predict(X)
        total = out.astype(np.float64) if total is None else total + out
        yield total / k


register(
    ModelSpec(
        "rf",
        RandomForestParams,
        _build_rf,
        scale=False,
        staged=_staged_forest,
        description="random forest; one curve step per tree",
        trusted_types=("sklearn.tree._tree.Tree",),
    )
)


# --- histogram gradient boosting --------------------------------------------------------------
class HistGradientBoostingParams(Hyperparams):
    learning_rate: float = Field(0.1, gt=0, le=1)
    max_iter: int = Field(100, ge=1, le=10000)
    max_leaf_nodes: int = Field(31, ge=2)
    max_depth: int | None = Field(None, ge=1)
    min_samples_leaf: int = Field(20, ge=1)
    l2_regularization: float = Field(0.0, ge=0)
    early_stopping: bool = Field(False, description="stop on train.metric, scikit-learn's way")
    n_iter_no_change: int = Field(10, ge=1)
    validation_fraction: float = Field(0.1, gt=0, lt=1)


def _build_hgb(task, hp: HistGradientBoostingParams, seed, metric):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = (
        HistGradientBoostingClassifier
        if _is_classification(task)
        else HistGradientBoostingRegressor
    )
    return cls(
        learning_rate=hp.learning_rate,
        max_iter=hp.max_iter,
        max_leaf_nodes=hp.max_leaf_nodes,
        max_depth=hp.max_depth,
        min_samples_leaf=hp.min_samples_leaf,
        l2_regularization=hp.l2_regularization,
        early_stopping=hp.early_stopping,
        n_iter_no_change=hp.n_iter_no_change,
        validation_fraction=hp.validation_fraction,
        scoring=metric.sklearn_scoring,
        random_state=seed,
    )


def _staged_hgb(model, X):
    yield from (
        model.staged_predict_proba(X)
        if hasattr(model, "predict_proba")
        else model.staged_predict(X)
    )


def _float32_exact_thresholds(model) -> None:
    """Round split thresholds down to the nearest float32.

    Features reach the trees as float32 (see `CastFloat32`), so for every possible input
    `x <= t` and `x <= float32_floor(t)` agree: predictions do not change. ONNX stores
    thresholds as float32, and without this a threshold that rounds *up* onto a data value
    sends that value down the other branch.
    """
    for per_iteration in model._predictors:
        for predictor in per_iteration:
            t64 = predictor.nodes["num_threshold"]
            t32 = t64.astype(np.float32)
            t32 = np.where(t32 > t64, np.nextafter(t32, np.float32(-np.inf)), t32)
            predictor.nodes["num_threshold"] = t32.astype(np.float64)


register(
    ModelSpec(
        "hgb",
        HistGradientBoostingParams,
        _build_hgb,
        scale=False,
        staged=_staged_hgb,
        after_fit=_float32_exact_thresholds,
        description="histogram gradient boosting; one curve step per boosting iteration",
        trusted_types=("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",),
    )
)


# --- support vector machine -------------------------------------------------------------------
class SvmParams(Hyperparams):
    C: float = Field(1.0, gt=0)
    kernel: Literal["rbf", "linear", "poly", "sigmoid"] = "rbf"
    gamma: float | Literal["scale", "auto"] = "scale"
    epsilon: float = Field(0.1, ge=0, description="regression only")


def _build_svm(task, hp: SvmParams, seed, metric):
    from sklearn.svm import SVC, SVR

    if _is_classification(task):
        return SVC(C=hp.C, kernel=hp.kernel, gamma=hp.gamma, probability=True, random_state=seed)
    return SVR(C=hp.C, kernel=hp.kernel, gamma=hp.gamma, epsilon=hp.epsilon)


register(ModelSpec("svm", SvmParams, _build_svm, description="SVC / SVR"))


# --- k nearest neighbours ---------------------------------------------------------------------
class KnnParams(Hyperparams):
    n_neighbors: int = Field(5, ge=1)
    weights: Literal["uniform", "distance"] = "uniform"
    p: Literal[1, 2] = 2


def _build_knn(task, hp: KnnParams, seed, metric):
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    cls = KNeighborsClassifier if _is_classification(task) else KNeighborsRegressor
    return cls(n_neighbors=hp.n_neighbors, weights=hp.weights, p=hp.p)


register(
    ModelSpec(
        "knn",
        KnnParams,
        _build_knn,
        description="k nearest neighbours",
        # the tree "auto" picks, and its distance for p = 1 or 2 (brute force holds none)
        trusted_types=(
            "sklearn.neighbors._kd_tree.KDTree",
            "sklearn.metrics._dist_metrics.ManhattanDistance64",
            "sklearn.metrics._dist_metrics.EuclideanDistance64",
        ),
    )
)
