"""predict's errors: a missing or foreign model, an unreadable input, no rows."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from skl2onnx import to_onnx as plain_to_onnx
from sklearn.linear_model import LinearRegression

from ml_project.errors import UserError
from ml_project.export import signature, to_onnx
from ml_project.predict import load_model, main, predict_frame, read_table
from tests.helpers.models import fitted


@pytest.fixture
def model_file(tmp_path):
    pipe, X, _, manifest = fitted("linear", "classification")
    path = tmp_path / "model.onnx"
    path.write_bytes(to_onnx(pipe, signature(manifest, pipe.classes_)).SerializeToString())
    return path, X


def test_predict_frame_scores_raw_rows(model_file):
    session, sig = load_model(model_file[0])
    out = predict_frame(session, sig, model_file[1].head(7))
    assert list(out.columns) == ["prediction", "proba_no", "proba_yes"] and len(out) == 7
    np.testing.assert_allclose(out[["proba_no", "proba_yes"]].sum(axis=1), 1.0, rtol=1e-5)


def test_model_errors(tmp_path):
    with pytest.raises(UserError, match=r"--model: .*nope.onnx not found; run the export stage"):
        load_model(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(UserError, match=r"--model: .*junk.onnx: not a valid ONNX model"):
        load_model(junk)
    foreign = tmp_path / "foreign.onnx"
    X = np.random.default_rng(0).normal(size=(10, 2)).astype(np.float32)
    foreign.write_bytes(
        plain_to_onnx(LinearRegression().fit(X, X[:, 0]), X[:1]).SerializeToString()
    )
    with pytest.raises(UserError, match=r"has no ml_project.signature metadata"):
        load_model(foreign)


def test_input_errors(tmp_path, model_file):
    with pytest.raises(UserError, match=r"input: .*rows.xlsx must be one of .csv, .parquet"):
        read_table(tmp_path / "rows.xlsx")
    with pytest.raises(UserError, match=r"input: file not found: .*rows.csv"):
        read_table(tmp_path / "rows.csv")
    session, sig = load_model(model_file[0])
    with pytest.raises(UserError, match=r"input has no rows"):
        predict_frame(session, sig, model_file[1].iloc[0:0])


def test_cli_exits_2_with_one_line_and_writes_nothing(tmp_path, model_file, capsys):
    pd.DataFrame({"age": [1.0]}).to_csv(tmp_path / "few.csv", index=False)
    with pytest.raises(SystemExit) as info:
        main(
            [
                str(tmp_path / "few.csv"),
                "--model",
                str(model_file[0]),
                "--output",
                str(tmp_path / "out.csv"),
            ]
        )
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: input is missing 3 required column(s): income, city, member")
    assert len(err.splitlines()) == 1 and not (tmp_path / "out.csv").exists()


def test_a_registry_alias_that_does_not_resolve_is_one_line(tmp_path, monkeypatch):
    from pathlib import Path

    from ml_project.predict import resolve_model

    assert resolve_model("export/model/model.onnx") == Path("export/model/model.onnx")
    with pytest.raises(UserError, match=r"expected models:/<name>@<alias>"):
        resolve_model("models:/ml_project")
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    (tmp_path / "params.yaml").write_text("tracking: {mlflow: {tracking_uri: null}}\n")
    # No store yet: said at once, and none is created as a side effect.
    missing = f"no registered model 'ml_project' with alias 'prod': the MLflow store {store} "
    with pytest.raises(UserError, match=re.escape(missing) + "does not exist"):
        resolve_model("models:/ml_project@prod")
    assert not store.exists()
    # A store without that model (created here with its tables, as a first run does).
    from mlflow import MlflowClient

    MlflowClient(f"sqlite:///{store}").search_experiments()
    with pytest.raises(UserError, match=r"no registered model 'ml_project' with alias 'prod' \("):
        resolve_model("models:/ml_project@prod")
