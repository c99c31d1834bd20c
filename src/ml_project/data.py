"""Load, validate and split the input table; write the splits and their manifest.

Everything here works on raw columns. Imputation and encoding are *not* done here: they are
fitted inside the model pipeline (see `models.preprocessor`), so export and predict apply the
very same transform. This module only decides which categories get a one-hot column (the
train split's most frequent ones, listed in the manifest), which bounds the encoded width.
The one thing it normalises is representation, in `coerce_features`: numbers become floats and
categories become strings with "" for missing, which is what both scikit-learn and the ONNX
graph receive.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ml_project.atomic import atomic_dir
from ml_project.errors import DataError
from ml_project.params import BUNDLED_DATASETS, DataParams, EtlParams

RAW_DIR = Path("data/raw")
PROCESSED_DIR = Path("data/processed")
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
FILE_SUFFIXES = (".csv", ".parquet")
BUNDLED_TARGET = "target"
MISSING_CATEGORY = ""
# A column with at least this many distinct values per non-missing row is an identifier (or
# free text): one-hot encoding it costs rows x rows memory and teaches the model nothing.
ID_RATIO = 0.9
ID_MIN_ROWS = 20  # below this, a column of distinct values is not evidence of anything


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # "numeric" or "categorical"
    dtype: str


@dataclass(frozen=True)
class Manifest:
    """What the splits contain; `data_version` is a content hash reported by later stages."""

    source: str
    target: str
    task: str
    features: list[Feature]
    rows: dict[str, int]
    classes: list | None
    class_balance: dict[str, dict[str, int]] | None
    data_version: str
    seed: int
    # Absent from manifests written before they existed; None: every category is encoded.
    categories: dict[str, list[str]] | None = None
    dropped: list[str] = field(default_factory=list)
    # Why the task is what it is ("data.task", "bundled dataset", "inferred: ..."), and the
    # etl.steps that ran; absent from older manifests.
    task_reason: str = "data.task"
    steps: list = field(default_factory=list)

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)

    @classmethod
    def from_dict(cls, raw: dict) -> Manifest:
        raw = dict(raw)
        raw["features"] = [Feature(**f) for f in raw["features"]]
        return cls(**raw)


def load_source(params: DataParams) -> tuple[pd.DataFrame, str]:
    """Return the raw table and the name of its target column."""
    if params.source in BUNDLED_DATASETS:
        natural = BUNDLED_DATASETS[params.source]
        if params.task not in ("auto", natural):
            raise DataError(
                f"data.task: bundled dataset '{params.source}' is a {natural} dataset, "
                f"but data.task is '{params.task}'"
            )
        return _load_bundled(params.source), params.target or BUNDLED_TARGET
    path = Path(params.source)
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise DataError(
            f"data.source: '{params.source}' is neither a bundled dataset "
            f"({', '.join(BUNDLED_DATASETS)}) nor a {' or '.join(FILE_SUFFIXES)} file"
        )
    if not path.is_file():
        raise DataError(f"data.source: file not found: {path}")
    if not params.target:
        raise DataError(f"data.target: required when data.source is a file ({path})")
    if path.suffix.lower() == ".csv":
        _refuse_duplicate_header(path)
    try:
        frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"data.source: {path} is empty") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"data.source: cannot read {path}: {first}") from None
    return frame, params.target


def _refuse_duplicate_header(path: Path) -> None:
    """pandas renames a repeated CSV column to `a.1`, and the data would silently change
    meaning; so read the header as written. (Unnamed columns get distinct names anyway.)"""
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
        header = next(csv.reader(fh), [])
    seen: set[str] = set()
    for name in header:
        if name in seen and name:
            raise DataError(
                f"column '{name}': appears {header.count(name)} times in the header of {path}; "
                "column names must be unique (rename or drop the copies)"
            )
        seen.add(name)


def require_tracked_location(params: DataParams, raw_dir: Path = RAW_DIR) -> None:
    """A file source must live under data/raw/, which dvc.yaml lists as an etl dependency.

    Anywhere else, DVC would not notice when the file changes, and ETL would be skipped on
    stale data.
    """
    if params.source in BUNDLED_DATASETS:
        return
    path = Path(params.source)
    if path.is_absolute() or not path.resolve().is_relative_to(raw_dir.resolve()):
        raise DataError(
            f"data.source: {params.source} is outside {raw_dir}/; put the file there (or "
            f"`dvc add` it there) so that DVC versions it and re-runs etl when it changes"
        )


def _load_bundled(name: str) -> pd.DataFrame:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame.copy()
    # Bundled names contain spaces ("mean radius"); ONNX input names may not.
    frame.columns = [str(c).replace(" ", "_") for c in frame.columns]
    return frame


def infer_features(frame: pd.DataFrame, target: str) -> list[Feature]:
    """Classify each non-target column as numeric or categorical, or fail naming it."""
    features = []
    for name in frame.columns:
        if name == target:
            continue
        col = frame[name]
        if col.isna().all():
            raise DataError(f"column '{name}': every value is missing; drop it from the input")
        if pd.api.types.is_bool_dtype(col):
            kind = "categorical"
        elif pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_complex_dtype(col):
            kind = "numeric"
        elif (
            isinstance(col.dtype, pd.CategoricalDtype)
            or pd.api.types.is_string_dtype(col)
            or pd.api.types.is_object_dtype(col)
        ):
            odd = col.dropna().map(type).loc[lambda t: ~t.isin([str, bool, int, float])]
            if len(odd):
                raise DataError(
                    f"column '{name}': holds {odd.iloc[0].__name__} values; supported column "
                    "types are numeric, string, categorical and boolean"
                )
            kind = "categorical"
        else:
            raise DataError(
                f"column '{name}': dtype {col.dtype} is not supported; supported column types "
                "are numeric, string, categorical and boolean (convert or drop it)"
            )
        features.append(Feature(str(name), kind, str(col.dtype)))
    if not features:
        raise DataError(f"input has no feature columns besides the target '{target}'")
    return features


# A numeric target with at most this many distinct values, all whole numbers, is read as
# class labels by `data.task: auto`; anything else numeric is a regression target.
MAX_INFERRED_CLASSES = 20


def infer_task(frame: pd.DataFrame, target: str, params: DataParams) -> tuple[str, str]:
    """(task, why): `data.task` when explicit, else the bundled set's, else from the target.

    Strings, booleans and categories are classes; a numeric target is classification only when
    it holds a few distinct whole numbers (at most `MAX_INFERRED_CLASSES`).
    """
    if params.task != "auto":
        return params.task, "data.task"
    if params.source in BUNDLED_DATASETS:
        return BUNDLED_DATASETS[params.source], "bundled dataset"
    _require_target(frame, target)
    y = frame[target].dropna()
    if pd.api.types.is_bool_dtype(y):
        return "classification", f"inferred: target '{target}' holds booleans"
    if isinstance(y.dtype, pd.CategoricalDtype):
        return "classification", f"inferred: target '{target}' is categorical"
    if not pd.api.types.is_numeric_dtype(y):
        return "classification", f"inferred: target '{target}' holds text"
    distinct = int(y.nunique())
    whole = pd.api.types.is_integer_dtype(y) or bool(np.all(np.mod(y.to_numpy(float), 1) == 0))
    if whole and distinct <= MAX_INFERRED_CLASSES:
        return "classification", f"inferred: {distinct} distinct integer values in '{target}'"
    return "regression", f"inferred: {distinct} distinct numeric values in '{target}'"


def _require_target(frame: pd.DataFrame, target: str) -> None:
    if target not in frame.columns:
        shown = ", ".join(map(str, list(frame.columns)[:20]))
        more = "" if len(frame.columns) <= 20 else f", … ({len(frame.columns)} columns)"
        raise DataError(f"data.target: column '{target}' not found; columns are: {shown}{more}")


def validate(frame: pd.DataFrame, target: str, task: str, min_per_class: int = 3) -> list[Feature]:
    """Check the raw table; return its feature list. Raises `DataError` with one line."""
    if len(frame) == 0:
        raise DataError("input table is empty: it has no rows")
    repeated = frame.columns[frame.columns.duplicated()]
    if len(repeated):
        raise DataError(
            f"column '{repeated[0]}': appears more than once in the input; "
            "column names must be unique (rename or drop the copies)"
        )
    _require_target(frame, target)
    y = frame[target]
    if (missing := int(y.isna().sum())) > 0:
        raise DataError(f"column '{target}' (target): {missing} missing values; fill or drop them")
    if task == "classification":
        counts = y.value_counts()
        if len(counts) < 2:
            raise DataError(
                f"column '{target}' (target): a single class ({_plain(counts.index[0])!r}); "
                "classification needs at least two"
            )
        if counts.min() < min_per_class:
            raise DataError(
                f"column '{target}' (target): class {_plain(counts.idxmin())!r} has "
                f"{counts.min()} rows; "
                f"a stratified train/val/test split needs at least {min_per_class} per class"
            )
    elif not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        raise DataError(
            f"column '{target}' (target): dtype {y.dtype} is not numeric, so data.task: "
            "regression cannot use it; set data.task: classification (or auto)"
        )
    features = infer_features(frame, target)
    numeric = [f.name for f in features if f.kind == "numeric"]
    if task == "regression":
        _refuse_infinite(y, f"column '{target}' (target)")
    for name in numeric:
        _refuse_infinite(frame[name], f"column '{name}'")
    return features


def _plain(value: object) -> object:
    """numpy scalars as Python ones, so messages say 7, not np.int64(7)."""
    return value.item() if isinstance(value, np.generic) else value


def _refuse_infinite(col: pd.Series, where: str) -> None:
    """inf passes every dtype check and then breaks the scaler or the model in train."""
    if not pd.api.types.is_float_dtype(col):
        return
    count = int(np.isinf(col.to_numpy(dtype="float64", na_value=np.nan)).sum())
    if count:
        raise DataError(
            f"{where}: {count} infinite value(s) (inf or -inf); replace them with finite "
            "numbers, or leave the cells empty to have them imputed"
        )


def id_like_columns(frame: pd.DataFrame, features: list[Feature]) -> dict[str, int]:
    """Columns that identify rows rather than describe them, with their distinct counts.

    A categorical column with about one distinct value per row (an ID, free text) is flagged,
    and so is an integer column that numbers the rows (a permutation of a consecutive range,
    like a saved DataFrame index). Other numeric columns are never flagged: they cost one
    column however many values they take.
    """
    flagged = {}
    for feat in features:
        col = frame[feat.name]
        rows = int(col.count())
        if rows < ID_MIN_ROWS or pd.api.types.is_bool_dtype(col):
            continue
        if feat.kind == "categorical":
            distinct = int(col.nunique())
            if distinct >= ID_RATIO * rows:
                flagged[feat.name] = distinct
        elif _numbers_the_rows(col):
            flagged[feat.name] = rows
    return flagged


def _numbers_the_rows(col: pd.Series) -> bool:
    rows = len(col)
    return (
        pd.api.types.is_integer_dtype(col)
        and int(col.count()) == rows
        and int(col.max()) - int(col.min()) == rows - 1
        and col.nunique() == rows
    )


def handle_id_columns(
    frame: pd.DataFrame, features: list[Feature], policy: str
) -> tuple[list[Feature], list[str]]:
    """Apply `data.id_columns` (error | drop | keep); return the kept features and the dropped
    column names."""
    flagged = id_like_columns(frame, features) if policy != "keep" else {}
    if not flagged:
        return features, []
    if policy == "error":
        shown = ", ".join(
            f"'{n}' ({d} distinct values in {_rows(frame[n])})" for n, d in flagged.items()
        )
        what = "column {} looks like a row ID" if len(flagged) == 1 else "columns {} look like IDs"
        raise DataError(
            f"{what.format(shown)}; set data.id_columns: drop to drop such columns "
            "(or keep, to one-hot encode them within data.max_categories)"
        )
    kept = [f for f in features if f.name not in flagged]
    if not kept:
        raise DataError(
            f"data.id_columns: drop leaves no feature columns (dropped: {', '.join(flagged)})"
        )
    return kept, list(flagged)


def _rows(col: pd.Series) -> str:
    count = int(col.count())
    return f"{count} rows" if count == len(col) else f"{count} non-missing rows"


def frequent_categories(
    train: pd.DataFrame, features: list[Feature], max_categories: int, min_frequency: int
) -> dict[str, list[str]]:
    """Per categorical feature, the values that get a one-hot column: the `max_categories`
    most frequent in the train split that occur at least `min_frequency` times (ties broken
    by value, so the choice is deterministic; the most frequent value is always kept, as the
    encoder needs one). Every other value encodes as all zeros, the same as a value never seen
    in training, in scikit-learn and in ONNX alike."""
    categorical = [f for f in features if f.kind == "categorical"]
    chosen = {}
    for name, values in coerce_features(train, categorical).items():
        ranked = sorted(values.value_counts().items(), key=lambda kv: (-kv[1], kv[0]))
        kept = [value for value, count in ranked[:max_categories] if count >= min_frequency]
        chosen[str(name)] = sorted(kept or [ranked[0][0]])
    return chosen


def coerce_features(frame: pd.DataFrame, features: list[Feature]) -> pd.DataFrame:
    """Select the feature columns in order with the types the model pipeline expects.

    Numeric columns become float64 with NaN for missing; categorical columns become Python
    strings with "" for missing (the ONNX imputer requires a string missing marker).
    """
    missing = [f.name for f in features if f.name not in frame.columns]
    if missing:
        raise DataError(
            f"input is missing {len(missing)} required column(s): {', '.join(missing)} "
            f"(the model expects: {', '.join(f.name for f in features)})"
        )
    out = {}
    for feat in features:
        col = frame[feat.name]
        if feat.kind == "numeric":
            try:
                out[feat.name] = pd.to_numeric(col, errors="raise").astype("float64")
            except (ValueError, TypeError):
                bad = col[pd.to_numeric(col, errors="coerce").isna() & col.notna()].iloc[0]
                raise DataError(f"column '{feat.name}': expected numbers, found {bad!r}") from None
        else:
            values = col.astype(object).where(col.notna(), MISSING_CATEGORY)
            out[feat.name] = values.map(str).astype(object)
    return pd.DataFrame(out, index=frame.index)


def split(
    frame: pd.DataFrame, target: str, params: DataParams, task: str | None = None
) -> dict[str, pd.DataFrame]:
    """Seeded train/val/test split, stratified on the target for classification."""
    from sklearn.model_selection import train_test_split

    task = task or params.task
    stratify = frame[target] if task == "classification" else None
    rest, test = train_test_split(
        frame, test_size=params.test_size, random_state=params.seed, stratify=stratify
    )
    val_share = params.val_size / (1 - params.test_size)
    stratify = rest[target] if task == "classification" else None
    train, val = train_test_split(
        rest, test_size=val_share, random_state=params.seed, stratify=stratify
    )
    return {"train": train, "val": val, "test": test}


def content_hash(splits: dict[str, pd.DataFrame]) -> str:
    """A hash of values, column names and dtypes; independent of the Parquet writer version."""
    digest = hashlib.sha256()
    for name in SPLITS:
        df = splits[name]
        digest.update(name.encode())
        digest.update(json.dumps([[str(c), str(t)] for c, t in df.dtypes.items()]).encode())
        digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def build_manifest(
    splits: dict[str, pd.DataFrame],
    target: str,
    features: list[Feature],
    params: DataParams,
    dropped: list[str] | None = None,
    task: str | None = None,
) -> Manifest:
    task = task or params.task
    classes = balance = None
    if task == "classification":
        classes = sorted(pd.concat([s[target] for s in splits.values()]).unique().tolist())
        balance = {
            name: {str(k): int(v) for k, v in df[target].value_counts().sort_index().items()}
            for name, df in splits.items()
        }
    return Manifest(
        source=params.source,
        target=target,
        task=task,
        features=features,
        rows={name: len(df) for name, df in splits.items()},
        classes=classes,
        class_balance=balance,
        data_version=content_hash(splits),
        seed=params.seed,
        categories=frequent_categories(
            splits["train"], features, params.max_categories, params.min_frequency
        ),
        dropped=list(dropped or []),
    )


def run_etl(
    params: DataParams, out_dir: Path = PROCESSED_DIR, etl: EtlParams | None = None
) -> Manifest:
    """Load, apply `etl.steps` (features.py), validate, split, and write
    `train/val/test.parquet` plus `manifest.json`.

    The directory is replaced in one rename, so a failure never leaves a partial output
    that looks valid.
    """
    from ml_project import features as user_features  # etl alone pays for it

    steps = user_features.parse_steps((etl or EtlParams()).steps)
    frame, target = load_source(params)
    _require_target(frame, target)
    frame = user_features.apply_steps(frame, steps, target)
    task, why = infer_task(frame, target, params)
    try:
        features = validate(frame, target, task)
    except DataError as exc:
        if params.task != "auto":
            raise
        raise DataError(f"{exc} (data.task: auto chose {task}; {why})") from None
    features, dropped = handle_id_columns(frame, features, params.id_columns)
    frame = frame[[f.name for f in features] + [target]]
    splits = split(frame, target, params, task)
    manifest = build_manifest(splits, target, features, params, dropped, task)
    manifest = replace(manifest, task_reason=why, steps=list((etl or EtlParams()).steps))
    with atomic_dir(out_dir) as staging:
        for name, df in splits.items():
            df.reset_index(drop=True).to_parquet(staging / f"{name}.parquet", index=False)
        (staging / MANIFEST).write_text(manifest.to_json() + "\n")
    return manifest


def read_manifest(data_dir: Path = PROCESSED_DIR) -> Manifest:
    path = Path(data_dir) / MANIFEST
    try:
        return Manifest.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise DataError(f"{path}: not found; run the etl stage first (dvc repro etl)") from None


def load_split(
    name: str, manifest: Manifest, data_dir: Path = PROCESSED_DIR
) -> tuple[pd.DataFrame, np.ndarray]:
    """Features (coerced for the model) and target of one split."""
    frame = pd.read_parquet(Path(data_dir) / f"{name}.parquet")
    return coerce_features(frame, manifest.features), frame[manifest.target].to_numpy()


def __getattr__(name: str) -> object:
    """`from ml_project.data import load_etl` (and `EtlData`, `versions`, `replay`): loaded
    on first use, so the stages that import this module do not load `versions.py`."""
    if name in ("load_etl", "EtlData"):
        from ml_project import versions

        return getattr(versions, name)
    if name == "replay":
        from ml_project.replay import replay

        return replay
    if name == "versions":
        from ml_project.versions import table

        return table
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] != ["versions"]:
        print("usage: python -m ml_project.data versions [--offline]", file=sys.stderr)
        sys.exit(2)
    from ml_project.versions import main

    sys.exit(main(["list", *sys.argv[2:]]))
