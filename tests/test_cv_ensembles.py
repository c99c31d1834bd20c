"""Cross-validation, voting and stacking: agreement with scikit-learn, exports, bad params."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import yaml
from sklearn.model_selection import cross_val_score

from ml_project import export, training
from ml_project.cv import splitter
from ml_project.data import load_split, run_etl
from ml_project.errors import ParamsError
from ml_project.metrics import METRICS
from ml_project.models import get_spec, parse_models
from ml_project.params import DataParams, ExportParams, TrainParams, parse_section
from ml_project.persistence import load_native, save_native


@pytest.fixture(scope="module")
def etl(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    return run_etl(DataParams(), out), out


def config(model: str, **train):
    raw = yaml.safe_load(open("params.yaml"))  # noqa: SIM115
    raw["model"] = model
    # breast_cancer, as the `etl` fixture builds it (a generated project may default to regression)
    raw["data"]["source"], raw["data"]["task"] = "breast_cancer", "classification"
    raw["train"].update({"metric": "f1", **train})
    raw["models"]["mlp"]["max_epochs"] = 6
    for name in ("voting", "stacking"):
        raw["models"][name]["members"] = {"linear": {}, "mlp": {"max_epochs": 6}}
    raw["models"]["stacking"]["cv"] = 2  # the fewest out-of-fold splits: each is a fit per member
    return training.load_train_config(raw)


def train_val(manifest, data_dir):
    X_tr, y_tr = load_split("train", manifest, data_dir)
    X_va, y_va = load_split("val", manifest, data_dir)
    return pd.concat([X_tr, X_va], ignore_index=True), np.concatenate([y_tr, y_va])


def test_cv_metrics_agree_with_sklearn_cross_val_score(etl, tmp_path):
    manifest, data_dir = etl
    result = training.fit(config("linear", cv_folds=5), manifest, data_dir=data_dir)
    summary = result.history[-1]

    X, y = train_val(manifest, data_dir)
    spec = get_spec("linear")
    pipe = spec.pipeline(manifest, "classification", spec.hyperparams(), 42, METRICS["f1"])
    for name in ("f1", "accuracy", "roc_auc"):
        scores = cross_val_score(
            pipe, X, y, cv=splitter("classification", 5, 42), scoring=METRICS[name].sklearn_scoring
        )
        assert summary[f"cv/{name}_mean"] == pytest.approx(scores.mean(), rel=1e-9)
        assert summary[f"cv/{name}_std"] == pytest.approx(scores.std(), rel=1e-9)
        for k, score in enumerate(scores, start=1):
            assert summary[f"fold{k}/val/{name}"] == pytest.approx(score, rel=1e-9)

    training.write_cv(result, tmp_path / "cv")
    oof = pd.read_parquet(tmp_path / "cv/oof.parquet")
    assert len(oof) == len(X) and sorted(oof["row"]) == list(range(len(X)))
    assert sorted(oof["fold"].unique()) == [1, 2, 3, 4, 5]
    np.testing.assert_array_equal(oof["target"], y)
    folds = yaml.safe_load((tmp_path / "cv/folds.json").read_text())
    assert folds["cv_folds"] == 5 and len(folds["folds"]) == 5 and folds["final"] == "refit"


def test_cv_off_writes_only_the_fold_count(etl, tmp_path):
    manifest, data_dir = etl
    result = training.fit(config("linear"), manifest, data_dir=data_dir)
    training.write_cv(result, tmp_path / "cv")
    assert [p.name for p in (tmp_path / "cv").iterdir()] == ["folds.json"]
    assert yaml.safe_load((tmp_path / "cv/folds.json").read_text()) == {"cv_folds": 0}


def test_torch_cv_curves_per_fold_and_an_averaged_fold_ensemble_exports(etl, tmp_path):
    manifest, data_dir = etl
    result = training.fit(
        config("mlp", cv_folds=3, cv_final="ensemble"), manifest, data_dir=data_dir
    )
    keys = set().union(*result.history)
    for k in (1, 2, 3):
        assert {f"fold{k}/train/loss", f"fold{k}/val/loss", f"fold{k}/val/f1"} <= keys
    assert result.history[0].keys() >= {"fold1/val/f1", "fold2/val/f1", "fold3/val/f1"}
    assert "cv/f1_mean" in result.history[-1] and "fold3/val/roc_auc" in result.history[-1]
    assert len(result.pipeline[-1].pipelines) == 3

    model = save_native(result.pipeline, tmp_path / "model.skops")
    parity = export.run(model, manifest, ExportParams(), data_dir, tmp_path / "export")
    assert parity[1].format == "onnx" and parity[1].max_abs_diff < 1e-5
    assert parity[1].label_agreement == 1.0


def test_hard_voting_exports_labels_with_parity(etl, tmp_path):
    manifest, data_dir = etl
    cfg = config("voting")
    hp = cfg.hyperparams.model_copy(update={"voting": "hard"})
    cfg = training.TrainConfig(cfg.data, "voting", hp, cfg.train, cfg.tracking)
    result = training.fit(cfg, manifest, data_dir=data_dir)
    assert not hasattr(result.pipeline, "predict_proba")
    assert result.history[-1]["val/f1"] > 0.9
    model = save_native(result.pipeline, tmp_path / "model.skops")
    parity = export.run(model, manifest, ExportParams(), data_dir, tmp_path / "export")
    assert parity[1].max_abs_diff == 0.0 and parity[1].label_agreement == 1.0


def test_stacking_of_linear_and_mlp_trains_exports_and_predicts(etl, tmp_path):
    manifest, data_dir = etl
    result = training.fit(config("stacking"), manifest, data_dir=data_dir)
    stack = result.pipeline[-1]
    assert list(stack.named_estimators_) == ["linear", "mlp"]
    assert type(stack.named_estimators_["mlp"][-1]).__name__ == "TorchClassifier"
    model = save_native(result.pipeline, tmp_path / "model.skops")
    parity = export.run(model, manifest, ExportParams(), data_dir, tmp_path / "export")
    assert parity[1].max_abs_diff <= 1e-4

    X_test, _ = load_split("test", manifest, data_dir)
    session = ort.InferenceSession(str(tmp_path / "export/model/model.onnx"))
    sig = export.signature(manifest, result.pipeline.classes_)
    labels, _ = export.onnx_outputs(
        session, export.onnx_feeds(session, X_test, sig), "classification"
    )
    np.testing.assert_array_equal(labels, load_native(model).predict(X_test))


@pytest.mark.parametrize(
    ("models", "active", "message"),
    [
        (
            {"voting": {"members": ["hgb", "xgb"]}},
            "voting",
            r"models\.voting\.members\.xgb: not a model that can be a member \(valid: linear, rf",
        ),
        (
            {"voting": {"members": {"hgb": {"learning_rte": 0.1}, "rf": None}}},
            "voting",
            r"models\.voting\.members\.hgb\.learning_rte: unknown key \(valid keys: learning_rate",
        ),
        ({"voting": {"members": ["hgb"]}}, "voting", r"models\.voting\.members: .*at least 2"),
        (
            {"voting": {"members": ["hgb", "rf"], "weights": [1]}},
            "voting",
            r"models\.voting.*one weight per member \(2\), got 1",
        ),
        (
            {"stacking": {"final_estimator": "stacking"}},
            "stacking",
            r"models\.stacking\.final_estimator: .*unknown model 'stacking' \(valid: linear",
        ),
    ],
)
def test_bad_ensemble_params_name_the_key(models, active, message):
    with pytest.raises(ParamsError, match=message):
        parse_models(models, active)


def test_one_fold_is_refused():
    with pytest.raises(ParamsError, match=r"train\.cv_folds: .*must be 0 \(off\) or at least 2"):
        parse_section(TrainParams, {"cv_folds": 1}, "train")
    with pytest.raises(ParamsError, match=r"train\.cv_final: .*'refit' or 'ensemble'"):
        parse_section(TrainParams, {"cv_final": "average"}, "train")


def test_an_averaged_fold_ensemble_of_hard_voting_is_refused_before_training(etl):
    manifest, data_dir = etl
    cfg = config("voting", cv_folds=3, cv_final="ensemble")
    hp = cfg.hyperparams.model_copy(update={"voting": "hard"})
    cfg = training.TrainConfig(cfg.data, "voting", hp, cfg.train, cfg.tracking)
    with pytest.raises(ParamsError, match=r"train\.cv_final: 'ensemble' averages probabilities"):
        training.fit(cfg, manifest, data_dir=data_dir)
