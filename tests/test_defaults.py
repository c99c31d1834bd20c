"""One source of defaults: each model's params schema. params.yaml shows the same values, the
torch estimators and architectures take theirs from it, and an ensemble member configured with
defaults trains exactly the model that `model: <name>` trains. Any drift fails here."""

from __future__ import annotations

import inspect

import pytest
import yaml

from ml_project.metrics import METRICS
from ml_project.models import MODELS, get_spec
from ml_project.models.torch_params import MlpParams, ResNetParams, TorchParams
from tests.helpers.project import ROOT

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def _defaults(fn) -> dict:
    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


@pytest.mark.parametrize("name", list(MODELS))
def test_params_yaml_shows_every_schema_default(name):
    spec = get_spec(name)
    block = PARAMS["models"].get(name)
    assert block is not None, f"params.yaml has no models.{name} block"
    assert set(block) == set(spec.hyperparams.model_fields), name  # every key shown
    assert spec.hyperparams.model_validate(block) == spec.hyperparams(), name  # same values


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_torch_estimators_take_their_defaults_from_the_schema(task):
    from ml_project.models.torch_estimator import estimator_for

    defaults = _defaults(estimator_for(task).__init__)
    assert {k: defaults[k] for k in TorchParams.model_fields} == TorchParams().shared_params()


@pytest.mark.parametrize(("schema", "arch"), [(MlpParams, "MLP"), (ResNetParams, "ResNet")])
def test_architectures_take_their_defaults_from_the_schema(schema, arch):
    from ml_project.models import nets

    defaults = _defaults(getattr(nets, arch).__init__)
    assert defaults == schema().arch_params()


@pytest.mark.parametrize("ensemble", [n for n, s in MODELS.items() if not s.ensemble_member])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_default_ensemble_member_is_the_model_itself(ensemble, task):
    """`voting.members: [mlp]` trains the same MLP as `model: mlp` (with params.yaml's block)."""
    metric = METRICS["f1" if task == "classification" else "rmse"]
    spec = get_spec(ensemble)
    hp = spec.hyperparams.model_validate(PARAMS["models"][ensemble])
    built = spec.build(task, hp, 0, metric)
    for name, member in built.estimators:
        member = member[-1] if hasattr(member, "steps") else member
        alone = get_spec(name).hyperparams.model_validate(PARAMS["models"][name])
        expected = get_spec(name).build(task, alone, 0, metric)
        assert type(member) is type(expected), name
        assert member.get_params(deep=False) == expected.get_params(deep=False), name
