"""The model contract and the MODELS registry.

A model is one `ModelSpec`: a pydantic schema for its hyperparameters (the `models.<name>`
block of params.yaml) and a `build` function returning an unfitted scikit-learn-compatible
estimator. Adding a model is one spec plus one params block; nothing else branches on names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

from ml_project.errors import ParamsError
from ml_project.metrics import Metric
from ml_project.params import Section, parse_section


class StopFit(Exception):
    """Raised by a per-epoch callback to end training after the current epoch, keeping the
    best weights so far (as early stopping does).

    The torch epoch loop catches it from its callbacks, restores the best weights and records
    `stopped_by_ = str(exc)` on the estimator; for per-iteration models the trainer ends its
    logging loop the same way. Training then finishes normally: the final metrics row is still
    logged, with `"train/stopped": 1.0`. Pruning (e.g. Optuna's) raises it from `log(row, step)`.
    """


class Hyperparams(Section):
    """Base for a model's hyperparameter block: frozen, unknown keys rejected."""


Staged = Callable[[Any, np.ndarray], Iterator[np.ndarray]]


@dataclass(frozen=True)
class ModelSpec:
    """How to build one registered model.

    Attributes:
        name: registry key, as used in `model:` and `models.<name>`.
        hyperparams: schema of `models.<name>`.
        build: `(task, hyperparams, seed, metric) -> estimator` (unfitted).
        scale: standardise numeric features first (trees do not need it, and skipping it keeps
            ONNX thresholds bit-identical to scikit-learn's).
        staged: optional `(fitted_estimator, X) -> iterator of per-iteration outputs`
            (class probabilities or predictions) used to log one curve step per iteration.
        after_fit: optional `(fitted_estimator) -> None`, run once after fitting; for changes
            that leave predictions identical, such as making thresholds exact in float32.
        per_epoch: the estimator trains in epochs and its `fit` takes `eval_set=` (features
            already preprocessed), `callbacks=` (one metrics row per epoch) and `checkpoint=`
            (resumable state); see `torch_estimator.py`.
        trusted_types: the exact, fully qualified names of the types inside a fitted model that
            skops does not trust by default. Loading a model file trusts these and nothing else
            (see `persistence.py`); a registry test fits every model and checks the list.
    """

    name: str
    hyperparams: type[Hyperparams]
    build: Callable[[str, Any, int, Metric], Any]
    scale: bool = True
    staged: Staged | None = None
    after_fit: Callable[[Any], None] | None = None
    per_epoch: bool = False
    description: str = ""
    trusted_types: tuple[str, ...] = ()


MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in MODELS:
        raise ValueError(f"model '{spec.name}' registered twice")
    MODELS[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ParamsError(
            f"params.yaml: model: unknown model '{name}' (valid: {', '.join(MODELS)})"
        )
    return MODELS[name]


def parse_models(raw: Mapping[str, Any] | None, active: str) -> dict[str, BaseModel]:
    """Validate every `models.<name>` block, and that `active` names a registered model."""
    get_spec(active)
    raw = dict(raw or {})
    unknown = [name for name in raw if name not in MODELS]
    if unknown:
        raise ParamsError(
            f"params.yaml: models.{unknown[0]}: unknown model (valid: {', '.join(MODELS)})"
        )
    return {
        name: parse_section(spec.hyperparams, raw.get(name), f"models.{name}")
        for name, spec in MODELS.items()
    }
