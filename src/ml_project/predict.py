"""Score a CSV or Parquet file with an exported ONNX model, through onnxruntime.

    python -m ml_project.predict new_rows.csv --model export/model/model.onnx --output preds.csv
    python -m ml_project.predict new_rows.csv --model models:/ml_project@champion

The model carries its own signature (feature names and kinds, classes), so predict needs no
other file. Columns are validated first; extra columns are ignored. A registry alias
(`models:/<name>@<alias>`, set by `python -m ml_project.promote`) scores with the ONNX file
of the version the alias points to (`releases/<name>/model_v<N>.onnx`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ml_project.atomic import atomic_file
from ml_project.data import FILE_SUFFIXES, Feature, coerce_features
from ml_project.errors import UserError, exits_on_user_error
from ml_project.export import EXPORT_DIR, MODEL_SUBDIR, SIGNATURE_KEY, onnx_feeds, onnx_outputs
from ml_project.persistence import check_onnx


def load_model(path: Path):
    """An onnxruntime session and the signature stored in the model's metadata."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--model: {path} not found; run the export stage first (dvc repro)")
    try:
        check_onnx(path)
    except UserError as exc:
        raise UserError(f"--model: {exc}") from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise UserError(f"--model: {path} is not a valid ONNX model: {exc}") from None
    meta = session.get_modelmeta().custom_metadata_map
    if SIGNATURE_KEY not in meta:
        raise UserError(
            f"--model: {path} has no {SIGNATURE_KEY} metadata; export it with this project"
        )
    return session, json.loads(meta[SIGNATURE_KEY])


def resolve_model(spec: str) -> Path:
    """`--model`: a path, or `models:/<name>@<alias>` resolved through the MLflow registry."""
    if not spec.startswith("models:/"):
        return Path(spec)
    name, _, alias = spec.removeprefix("models:/").partition("@")
    if not name or not alias:
        raise UserError(f"--model: {spec}: expected models:/<name>@<alias>")
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from ml_project.promote import RELEASES, tracking_uri
    from ml_project.tracking.mlflow_tracker import missing_store

    uri, promote_first = tracking_uri(), "(promote an experiment first: make promote EXP=<name>)"
    store = missing_store(uri)
    if store is not None:
        raise UserError(
            f"--model: {spec}: no registered model '{name}' with alias '{alias}': the MLflow "
            f"store {store} does not exist {promote_first}"
        )
    try:
        version = MlflowClient(uri).get_model_version_by_alias(name, alias).version
    except MlflowException:
        raise UserError(
            f"--model: {spec}: no registered model '{name}' with alias '{alias}' {promote_first}"
        ) from None
    path = RELEASES / name / f"model_v{version}.onnx"
    if not path.is_file():
        raise UserError(
            f"--model: {spec} is version {version}, but {path} is missing "
            "(it is written by python -m ml_project.promote in this checkout)"
        )
    return path


def read_table(path: Path) -> pd.DataFrame:
    path = Path(path)
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise UserError(f"input: {path} must be one of {', '.join(FILE_SUFFIXES)}")
    if not path.is_file():
        raise UserError(f"input: file not found: {path}")
    try:
        return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise UserError(f"input: {path} is empty") from None


def predict_frame(session, sig: dict, frame: pd.DataFrame) -> pd.DataFrame:
    """Predictions for raw rows: `prediction`, plus `proba_<class>` for classifiers."""
    X = coerce_features(frame, [Feature(f["name"], f["kind"], "") for f in sig["features"]])
    if X.empty:
        raise UserError("input has no rows")
    labels, values = onnx_outputs(session, onnx_feeds(session, X, sig), sig["task"])
    out = pd.DataFrame({"prediction": labels}, index=frame.index)
    if sig["task"] == "classification":
        for i, cls in enumerate(sig["classes"]):
            out[f"proba_{cls}"] = np.asarray(values)[:, i]
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ml_project.predict", description=__doc__.split("\n")[0]
    )
    parser.add_argument("input", type=Path, help="CSV or Parquet file with the feature columns")
    parser.add_argument(
        "--model",
        default=str(EXPORT_DIR / MODEL_SUBDIR / "model.onnx"),
        help="an ONNX file, or a registry alias: models:/<name>@<alias>",
    )
    parser.add_argument("--output", type=Path, help="CSV to write (default: standard output)")
    return parser.parse_args(argv)


@exits_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    session, sig = load_model(resolve_model(args.model))
    result = predict_frame(session, sig, read_table(args.input))
    if args.output:
        with atomic_file(args.output) as tmp:
            result.to_csv(tmp, index=False)
        print(f"wrote {len(result)} predictions to {args.output}", file=sys.stderr)
    else:
        result.to_csv(sys.stdout, index=False)


if __name__ == "__main__":
    main()
