"""Models of the MODELS registry fitted on tiny in-memory data (a manifest-like stand-in)."""

from __future__ import annotations

import numpy as np

from ml_project.data import coerce_features, validate
from ml_project.metrics import METRICS
from ml_project.models import get_spec
from tests.helpers.data import messy_frame


class TinyManifest:
    """The two attributes the model side needs from a real manifest."""

    def __init__(self, features, task, target):
        self.features, self.task, self.target = features, task, target
        self.data_version = "test"

    numeric = property(lambda s: [f.name for f in s.features if f.kind == "numeric"])
    categorical = property(lambda s: [f.name for f in s.features if f.kind == "categorical"])


def tiny(task: str):
    frame = messy_frame(120, seed=1)
    target = "churn"
    if task == "regression":
        noise = np.random.default_rng(2).normal(0, 1, len(frame))
        frame["churn"] = frame["income"] / 1000 + (frame["city"] == "paris") * 3 + noise
    features = validate(frame, target, task)
    return (
        coerce_features(frame, features),
        frame[target].to_numpy(),
        TinyManifest(features, task, target),
    )


def fitted(name: str, task: str):
    X, y, manifest = tiny(task)
    spec = get_spec(name)
    hp = spec.hyperparams()
    if name == "rf":
        hp = spec.hyperparams(n_estimators=15)
    if spec.per_epoch:
        hp = spec.hyperparams(max_epochs=8)
    if not spec.ensemble_member:  # a scikit-learn member, a boosted one and a torch one, small
        small = {"members": {"linear": {}, "hgb": {"max_iter": 10}, "mlp": {"max_epochs": 5}}}
        if name == "stacking":
            small["cv"] = 2  # the fewest out-of-fold splits: each one refits every member
        hp = spec.hyperparams(**small)
    metric = METRICS["f1" if task == "classification" else "rmse"]
    pipe = spec.pipeline(manifest, task, hp, 0, metric)
    return spec.fit(pipe, X, y), X, y, manifest
