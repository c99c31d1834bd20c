"""Model registry. Importing this package registers the built-in models."""

from ml_project.models import sklearn_models, torch_models  # noqa: F401, I001  (register their specs)
from ml_project.models import ensembles  # noqa: F401, I001  (after the models it combines)
from ml_project.models.base import (
    MODELS,
    Hyperparams,
    ModelSpec,
    StopFit,
    ensemble_members,
    final_step,
    get_spec,
    parse_models,
    register,
    spec_of,
)

__all__ = [
    "MODELS",
    "Hyperparams",
    "ModelSpec",
    "StopFit",
    "ensemble_members",
    "final_step",
    "get_spec",
    "parse_models",
    "register",
    "spec_of",
]
