"""Inputs that used to pass validation and fail (or eat memory) later: ID-like columns,
unbounded one-hot width, infinite values and repeated column names (issue 16, sections 2, 5)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from ml_project.data import (
    handle_id_columns,
    id_like_columns,
    load_source,
    load_split,
    run_etl,
    validate,
)
from ml_project.errors import DataError
from ml_project.params import DataParams
from tests.helpers.data import messy_frame
from tests.helpers.project import make_project, sh

ID_MESSAGE = (
    r"^column 'customer_id' \(240 distinct values in 240 rows\) looks like a row ID; "
    r"set data.id_columns: drop to drop such columns \(or keep, to one-hot encode them "
    r"within data.max_categories\)$"
)


def with_ids(n: int = 240) -> pd.DataFrame:
    """The messy frame plus a unique string per row and a high-cardinality 'zip' column."""
    frame = messy_frame(n)
    rng = np.random.default_rng(5)
    frame.insert(0, "customer_id", [f"c{i:06d}" for i in rng.permutation(n)])
    frame.insert(1, "zip", [f"z{v % 60}" for v in rng.zipf(1.3, n)])
    return frame


def etl(tmp_path, frame: pd.DataFrame, **kw):
    src = tmp_path / "input.csv"
    frame.to_csv(src, index=False)
    return run_etl(DataParams(source=str(src), target="churn", **kw), tmp_path / "processed")


def train_config(model: str = "linear"):
    from ml_project.training import load_train_config

    raw = yaml.safe_load(open("params.yaml"))  # noqa: SIM115 - tests run from the root
    raw["data"].update(source="breast_cancer", task="classification")
    raw["model"], raw["train"]["metric"], raw["train"]["cv_folds"] = model, "f1", 0
    raw["models"]["hgb"]["max_iter"] = 10
    return load_train_config(raw)


# --- ID-like columns -------------------------------------------------------------------------
def test_id_column_is_refused_with_one_line_naming_it(tmp_path):
    with pytest.raises(DataError, match=ID_MESSAGE) as info:
        etl(tmp_path, with_ids())
    assert "\n" not in str(info.value)
    assert not (tmp_path / "processed").exists()
    sparse = with_ids()
    sparse.loc[:9, "customer_id"] = None  # an ID with gaps is still an ID
    features = validate(sparse, "churn", "classification")
    with pytest.raises(DataError, match=r"\(230 distinct values in 230 non-missing rows\)"):
        handle_id_columns(sparse, features, "error")


def test_dropped_id_column_is_recorded_and_the_rest_trains(tmp_path):
    from ml_project.training import fit

    manifest = etl(tmp_path, with_ids(), id_columns="drop")
    assert manifest.dropped == ["customer_id"]
    assert "customer_id" not in manifest.feature_names and "zip" in manifest.feature_names
    saved = json.loads((tmp_path / "processed" / "manifest.json").read_text())
    assert saved["dropped"] == ["customer_id"]
    assert "customer_id" not in pd.read_parquet(tmp_path / "processed" / "train.parquet")
    pipe = fit(train_config(), manifest, data_dir=tmp_path / "processed").pipeline
    X, y = load_split("test", manifest, tmp_path / "processed")
    assert np.mean(pipe.predict(X) == y) > 0.6


def test_integer_row_numbers_are_ids_but_float_features_never_are(tmp_path):
    frame = messy_frame()
    frame.to_csv(tmp_path / "indexed.csv")  # the index becomes an 'Unnamed: 0' column
    loaded, _ = load_source(DataParams(source=str(tmp_path / "indexed.csv"), target="churn"))
    features = validate(loaded, "churn", "classification")
    assert id_like_columns(loaded, features) == {"Unnamed: 0": 240}
    # Unique floats (measurements) and non-consecutive integers are ordinary features.
    frame["reading"] = np.random.default_rng(0).normal(size=len(frame))
    frame["account"] = np.arange(len(frame)) * 7 + 1000
    assert id_like_columns(frame, validate(frame, "churn", "classification")) == {}
    for name, task in (("breast_cancer", "classification"), ("diabetes", "regression")):
        bundled, target = load_source(DataParams(source=name, task=task))
        assert id_like_columns(bundled, validate(bundled, target, task)) == {}, name


# --- bounded one-hot width ---------------------------------------------------------------------
def test_kept_id_column_encodes_within_max_categories(tmp_path):
    from ml_project.models.preprocessing import preprocessor

    manifest = etl(tmp_path, with_ids(), id_columns="keep", max_categories=8, min_frequency=2)
    assert len(manifest.categories["customer_id"]) == 1  # no value repeats: the top one stays
    assert 1 < len(manifest.categories["zip"]) <= 8
    X, _ = load_split("train", manifest, tmp_path / "processed")
    width = preprocessor(manifest, scale=True).fit_transform(X).shape[1]
    bound = len(manifest.numeric) + sum(len(c) for c in manifest.categories.values())
    assert width == bound <= len(manifest.numeric) + 8 * len(manifest.categorical)


def test_rare_and_unseen_categories_encode_as_all_zeros(tmp_path):
    from ml_project.models.preprocessing import preprocessor

    manifest = etl(tmp_path, with_ids(), id_columns="drop", max_categories=3)
    X, _ = load_split("train", manifest, tmp_path / "processed")
    encoder = preprocessor(manifest, scale=True).fit(X)
    probe = X.head(2).copy()
    probe["zip"] = ["never-seen", sorted(set(X["zip"]) - set(manifest.categories["zip"]))[0]]
    zip_block = encoder.transform(probe)[:, len(manifest.numeric) :][:, :3]
    assert zip_block.shape == (2, 3) and not zip_block.any()


@pytest.mark.parametrize("model", ["linear", "hgb"])
def test_onnx_parity_holds_with_grouped_categories(tmp_path, model):
    from ml_project import export
    from ml_project.params import ExportParams
    from ml_project.persistence import save_native
    from ml_project.training import fit

    manifest = etl(tmp_path, with_ids(), id_columns="keep", max_categories=6, min_frequency=3)
    data = tmp_path / "processed"
    test_X, _ = load_split("test", manifest, data)
    assert not set(test_X["zip"]) <= set(manifest.categories["zip"])  # rare values are tested
    pipe = fit(train_config(model), manifest, data_dir=data).pipeline
    saved = save_native(pipe, tmp_path / "model.skops")
    params = ExportParams(formats=("onnx",))
    reports = export.run(saved, manifest, params, data, tmp_path / "export")
    (onnx,) = [p for p in reports if p.format == "onnx"]
    assert onnx.skipped is None and onnx.max_abs_diff <= 1e-4


# --- values and names that pass dtype checks -----------------------------------------------------
def test_infinite_values_are_refused_naming_column_and_count(tmp_path):
    frame = messy_frame()
    frame.loc[[3, 5, 8], "income"] = [np.inf, -np.inf, np.inf]
    with pytest.raises(DataError, match=r"^column 'income': 3 infinite value\(s\) \(inf or -inf\)"):
        etl(tmp_path, frame)
    frame = messy_frame()
    frame["churn"] = frame["income"].where(frame.index != 4, np.inf)
    with pytest.raises(DataError, match=r"^column 'churn' \(target\): 1 infinite value"):
        validate(frame, "churn", "regression")


def test_repeated_csv_header_is_refused_instead_of_renamed(tmp_path):
    src = tmp_path / "dup.csv"
    src.write_text("a,b,a,churn\n1,2,3,yes\n4,5,6,no\n")
    with pytest.raises(
        DataError, match=r"^column 'a': appears 2 times in the header of .*dup.csv; column names"
    ):
        load_source(DataParams(source=str(src), target="churn"))


def test_repeated_column_in_a_frame_is_refused():
    frame = messy_frame()
    frame.columns = ["age", "age", "city", "member", "churn"]
    with pytest.raises(DataError, match=r"^column 'age': appears more than once in the input"):
        validate(frame, "churn", "classification")


# --- through the real stage ------------------------------------------------------------------
@pytest.mark.slow
def test_etl_stage_refuses_id_column_and_keeps_previous_output(tmp_path):
    repo = make_project(tmp_path / "repo")
    sh("python stages/etl.py", repo)
    before = (repo / "data/processed/manifest.json").read_text()
    with_ids().to_csv(repo / "data/raw/ids.csv", index=False)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"].update(source="data/raw/ids.csv", target="churn", task="classification")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    proc = sh("python stages/etl.py", repo, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: column 'customer_id' (240 distinct values in 240 rows)")
    assert (repo / "data/processed/manifest.json").read_text() == before
