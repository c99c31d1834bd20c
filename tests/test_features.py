"""The user's ETL steps (features.py): parsing, the built-in transforms, and their failures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_project import features as F
from ml_project.data import read_manifest, run_etl
from ml_project.errors import DataError, ParamsError
from ml_project.params import DataParams, EtlParams
from tests.helpers.data import messy_frame


def run_steps(frame: pd.DataFrame, steps: list, target: str = "churn") -> pd.DataFrame:
    return F.apply_steps(frame, F.parse_steps(steps), target)


# --------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            ["ratoi"],
            r"^params.yaml: etl.steps.0: unknown step 'ratoi' \(valid: datetime_parts, ratio, "
            r"filter, join, drop",
        ),
        (
            [{"ratio": {"name": "r", "numerator": "a", "denominator": "b", "scale": 2}}],
            r"^params.yaml: etl.steps.0.ratio.scale: unknown key \(valid keys: name, numerator, "
            r"denominator\)$",
        ),
        (
            ["drop", {"filter": {"column": "age", "op": "~"}}],
            r"etl.steps.0.drop.columns: Field required",
        ),
        (
            [{"filter": {"column": "age", "op": "~"}}],
            r"^params.yaml: etl.steps.0.filter.op: Input should be '==', '!=', '<'",
        ),
        ([{"a": {}, "b": {}}], r"etl.steps.0: expected a step name or \{name: \{params\}\}"),
    ],
)
def test_bad_steps_fail_with_one_line_naming_the_choices(steps, message):
    with pytest.raises(ParamsError, match=message) as info:
        F.parse_steps(steps)
    assert "\n" not in str(info.value)


def test_params_section_rejects_unknown_keys():
    from ml_project.params import section

    with pytest.raises(ParamsError, match=r"etl.step: unknown key \(valid keys: steps\)"):
        section({"etl": {"step": []}}, "etl", EtlParams)


# --------------------------------------------------------------------------- built-in steps


def test_datetime_parts_expand_datetime_and_text_dates():
    frame = messy_frame(40).assign(
        signup=pd.date_range("2024-01-30", periods=40, freq="D"),
        seen=[f"2023-0{1 + i % 9}-1{i % 10} 1{i % 10}:00" for i in range(40)],
    )
    out = run_steps(frame, [{"datetime_parts": {"columns": ["signup", "seen"]}}])
    assert "signup" not in out and "seen" not in out
    assert out["signup_month"].tolist()[:3] == [1.0, 1.0, 2.0]
    assert out["seen_day"].iloc[3] == 13.0 and out["signup_dayofweek"].dtype == np.float64
    # columns: null expands every datetime column and leaves text alone.
    auto = run_steps(frame, [{"datetime_parts": {"parts": ["year"]}}])
    assert "signup_year" in auto and "seen" in auto


def test_datetime_parts_name_an_unparsable_value():
    frame = messy_frame(20).assign(when=["2024-01-01"] * 19 + ["soon"])
    with pytest.raises(DataError, match=r"etl.steps.0 \(datetime_parts\): column 'when': 'soon'"):
        run_steps(frame, [{"datetime_parts": {"columns": ["when"]}}])


def test_ratio_gives_missing_for_zero_denominators():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [2, 0, 3], "churn": ["y", "n", "y"]})
    out = run_steps(frame, [{"ratio": {"name": "a_per_b", "numerator": "a", "denominator": "b"}}])
    assert out["a_per_b"].tolist()[0] == 0.5 and np.isnan(out["a_per_b"].iloc[1])


@pytest.mark.parametrize(
    ("op", "value", "rows"),
    [(">=", 40, None), ("in", ["paris", "nice"], None), ("not_missing", None, None)],
)
def test_filter_keeps_matching_rows(op, value, rows):
    frame = messy_frame(60)
    column = "city" if op == "in" else "age"
    out = run_steps(frame, [{"filter": {"column": column, "op": op, "value": value}}])
    expected = {
        ">=": frame["age"] >= 40,
        "in": frame["city"].isin(["paris", "nice"]),
        "not_missing": frame["age"].notna(),
    }[op]
    assert out.index.tolist() == frame.index[expected].tolist()


def test_join_looks_up_columns_from_data_raw(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/raw").mkdir(parents=True)
    pd.DataFrame({"city": ["paris", "lyon", "nice"], "region": ["idf", "ara", "paca"]}).to_csv(
        "data/raw/regions.csv", index=False
    )
    frame = messy_frame(30)
    out = run_steps(frame, [{"join": {"file": "data/raw/regions.csv", "on": "city"}}])
    assert len(out) == len(frame)
    assert (out.loc[out["city"] == "lyon", "region"] == "ara").all()
    assert out.loc[out["city"].isna(), "region"].isna().all()

    pd.DataFrame({"city": ["paris", "paris"], "region": ["a", "b"]}).to_csv(
        "data/raw/dup.csv", index=False
    )
    with pytest.raises(DataError, match=r"join: data/raw/dup.csv has several rows for city="):
        run_steps(frame, [{"join": {"file": "data/raw/dup.csv", "on": "city"}}])
    (tmp_path / "elsewhere.csv").write_text("city,x\n")
    with pytest.raises(DataError, match=r"join.file: elsewhere.csv is outside data/raw/"):
        run_steps(frame, [{"join": {"file": "elsewhere.csv", "on": "city"}}])


# --------------------------------------------------------------------------- in the etl stage


WORKED_EXAMPLE = [
    {"ratio": {"name": "radius_growth", "numerator": "worst_radius", "denominator": "mean_radius"}},
    {"filter": {"column": "mean_area", "op": "<", "value": 1500}},
]


def test_worked_example_on_bundled_data(tmp_path):
    """README's example: a derived column and a filter on breast_cancer."""
    plain = run_etl(DataParams(), tmp_path / "plain")
    manifest = run_etl(DataParams(), tmp_path / "out", EtlParams(steps=WORKED_EXAMPLE))
    assert manifest.feature_names[-1] == "radius_growth"
    assert sum(manifest.rows.values()) == 555 < sum(plain.rows.values()) == 569
    assert manifest.steps == WORKED_EXAMPLE and manifest.data_version != plain.data_version
    train = pd.read_parquet(tmp_path / "out/train.parquet")
    assert (train["mean_area"] < 1500).all()
    assert np.allclose(train["radius_growth"], train["worst_radius"] / train["mean_radius"])


@pytest.fixture
def failing_steps():
    class Nothing(F.Section):
        pass

    @F.step("explode", Nothing)
    def explode(frame, params):
        raise ZeroDivisionError("division by zero\nmore detail")

    @F.step("lose_target", Nothing)
    def lose_target(frame, params):
        return frame.drop(columns="target")

    yield
    del F.STEPS["explode"], F.STEPS["lose_target"]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("explode", "etl.steps.1 (explode): failed: ZeroDivisionError: division by zero"),
        ("lose_target", "etl.steps.1 (lose_target): its result has no target column 'target'"),
    ],
)
def test_a_failing_step_is_one_line_and_keeps_previous_output(
    tmp_path, failing_steps, step, message
):
    out = tmp_path / "processed"
    run_etl(DataParams(), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(DataError) as info:
        run_etl(DataParams(), out, EtlParams(steps=[WORKED_EXAMPLE[0], step]))
    assert str(info.value) == message
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert read_manifest(out).steps == []
