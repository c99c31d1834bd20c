"""The model contract and the MODELS registry.

A model family is one `ModelSpec`: a pydantic schema for its hyperparameters (the
`models.<name>` block of params.yaml), a `build` function returning an unfitted
scikit-learn-compatible estimator, and whatever else differs between families (how it is fit,
its outputs, fixes after fitting, ONNX converters, TorchScript, ensemble membership). Training,
cross-validation, evaluation and export ask the spec; none of them looks at estimator types.
Adding a family is one module that calls `register` plus one params block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ml_project.errors import ParamsError, UserError
from ml_project.metrics import Metric
from ml_project.params import Section, parse_section

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from ml_project.data import Manifest


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
Callback = Callable[[dict[str, float], int], None]  # (metrics row, step)


def final_step(model: Any) -> Any:
    """The estimator at the end of a pipeline (or the model itself)."""
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def _has_proba(model: Any) -> bool:
    from sklearn.base import is_classifier

    # scikit-learn hides predict_proba where a model has none (hard voting, say), fitted or not.
    return is_classifier(model) and hasattr(model, "predict_proba")


@dataclass(frozen=True)
class ModelSpec:
    """One registered model family, and everything the rest of the project asks about it.

    Attributes:
        name: registry key, as used in `model:` and `models.<name>`.
        hyperparams: schema of `models.<name>`; its defaults are the only defaults (params.yaml
            shows them, tests/test_defaults.py fails when they drift).
        build: `(task, hyperparams, seed, metric) -> estimator` (unfitted).
        scale: standardise numeric features first (trees do not need it, and skipping it keeps
            ONNX thresholds bit-identical to scikit-learn's).
        staged: optional `(fitted_estimator, X) -> iterator of per-iteration outputs`
            (class probabilities or predictions) used to log one curve step per iteration.
        after_fit: optional `(fitted_estimator) -> None`, run once after fitting; for changes
            that leave predictions identical, such as making thresholds exact in float32.
        per_epoch: the estimator trains in epochs and its `fit` takes `eval_set=` (features
            already preprocessed), `callbacks=` (one metrics row per epoch, may raise
            `StopFit`) and `checkpoint=` (resumable state); see `torch_estimator.py`. It has
            `max_epochs`, `patience` and, once fitted, `best_epoch_` and `stopped_by_`.
        has_proba: `(model, fitted or not) -> bool`: `outputs` includes class probabilities;
            the default says yes for every classifier that has `predict_proba`.
        onnx_converters: optional `(fitted estimator) -> None` that registers skl2onnx
            converters for the family's own estimator classes (scikit-learn's need none).
        torchscript: optional `(fitted estimator) -> nn.Module` taking preprocessed features:
            what the TorchScript export traces. None: the format does not apply.
        ensemble_member: may be a member (or meta-learner) of `voting` / `stacking`.
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
    has_proba: Callable[[Any], bool] = _has_proba
    onnx_converters: Callable[[Any], None] | None = None
    torchscript: Callable[[Any], Any] | None = None
    ensemble_member: bool = True
    description: str = ""
    trusted_types: tuple[str, ...] = ()

    def pipeline(
        self, manifest: Manifest, task: str, hyperparams: Any, seed: int, metric: Metric
    ) -> Pipeline:
        """The unfitted pipeline: this project's preprocessing, then the estimator, in a step
        named after the family (how `spec_of` finds the spec of a saved model)."""
        from sklearn.pipeline import Pipeline

        from ml_project.models.preprocessing import preprocessor

        estimator = self.build(task, hyperparams, seed, metric)
        return Pipeline(
            [("preprocess", preprocessor(manifest, self.scale)), (self.name, estimator)]
        )

    def outputs(self, model: Any, X: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """`(predictions, class probabilities or None)` of a fitted model (or pipeline): the
        one place that decides whether there are probabilities."""
        pred = np.asarray(model.predict(X))
        return pred, (np.asarray(model.predict_proba(X)) if self.has_proba(model) else None)

    def fit(
        self,
        pipeline: Pipeline,
        X: Any,
        y: Any,
        eval_set: tuple[Any, Any] | None = None,
        callbacks: Sequence[Callback] = (),
        checkpoint: Any = None,
        resume: bool = True,
    ) -> Pipeline:
        """Fit `pipeline` (from `self.pipeline`) on raw columns, then the after-fit fixes.

        Per-epoch estimators get the preprocessed `eval_set`, the `callbacks` and the
        checkpoint; the others fit in one call and ignore them.
        """
        if self.per_epoch:
            prep, estimator = pipeline[:-1], pipeline[-1]
            Xt = prep.fit_transform(X, y)
            eval_t = None if eval_set is None else (prep.transform(eval_set[0]), eval_set[1])
            estimator.fit(
                Xt, y, eval_set=eval_t, callbacks=callbacks, checkpoint=checkpoint, resume=resume
            )
        else:
            pipeline.fit(X, y)
        if self.after_fit is not None:
            self.after_fit(pipeline[-1])
        return pipeline

    def refit_hyperparams(self, hyperparams: Any, best_epochs: Sequence[int | None]) -> Any:
        """For a refit on train+val, where no val split is left to stop on: a per-epoch model
        trains for the folds' mean best epoch count, without early stopping."""
        if not self.per_epoch:
            return hyperparams
        epochs = max(1, round(float(np.mean([b + 1 for b in best_epochs if b is not None]))))
        return hyperparams.model_copy(update={"max_epochs": epochs, "patience": 0})


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


def spec_of(pipeline: Any) -> ModelSpec:
    """The spec that built a fitted pipeline (its last step is named after the family)."""
    steps = getattr(pipeline, "steps", None) or [("", None)]
    name = steps[-1][0]
    if name not in MODELS:
        raise UserError(
            f"model file: its last step '{name}' is no registered model "
            f"(valid: {', '.join(MODELS)}); retrain it with this project (dvc repro)"
        )
    return MODELS[name]


def ensemble_members() -> list[str]:
    """Registry names that may be members (or the meta-learner) of an ensemble."""
    return [name for name, spec in MODELS.items() if spec.ensemble_member]


def owner_of(estimator: Any) -> ModelSpec | None:
    """The spec declaring `estimator`'s exact type among its `trusted_types`, if any."""
    kind = f"{type(estimator).__module__}.{type(estimator).__qualname__}"
    return next((spec for spec in MODELS.values() if kind in spec.trusted_types), None)


def parse_models(raw: Mapping[str, Any] | None, active: str) -> dict[str, Hyperparams]:
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
