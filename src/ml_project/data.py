"""Load, validate and split the input table; write the splits and their manifest.

Everything here works on raw columns. Imputation and encoding are *not* done here: they are
fitted inside the model pipeline (see `models.preprocessor`), so export and predict apply the
very same transform. The one thing this module normalises is representation, in
`coerce_features`: numbers become floats and categories become strings with "" for missing,
which is what both scikit-learn and the ONNX graph receive.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ml_project.atomic import atomic_dir
from ml_project.errors import DataError
from ml_project.params import BUNDLED_DATASETS, DataParams

RAW_DIR = Path("data/raw")
PROCESSED_DIR = Path("data/processed")
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
FILE_SUFFIXES = (".csv", ".parquet")
BUNDLED_TARGET = "target"
MISSING_CATEGORY = ""


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
        if natural != params.task:
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
    try:
        frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"data.source: {path} is empty") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"data.source: cannot read {path}: {first}") from None
    return frame, params.target


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


def validate(frame: pd.DataFrame, target: str, task: str, min_per_class: int = 3) -> list[Feature]:
    """Check the raw table; return its feature list. Raises `DataError` with one line."""
    if len(frame) == 0:
        raise DataError("input table is empty: it has no rows")
    if target not in frame.columns:
        shown = ", ".join(map(str, list(frame.columns)[:20]))
        more = "" if len(frame.columns) <= 20 else f", … ({len(frame.columns)} columns)"
        raise DataError(f"data.target: column '{target}' not found; columns are: {shown}{more}")
    y = frame[target]
    if (missing := int(y.isna().sum())) > 0:
        raise DataError(f"column '{target}' (target): {missing} missing values; fill or drop them")
    if task == "classification":
        counts = y.value_counts()
        if len(counts) < 2:
            raise DataError(
                f"column '{target}' (target): a single class ({counts.index[0]!r}); "
                "classification needs at least two"
            )
        if counts.min() < min_per_class:
            raise DataError(
                f"column '{target}' (target): class {counts.idxmin()!r} has {counts.min()} rows; "
                f"a stratified train/val/test split needs at least {min_per_class} per class"
            )
    elif not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        raise DataError(
            f"column '{target}' (target): dtype {y.dtype} is not numeric; "
            "use data.task=classification or a numeric target"
        )
    return infer_features(frame, target)


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


def split(frame: pd.DataFrame, target: str, params: DataParams) -> dict[str, pd.DataFrame]:
    """Seeded train/val/test split, stratified on the target for classification."""
    from sklearn.model_selection import train_test_split

    stratify = frame[target] if params.task == "classification" else None
    rest, test = train_test_split(
        frame, test_size=params.test_size, random_state=params.seed, stratify=stratify
    )
    val_share = params.val_size / (1 - params.test_size)
    stratify = rest[target] if params.task == "classification" else None
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
    splits: dict[str, pd.DataFrame], target: str, features: list[Feature], params: DataParams
) -> Manifest:
    classes = balance = None
    if params.task == "classification":
        classes = sorted(pd.concat([s[target] for s in splits.values()]).unique().tolist())
        balance = {
            name: {str(k): int(v) for k, v in df[target].value_counts().sort_index().items()}
            for name, df in splits.items()
        }
    return Manifest(
        source=params.source,
        target=target,
        task=params.task,
        features=features,
        rows={name: len(df) for name, df in splits.items()},
        classes=classes,
        class_balance=balance,
        data_version=content_hash(splits),
        seed=params.seed,
    )


def run_etl(params: DataParams, out_dir: Path = PROCESSED_DIR) -> Manifest:
    """Load, validate, split and write `train/val/test.parquet` plus `manifest.json`.

    The directory is replaced in one rename, so a failure never leaves a partial output
    that looks valid.
    """
    frame, target = load_source(params)
    features = validate(frame, target, params.task)
    frame = frame[[f.name for f in features] + [target]]
    splits = split(frame, target, params)
    manifest = build_manifest(splits, target, features, params)
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
