"""Ensembles of registered models: `voting` and `stacking`, built on scikit-learn's own.

Members are other registry entries, scikit-learn or torch alike (the torch estimators follow
the estimator contract, so scikit-learn can clone and cross-validate them). Each member is
configured inside the ensemble's own block, so that `models.<ensemble>` alone decides what
trains, and DVC re-runs it exactly when that block changes:

    voting:
      members: [linear, hgb, mlp]          # each with its defaults
    stacking:
      members:                             # or with settings (unset keys keep defaults)
        hgb: {learning_rate: 0.05}
        mlp: {max_epochs: 30}
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator
from sklearn.base import BaseEstimator
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import column_or_1d

from ml_project.errors import ParamsError
from ml_project.models.base import (
    Hyperparams,
    ModelSpec,
    ensemble_members,
    final_step,
    get_spec,
    owner_of,
    register,
)
from ml_project.params import parse_section


class EnsembleParams(Hyperparams):
    name: ClassVar[str] = ""
    members: tuple[str, ...] | dict[str, dict[str, Any] | None] = Field(
        ("linear", "hgb", "mlp"), validate_default=True
    )

    @field_validator("members")
    @classmethod
    def _as_dict(cls, value):
        names = list(value)
        if len(names) < 2:
            raise ValueError("an ensemble needs at least 2 members")
        if len(set(names)) != len(names):
            raise ValueError("a member is named twice")
        return value if isinstance(value, dict) else dict.fromkeys(value)

    @model_validator(mode="after")
    def _members_are_valid(self):
        self.member_params()  # raises a ParamsError naming the member and key
        return self

    def member_params(self) -> dict[str, Hyperparams]:
        """Each member's validated hyperparameters, keyed by registry name."""
        parsed = {}
        members = self.members if isinstance(self.members, dict) else dict.fromkeys(self.members)
        for member, block in members.items():
            key = f"models.{self.name}.members.{member}"
            valid = ensemble_members()
            if member not in valid:
                raise ParamsError(
                    f"params.yaml: {key}: not a model that can be a member "
                    f"(valid: {', '.join(valid)})"
                )
            parsed[member] = parse_section(get_spec(member).hyperparams, block, key)
        return parsed


class VotingParams(EnsembleParams):
    name: ClassVar[str] = "voting"
    voting: Literal["soft", "hard"] = Field("soft", description="classification only")
    weights: tuple[float, ...] | None = None

    @model_validator(mode="after")
    def _one_weight_per_member(self):
        if self.weights is not None and len(self.weights) != len(self.members):
            raise ValueError(
                f"needs one weight per member ({len(self.members)}), got {len(self.weights)}"
            )
        return self


class StackingParams(EnsembleParams):
    name: ClassVar[str] = "stacking"
    final_estimator: str = Field("linear", description="the meta-learner, a registry name")
    cv: int = Field(5, ge=2, description="folds of the out-of-fold member predictions")
    passthrough: bool = False

    @field_validator("final_estimator")
    @classmethod
    def _registered(cls, value):
        valid = ensemble_members()
        if value not in valid:
            raise ValueError(f"unknown model '{value}' (valid: {', '.join(valid)})")
        return value


def _members(task, hp: EnsembleParams, seed, metric) -> list[tuple[str, Any]]:
    """(name, estimator) pairs; members that want scaled inputs get their own scaler."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    members = []
    for name, params in hp.member_params().items():
        spec = get_spec(name)
        est = spec.build(task, params, seed, metric)
        members.append((name, make_pipeline(StandardScaler(), est) if spec.scale else est))
    return members


def _build_voting(task, hp: VotingParams, seed, metric):
    from sklearn.ensemble import VotingClassifier, VotingRegressor

    members = _members(task, hp, seed, metric)
    if task == "classification":
        # flatten_transform only shapes transform(); skl2onnx converts the unflattened form.
        return VotingClassifier(
            members, voting=hp.voting, weights=hp.weights, flatten_transform=False
        )
    return VotingRegressor(members, weights=hp.weights)


def _build_stacking(task, hp: StackingParams, seed, metric):
    from sklearn.ensemble import StackingClassifier, StackingRegressor
    from sklearn.model_selection import KFold, StratifiedKFold

    final_spec = get_spec(hp.final_estimator)
    final = final_spec.build(task, final_spec.hyperparams(), seed, metric)
    if task == "classification":
        folds = StratifiedKFold(hp.cv, shuffle=True, random_state=seed)
        cls = StackingClassifier
    else:
        folds = KFold(hp.cv, shuffle=True, random_state=seed)
        cls = StackingRegressor
    return cls(
        _members(task, hp, seed, metric),
        final_estimator=final,
        cv=folds,
        passthrough=hp.passthrough,
    )


def _members_after_fit(model) -> None:
    """Run each fitted member's own `after_fit` (e.g. hgb's float32-exact thresholds)."""
    for name, fitted in model.named_estimators_.items():
        spec = get_spec(name)
        if spec.after_fit is not None:
            spec.after_fit(final_step(fitted))


def _members_onnx_converters(model) -> None:
    """The converters the members' families (and the meta-learner's) need."""
    fitted = [(get_spec(n), final_step(m)) for n, m in model.named_estimators_.items()]
    final = getattr(model, "final_estimator_", None)
    owner = None if final is None else owner_of(final)
    if owner is not None:
        fitted.append((owner, final))
    for spec, estimator in fitted:
        if spec.onnx_converters is not None:
            spec.onnx_converters(estimator)


register(
    ModelSpec(
        "voting",
        VotingParams,
        _build_voting,
        scale=False,
        after_fit=_members_after_fit,
        onnx_converters=_members_onnx_converters,
        ensemble_member=False,
        description="soft/hard voting (classification), averaging (regression)",
        trusted_types=("sklearn.utils._bunch.Bunch",),  # named_estimators_; members add theirs
    )
)
register(
    ModelSpec(
        "stacking",
        StackingParams,
        _build_stacking,
        scale=False,
        after_fit=_members_after_fit,
        onnx_converters=_members_onnx_converters,
        ensemble_member=False,
        description="a meta-learner on out-of-fold member predictions",
        trusted_types=(
            "sklearn.utils._bunch.Bunch",
            "sklearn.model_selection._split.KFold",
            "sklearn.model_selection._split.StratifiedKFold",
        ),
    )
)


class FoldEnsemble(BaseEstimator):
    """The K fitted fold pipelines of a cross-validation (`train.cv_final: ensemble`),
    averaged: class probabilities, or predictions for regression. Each pipeline takes the raw
    columns and holds its own fitted preprocessing.

    `pipelines` are the (unfitted) fold models; `fit` fits a clone of each on the same data.
    Cross-validation, which already fitted them on their folds, uses `from_fitted`.
    """

    def __init__(self, pipelines=None, task: str = "classification"):
        self.pipelines = pipelines
        self.task = task

    @classmethod
    def from_fitted(cls, fitted: list, task: str) -> FoldEnsemble:
        from sklearn.base import clone

        ensemble = cls([clone(p) for p in fitted], task)
        ensemble._set_fitted(list(fitted))
        return ensemble

    def _set_fitted(self, fitted: list) -> None:
        self.pipelines_ = fitted
        first = fitted[0]
        if self.task == "classification":
            self.classes_ = np.asarray(first.classes_)
        self.n_features_in_ = first.n_features_in_
        if hasattr(first, "feature_names_in_"):
            self.feature_names_in_ = first.feature_names_in_

    def fit(self, X, y):
        """Fit a clone of every fold pipeline on (X, y)."""
        from sklearn.base import clone

        if not self.pipelines:
            raise ValueError("FoldEnsemble needs at least one pipeline (pipelines=[...])")
        if self.task not in ("classification", "regression"):
            raise ValueError(f"task: '{self.task}' (valid: classification, regression)")
        y = column_or_1d(y, warn=True)
        self._set_fitted([clone(p).fit(X, y) for p in self.pipelines])
        return self

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy for classification, R^2 for regression (scikit-learn's mixins' scores)."""
        from sklearn.metrics import accuracy_score, r2_score

        score = accuracy_score if self.task == "classification" else r2_score
        return float(score(y, self.predict(X), sample_weight=sample_weight))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if self.task == "classification":
            from sklearn.utils import ClassifierTags

            tags.estimator_type = "classifier"
            tags.classifier_tags = ClassifierTags()
        else:
            from sklearn.utils import RegressorTags

            tags.estimator_type = "regressor"
            tags.regressor_tags = RegressorTags()
        first = (self.pipelines or [None])[0]
        if first is not None:  # accepts what its fold models accept
            from sklearn.utils import get_tags

            inner = get_tags(first).input_tags
            tags.input_tags.allow_nan = inner.allow_nan
            tags.input_tags.sparse = inner.sparse
        return tags

    def _check(self, X):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "pipelines_")
        return X

    @available_if(lambda self: self.task == "classification")
    def predict_proba(self, X) -> np.ndarray:
        self._check(X)
        return np.mean([p.predict_proba(X) for p in self.pipelines_], axis=0)

    def predict(self, X) -> np.ndarray:
        self._check(X)
        if self.task == "classification":
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        return np.mean([np.asarray(p.predict(X), dtype=np.float64) for p in self.pipelines_], 0)


def folds_of(pipeline) -> list | None:
    """The fitted fold pipelines when `pipeline` is an averaged fold ensemble, else None."""
    model = final_step(pipeline)
    return model.pipelines_ if isinstance(model, FoldEnsemble) else None
