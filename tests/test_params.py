"""Params are parsed once; every mistake is one line naming the key and the valid choices."""

from __future__ import annotations

import pytest
import yaml

from ml_project.errors import ParamsError
from ml_project.params import DataParams, ExportParams, flatten, read_params, section
from ml_project.training import load_train_config

ROOT_PARAMS = yaml.safe_load(open("params.yaml"))  # noqa: SIM115 - tests run from the root


def with_change(path: str, value):
    raw = yaml.safe_load(yaml.safe_dump(ROOT_PARAMS))
    # The cases assume a classification project (a generated project may default to regression).
    raw["data"]["source"], raw["data"]["task"] = "breast_cancer", "classification"
    raw["train"]["metric"] = "f1"
    *parents, leaf = path.split(".")
    node = raw
    for p in parents:
        node = node[p]
    if value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return raw


DELETE = object()


def test_root_params_are_valid():
    config = load_train_config(ROOT_PARAMS)
    assert config.model == ROOT_PARAMS["model"]
    assert section(ROOT_PARAMS, "export", ExportParams).formats == ("onnx", "torchscript")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("model", "xgb", r"model: unknown model 'xgb' \(valid: linear, rf, hgb, svm, knn"),
        ("models.xgb", {"depth": 3}, r"models.xgb: unknown model \(valid: linear, rf, hgb"),
        (
            "models.hgb.learning_rte",
            0.1,
            r"models.hgb.learning_rte: unknown key \(valid keys: "
            r"learning_rate, max_iter",
        ),
        (
            "models.hgb.learning_rate",
            -1,
            r"models.hgb.learning_rate: Input should be greater "
            r"than 0 \(got -1\)",
        ),
        (
            "models.rf.n_estimators",
            "many",
            r"models.rf.n_estimators: Input should be a valid "
            r"integer",
        ),
        (
            "models.svm.kernel",
            "cubic",
            r"models.svm.kernel: Input should be 'rbf', 'linear', "
            r"'poly' or 'sigmoid' \(got 'cubic'\)",
        ),
        (
            "train.metric",
            "rmse",
            r"train.metric: 'rmse' is not a classification metric "
            r"\(valid: accuracy, f1, roc_auc, log_loss",
        ),
        (
            "train.lr",
            1,
            r"train.lr: unknown key \(valid keys: metric, seed, resume, cv_folds, cv_final\)",
        ),
        ("data.task", "ranking", r"data.task: Input should be 'auto', 'classification' or"),
        ("data.test_size", 1.5, r"data.test_size: Input should be less than 1"),
        # YAML's 1 is a valid float, so this is a range error; `true` is not a number at all.
        ("data.test_size", 1, r"data.test_size: Input should be less than 1 \(got 1\)"),
        ("data.test_size", True, r"data.test_size: Input should be a number, not a boolean"),
        ("train.cv_folds", True, r"train.cv_folds: Input should be a number, not a boolean"),
        ("models.mlp.hidden_sizes", [64, True], r"hidden_sizes: .*a number, not a boolean"),
        ("models.linear.alpha", "inf", r"models.linear.alpha: Input should be a finite number"),
        ("models.linear.alpha", float("inf"), r"models.linear.alpha: .*finite number"),
        ("models.hgb.learning_rate", float("nan"), r"learning_rate: .*finite number"),
        (
            "data.id_columns",
            "ignore",
            r"data.id_columns: Input should be 'error', 'drop' or 'keep'",
        ),
        ("data.max_categories", 0, r"data.max_categories: Input should be greater than or equal"),
        ("model", DELETE, r"model: must name one entry of models:"),
    ],
)
def test_params_errors_name_key_and_choices(path, value, message):
    with pytest.raises(ParamsError, match=message) as info:
        load_train_config(with_change(path, value))
    assert "\n" not in str(info.value)


def test_integers_and_booleans_still_work_where_they_are_meant():
    raw = with_change("models.linear.alpha", 1)
    raw["model"] = "linear"
    assert load_train_config(raw).hyperparams.alpha == 1.0
    assert load_train_config(with_change("train.resume", False)).train.resume is False


def test_sizes_must_leave_training_rows():
    with pytest.raises(ParamsError, match=r"data: .*test_size \+ val_size must be below 0.9"):
        section({"data": {"test_size": 0.5, "val_size": 0.45}}, "data", DataParams)


def test_export_format_choices_are_listed():
    with pytest.raises(ParamsError, match=r"export.formats.0: Input should be 'onnx'"):
        section({"export": {"formats": ["pmml"]}}, "export", ExportParams)
    with pytest.raises(ParamsError, match=r"export.atol: Input should be a finite number"):
        section({"export": {"atol": float("inf")}}, "export", ExportParams)


def test_missing_and_broken_params_file(tmp_path):
    with pytest.raises(ParamsError, match=r"params.yaml: file not found"):
        read_params(tmp_path / "params.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [\n")
    with pytest.raises(ParamsError, match=r"bad.yaml line \d+: not valid YAML"):
        read_params(bad)


def test_run_params_are_flat_and_only_the_active_model():
    flat = load_train_config(ROOT_PARAMS).run_params()
    assert flat["models.hgb.learning_rate"] == ROOT_PARAMS["models"]["hgb"]["learning_rate"]
    assert not any(k.startswith("models.rf.") for k in flat)
    assert flatten({"a": {"b": {"c": 1}, "d": []}}) == {"a.b.c": 1, "a.d": []}
