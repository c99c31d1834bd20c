"""Loading, validation, splitting and the manifest."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from ml_project.data import (
    MISSING_CATEGORY,
    coerce_features,
    load_source,
    read_manifest,
    run_etl,
    validate,
)
from ml_project.errors import DataError
from ml_project.params import DataParams


def params(**kw) -> DataParams:
    return DataParams(**kw)


def test_bundled_dataset_loads_with_identifier_column_names():
    frame, target = load_source(params())
    assert target == "target" and len(frame) == 569
    assert "mean_radius" in frame.columns and not any(" " in c for c in frame.columns)


def test_bundled_dataset_with_wrong_task_names_both(tmp_path):
    with pytest.raises(DataError, match=r"data.task: bundled dataset 'diabetes' is a regression"):
        load_source(params(source="diabetes", task="classification"))


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("data/raw/nope.csv", "y", r"data.source: file not found: data/raw/nope.csv"),
        ("table.xlsx", "y", r"neither a bundled dataset .* nor a .csv or .parquet file"),
        ("{csv}", None, r"data.target: required when data.source is a file"),
    ],
)
def test_file_source_errors(tmp_path, monkeypatch, source, target, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.csv").write_text("a,y\n1,0\n")
    with pytest.raises(DataError, match=message):
        load_source(params(source=source.format(csv="ok.csv"), target=target))


def test_empty_csv_file_is_reported(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match=r"is empty"):
        load_source(params(source=str(path), target="y"))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.iloc[0:0], r"input table is empty"),
        (
            lambda f: f.drop(columns="churn"),
            r"data.target: column 'churn' not found; columns are: age",
        ),
        (lambda f: f.assign(churn=f["churn"].where(f.index > 2)), r"'churn' \(target\): 3 missing"),
        (lambda f: f.assign(churn="yes"), r"a single class \('yes'\)"),
        (lambda f: f.assign(when=pd.Timestamp("2024-01-01")), r"column 'when': dtype datetime64"),
        (lambda f: f.assign(blank=np.nan), r"column 'blank': every value is missing"),
        (lambda f: f.assign(obj=[{"a": 1}] * len(f)), r"column 'obj': holds dict values"),
        (lambda f: f[["churn"]], r"no feature columns besides the target 'churn'"),
    ],
)
def test_validation_errors_name_the_problem(messy, mutate, message):
    with pytest.raises(DataError, match=message) as info:
        validate(mutate(messy), "churn", "classification")
    assert "\n" not in str(info.value)


def test_regression_target_must_be_numeric(messy):
    with pytest.raises(DataError, match=r"'churn' \(target\): dtype .* is not numeric"):
        validate(messy, "churn", "regression")


def test_rare_class_is_reported_before_the_split_fails(messy):
    frame = messy.copy()
    frame.loc[0, "churn"] = "maybe"
    with pytest.raises(DataError, match=r"class 'maybe' has 1 rows"):
        validate(frame, "churn", "classification")


def test_feature_kinds_are_inferred(messy):
    kinds = {f.name: f.kind for f in validate(messy, "churn", "classification")}
    assert kinds == {
        "age": "numeric",
        "income": "numeric",
        "city": "categorical",
        "member": "categorical",
    }


def test_coerce_features_marks_missing_categories_and_keeps_nan(messy):
    features = validate(messy, "churn", "classification")
    X = coerce_features(messy, features)
    assert list(X.columns) == ["age", "income", "city", "member"]
    assert X["age"].dtype == np.float64 and X["age"].isna().sum() == messy["age"].isna().sum()
    assert (X["city"] == MISSING_CATEGORY).sum() == messy["city"].isna().sum()
    assert set(X["member"]) == {"True", "False"}


def test_coerce_features_rejects_text_in_numeric_column(messy):
    features = validate(messy, "churn", "classification")
    bad = messy.astype({"age": object})
    bad.loc[3, "age"] = "forty"
    with pytest.raises(DataError, match=r"column 'age': expected numbers, found 'forty'"):
        coerce_features(bad, features)


def test_etl_writes_stratified_splits_and_manifest(tmp_path, messy):
    src = tmp_path / "messy.csv"
    messy.to_csv(src, index=False)
    out = tmp_path / "processed"
    manifest = run_etl(params(source=str(src), target="churn", seed=3), out)
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "test.parquet",
        "train.parquet",
        "val.parquet",
    ]
    assert sum(manifest.rows.values()) == len(messy)
    assert manifest.rows == {"train": 144, "val": 48, "test": 48}
    overall = (messy["churn"] == "yes").mean()
    for split, counts in manifest.class_balance.items():
        share = counts["yes"] / sum(counts.values())
        assert abs(share - overall) < 0.03, split
    assert read_manifest(out).data_version == manifest.data_version
    assert json.loads((out / "manifest.json").read_text())["features"][2]["kind"] == "categorical"


def test_etl_is_deterministic_and_seed_sensitive(tmp_path):
    first = run_etl(params(), tmp_path / "a").data_version
    assert run_etl(params(), tmp_path / "b").data_version == first
    assert run_etl(params(seed=7), tmp_path / "c").data_version != first


def test_failed_etl_leaves_previous_output_untouched(tmp_path):
    out = tmp_path / "processed"
    run_etl(params(), out)
    before = (out / "manifest.json").read_text()
    with pytest.raises(DataError):
        run_etl(params(source=str(tmp_path / "missing.csv"), target="y"), out)
    assert (out / "manifest.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["processed"]


def test_file_sources_must_live_under_data_raw(tmp_path, monkeypatch):
    from ml_project.data import require_tracked_location

    monkeypatch.chdir(tmp_path)
    require_tracked_location(params(source="data/raw/x.csv", target="y"))
    require_tracked_location(params())
    with pytest.raises(DataError, match=r"data.source: elsewhere/x.csv is outside data/raw/"):
        require_tracked_location(params(source="elsewhere/x.csv", target="y"))


# --- data.task: auto ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        ("breast_cancer", None, ("classification", "bundled dataset")),
        ("diabetes", None, ("regression", "bundled dataset")),
        ("{csv}", "churn", ("classification", "inferred: target 'churn' holds text")),
        ("{csv}", "member", ("classification", "inferred: target 'member' holds booleans")),
        ("{csv}", "stars", ("classification", "inferred: 5 distinct integer values in 'stars'")),
        ("{csv}", "visits", ("regression", "inferred: 60 distinct numeric values in 'visits'")),
        ("{csv}", "income", ("regression", "inferred: 240 distinct numeric values in 'income'")),
    ],
)
def test_task_is_inferred_from_the_target(tmp_path, messy, source, target, expected):
    from ml_project.data import infer_task

    messy = messy.assign(stars=np.arange(len(messy)) % 5 + 1.0, visits=np.arange(len(messy)) % 60)
    messy.to_csv(tmp_path / "m.csv", index=False)
    p = params(source=source.format(csv=tmp_path / "m.csv"), target=target)
    frame, name = load_source(p)
    assert infer_task(frame, name, p) == expected


def test_explicit_task_wins_and_a_contradiction_is_one_line(tmp_path, messy):
    messy.assign(stars=np.arange(len(messy)) % 5).to_csv(tmp_path / "m.csv", index=False)
    src = str(tmp_path / "m.csv")
    assert run_etl(params(source=src, target="stars"), tmp_path / "a").task == "classification"
    explicit = run_etl(params(source=src, target="stars", task="regression"), tmp_path / "b")
    assert explicit.task == "regression" and explicit.task_reason == "data.task"
    with pytest.raises(DataError) as info:
        run_etl(params(source=src, target="churn", task="regression"), tmp_path / "c")
    assert re.fullmatch(
        r"column 'churn' \(target\): dtype \w+ is not numeric, so data.task: regression cannot "
        r"use it; set data.task: classification \(or auto\)",
        str(info.value),
    )


def test_auto_task_says_why_when_its_choice_fails(tmp_path, messy):
    frame = messy.assign(code=np.r_[np.arange(len(messy) - 1) % 3, 7])
    frame.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(
        DataError,
        match=r"class 7 has 1 rows; .* \(data.task: auto chose "
        r"classification; inferred: 4 distinct integer values in 'code'\)$",
    ):
        run_etl(params(source=str(tmp_path / "m.csv"), target="code"), tmp_path / "out")


def test_auto_metric_is_the_task_standard():
    from ml_project.errors import ParamsError
    from ml_project.params import TrainParams, resolve_task

    data, train = resolve_task(params(), TrainParams(), "regression")
    assert (data.task, train.metric) == ("regression", "rmse")
    assert resolve_task(params(), TrainParams(metric="r2"), "regression")[1].metric == "r2"
    with pytest.raises(ParamsError, match=r"data.task is 'classification' but the processed"):
        resolve_task(params(task="classification"), TrainParams(), "regression")
