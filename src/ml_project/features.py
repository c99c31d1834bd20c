"""Your own ETL: row-wise transforms that the etl stage applies between validation and split.

This is the place for the code your notebooks run on the raw table before modelling: derived
columns, joins with other files under `data/raw/`, filters, datetime parts. Each transform is a
function registered in `STEPS` with a params schema, and `params.yaml` picks and configures
them, in order:

    etl:
      steps:
        - datetime_parts: {columns: [signup_date]}
        - ratio: {name: income_per_member, numerator: income, denominator: household}
        - filter: {column: age, op: ">=", value: 18}
        - join: {file: data/raw/regions.csv, on: city}

Add one with a decorated function and its params model:

    class MyParams(Section):
        column: str

    @step("my_step", MyParams)
    def my_step(frame: pd.DataFrame, params: MyParams) -> pd.DataFrame:
        return frame.assign(...)

DVC hashes this file as an etl dependency: editing it re-runs etl and everything after it.

Only *row-wise* work belongs here: each output row must depend on its own input row (and on
fixed files), never on statistics of the whole table. Anything fitted (scaling, imputation,
encoding, target statistics) stays inside the model pipeline (`models/preprocessing.py`),
where it is fitted on the train split alone; fitted here, it would leak the test split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, ValidationError

from ml_project.errors import DataError, ParamsError
from ml_project.params import Section, format_validation_error

Transform = Callable[[pd.DataFrame, Any], pd.DataFrame]


@dataclass(frozen=True)
class Step:
    name: str
    params: type[BaseModel]
    fn: Transform


STEPS: dict[str, Step] = {}


def step(name: str, params: type[BaseModel]) -> Callable[[Transform], Transform]:
    """Register `fn(frame, params) -> frame` as the etl step `name`."""

    def register(fn: Transform) -> Transform:
        STEPS[name] = Step(name, params, fn)
        return fn

    return register


# --------------------------------------------------------------------------- built-in steps

DATETIME_PARTS = ("year", "month", "day", "dayofweek", "dayofyear", "hour", "minute")


class DatetimeParams(Section):
    columns: list[str] | None = Field(
        None, description="columns to expand; null: every datetime column (text is parsed)"
    )
    parts: list[Literal[DATETIME_PARTS]] = ["year", "month", "day", "dayofweek"]  # type: ignore[valid-type]
    drop: bool = Field(True, description="drop the original column (models cannot use it)")


@step("datetime_parts", DatetimeParams)
def datetime_parts(frame: pd.DataFrame, params: DatetimeParams) -> pd.DataFrame:
    """`signup` -> `signup_year`, `signup_month`, ... (numeric; missing dates stay missing)."""
    columns = params.columns
    if columns is None:
        columns = [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
    frame = frame.copy()
    for name in columns:
        _require_column(frame, name)
        col = frame[name]
        if not pd.api.types.is_datetime64_any_dtype(col):
            parsed = pd.to_datetime(col, errors="coerce", format="mixed")
            bad = col[parsed.isna() & col.notna()]
            if len(bad):
                raise DataError(f"column '{name}': {bad.iloc[0]!r} is not a date or time")
            col = parsed
        for part in params.parts:
            frame[f"{name}_{part}"] = getattr(col.dt, part).astype("float64")
        if params.drop:
            frame = frame.drop(columns=name)
    return frame


class RatioParams(Section):
    name: str = Field(min_length=1, description="the new column")
    numerator: str
    denominator: str


@step("ratio", RatioParams)
def ratio(frame: pd.DataFrame, params: RatioParams) -> pd.DataFrame:
    """A derived column `numerator / denominator`; a zero denominator gives a missing value
    (imputed in the model pipeline) rather than inf (which ETL rejects)."""
    num = _numeric(frame, params.numerator)
    den = _numeric(frame, params.denominator).replace(0, np.nan)
    return frame.assign(**{params.name: num / den})


OPERATORS: dict[str, Callable[[pd.Series, Any], pd.Series]] = {
    "==": lambda c, v: c == v,
    "!=": lambda c, v: c != v,
    "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v,
    ">": lambda c, v: c > v,
    ">=": lambda c, v: c >= v,
    "in": lambda c, v: c.isin(v if isinstance(v, list) else [v]),
    "not_in": lambda c, v: ~c.isin(v if isinstance(v, list) else [v]),
    "not_missing": lambda c, v: c.notna(),
}


class FilterParams(Section):
    column: str
    op: Literal[tuple(OPERATORS)]  # type: ignore[valid-type]
    value: Any = None


@step("filter", FilterParams)
def filter_rows(frame: pd.DataFrame, params: FilterParams) -> pd.DataFrame:
    """Keep the rows where `column op value` holds (rows with a missing value are dropped,
    except by `!=` and `not_in`)."""
    _require_column(frame, params.column)
    try:
        keep = OPERATORS[params.op](frame[params.column], params.value)
    except TypeError:
        raise DataError(
            f"column '{params.column}': cannot compare its {frame[params.column].dtype} values "
            f"with {params.value!r} ({params.op})"
        ) from None
    return frame[keep.fillna(False).astype(bool)]


class JoinParams(Section):
    file: str = Field(description="a .csv or .parquet file under data/raw/")
    on: str | list[str]
    how: Literal["left", "inner"] = "left"
    columns: list[str] | None = Field(None, description="columns to bring in; null: all")


@step("join", JoinParams)
def join(frame: pd.DataFrame, params: JoinParams) -> pd.DataFrame:
    """Look up columns of another file by key. Each key must appear at most once in that file,
    so the join never duplicates rows."""
    from ml_project.data import RAW_DIR

    path = Path(params.file)
    if path.is_absolute() or not path.resolve().is_relative_to(RAW_DIR.resolve()):
        raise DataError(f"join.file: {path} is outside {RAW_DIR}/ (DVC would not version it)")
    if not path.is_file():
        raise DataError(f"join.file: file not found: {path}")
    other = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    keys = [params.on] if isinstance(params.on, str) else list(params.on)
    for key in keys:
        _require_column(frame, key)
        if key not in other.columns:
            raise DataError(f"join: key '{key}' not found in {path}")
    if params.columns is not None:
        missing = [c for c in params.columns if c not in other.columns]
        if missing:
            raise DataError(f"join.columns: '{missing[0]}' not found in {path}")
        other = other[keys + [c for c in params.columns if c not in keys]]
    repeated = other[other.duplicated(keys, keep=False)]
    if len(repeated):
        shown = ", ".join(f"{k}={repeated.iloc[0][k]!r}" for k in keys)
        raise DataError(f"join: {path} has several rows for {shown}; keys must be unique")
    return frame.merge(other, on=keys, how=params.how, suffixes=("", "_joined"))


class DropParams(Section):
    columns: list[str] = Field(min_length=1)


@step("drop", DropParams)
def drop(frame: pd.DataFrame, params: DropParams) -> pd.DataFrame:
    for name in params.columns:
        _require_column(frame, name)
    return frame.drop(columns=params.columns)


def _require_column(frame: pd.DataFrame, name: str) -> None:
    if name not in frame.columns:
        shown = ", ".join(map(str, list(frame.columns)[:20]))
        raise DataError(f"column '{name}' not found; columns are: {shown}")


def _numeric(frame: pd.DataFrame, name: str) -> pd.Series:
    _require_column(frame, name)
    col = frame[name]
    if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        raise DataError(f"column '{name}': dtype {col.dtype} is not numeric")
    return col.astype("float64")


# --------------------------------------------------------------------------- parsing, applying


@dataclass(frozen=True)
class ConfiguredStep:
    index: int
    step: Step
    params: BaseModel

    @property
    def where(self) -> str:
        return f"etl.steps.{self.index} ({self.step.name})"


def parse_steps(raw: list[str | dict[str, Any]]) -> list[ConfiguredStep]:
    """Check `etl.steps`: each entry names one registered step, with valid params."""
    parsed = []
    valid = ", ".join(STEPS)
    for index, entry in enumerate(raw):
        where = f"params.yaml: etl.steps.{index}"
        body: dict[str, Any]
        if isinstance(entry, str):
            name, body = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            name, body = next(iter(entry.items()))
        else:
            raise ParamsError(
                f"{where}: expected a step name or {{name: {{params}}}} (valid: {valid})"
            )
        if name not in STEPS:
            raise ParamsError(f"{where}: unknown step '{name}' (valid: {valid})")
        spec = STEPS[name]
        try:
            params = spec.params.model_validate(body or {})
        except ValidationError as exc:
            message = format_validation_error(exc, f"etl.steps.{index}.{name}", spec.params)
            raise ParamsError(message) from None
        parsed.append(ConfiguredStep(index, spec, params))
    return parsed


def apply_steps(frame: pd.DataFrame, steps: list[ConfiguredStep], target: str) -> pd.DataFrame:
    """Run the steps in order. A step that raises, or returns anything but a frame that still
    holds the target, fails with one line naming it."""
    for configured in steps:
        where = configured.where
        try:
            out = configured.step.fn(frame, configured.params)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
        except Exception as exc:  # the user's code: any failure is reported in one line
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise DataError(f"{where}: failed: {type(exc).__name__}: {first}") from None
        if not isinstance(out, pd.DataFrame):
            raise DataError(f"{where}: returned {type(out).__name__}, not a DataFrame")
        if target not in out.columns:
            raise DataError(f"{where}: its result has no target column '{target}'")
        if len(out) == 0:
            raise DataError(f"{where}: its result has no rows")
        frame = out
    return frame
