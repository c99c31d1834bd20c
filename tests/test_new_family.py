"""Adding a model family is one module plus its params block: a family registered here, in
the test alone, trains, is evaluated, exports to ONNX with parity and serves through predict,
without any other file knowing it exists."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import Field

from ml_project import evaluation, export, predict, training
from ml_project.data import load_split, run_etl
from ml_project.models import MODELS, Hyperparams, ModelSpec, register
from ml_project.params import DataParams, ExportParams
from ml_project.persistence import load_native, save_native
from tests.helpers.project import ROOT


# --- the whole family: a schema, a builder, a spec -------------------------------------------
class ExtraTreesParams(Hyperparams):
    n_estimators: int = Field(25, ge=1)
    min_samples_leaf: int = Field(2, ge=1)


def _build(task, hp: ExtraTreesParams, seed, metric):
    from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor

    cls = ExtraTreesClassifier if task == "classification" else ExtraTreesRegressor
    return cls(
        n_estimators=hp.n_estimators, min_samples_leaf=hp.min_samples_leaf, random_state=seed
    )


SPEC = ModelSpec(
    "extra_trees",
    ExtraTreesParams,
    _build,
    scale=False,
    description="extremely randomised trees",
    trusted_types=("sklearn.tree._tree.Tree",),
)


@pytest.fixture
def family():
    register(SPEC)
    try:
        yield SPEC
    finally:
        MODELS.pop(SPEC.name)


@pytest.mark.parametrize(
    ("source", "task", "metric"),
    [("breast_cancer", "classification", "f1"), ("diabetes", "regression", "rmse")],
)
def test_a_family_registered_in_a_test_trains_evaluates_exports_and_serves(
    family, tmp_path, source, task, metric
):
    data_dir = tmp_path / "data"
    manifest = run_etl(DataParams(source=source, task=task), data_dir)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["model"] = "extra_trees"
    raw["models"]["extra_trees"] = {"n_estimators": 30}  # its params block
    raw["data"].update(source=source, task=task)
    raw["train"]["metric"] = metric
    config = training.load_train_config(raw)
    assert config.spec is family and config.hyperparams.min_samples_leaf == 2

    # train: one curve step (no staged outputs), with every val metric
    result = training.fit(config, manifest, data_dir=data_dir)
    assert len(result.history) == 1 and f"val/{metric}" in result.final
    same = training.fit(config, manifest, data_dir=data_dir)
    assert same.final == result.final  # same params, identical metrics

    # evaluate: the saved model, loaded through the registry's trusted types
    model_path = save_native(result.pipeline, tmp_path / "model.skops")
    scores = evaluation.run(load_native(model_path), manifest, data_dir, tmp_path / "evaluation")
    assert f"test/{metric}" in scores
    if task == "classification":
        assert scores["test/f1"] > 0.85 and "test/roc_auc" in scores
    else:
        assert scores["test/r2"] > 0.2

    # export: skops and ONNX within tolerance; TorchScript does not apply
    parity = export.run(model_path, manifest, ExportParams(), data_dir, tmp_path / "export")
    by_format = {p.format: p for p in parity}
    assert by_format["onnx"].skipped is None and by_format["onnx"].max_abs_diff <= 1e-4
    assert by_format["torchscript"].skipped
    report = json.loads((tmp_path / "export/parity.json").read_text())
    assert set(report) == {"skops", "onnx"}  # metrics only
    skipped = json.loads((tmp_path / "export/model/skipped.json").read_text())
    assert set(skipped) == {"torchscript"}

    # serve: predict scores raw rows with the ONNX file alone
    X_test, _ = load_split("test", manifest, data_dir)
    rows = tmp_path / "rows.csv"
    X_test.to_csv(rows, index=False)
    out = tmp_path / "predictions.csv"
    predict.main(
        [str(rows), "--model", str(tmp_path / "export/model/model.onnx"), "--output", str(out)]
    )
    served = pd.read_csv(out)
    native = result.pipeline.predict(X_test)
    if task == "classification":
        assert np.mean(served["prediction"].to_numpy() == native) >= 0.99
        proba = result.pipeline.predict_proba(X_test)
        np.testing.assert_allclose(served.filter(like="proba_").to_numpy(), proba, atol=1e-4)
    else:
        np.testing.assert_allclose(served["prediction"], native, rtol=1e-4, atol=1e-3)


def test_the_registry_forgets_the_test_family():
    assert "extra_trees" not in MODELS
