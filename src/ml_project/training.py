"""The trainer: fit the configured model (or cross-validate it), save it, log the run.

Nothing here branches on a model name or type: what differs between models lives in their
`ModelSpec` (models/base.py), which the config carries; fitting one model on one split and
logging its curve is `fitting.fit_one`, shared with cross-validation (`cv.py`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ml_project import metrics as M
from ml_project import threads
from ml_project.atomic import atomic_dir
from ml_project.cv import cross_validate
from ml_project.data import PROCESSED_DIR, Manifest, load_split, read_manifest
from ml_project.errors import ParamsError
from ml_project.fitting import TrainConfig, TrainResult, fit_one, training_failed
from ml_project.forkserver import under_torchrun
from ml_project.models import parse_models
from ml_project.params import DataParams, TrackingParams, TrainParams, read_params, section
from ml_project.persistence import MODEL_PATH, save_native
from ml_project.tracking import RunInfo, Trackers, dvc_tags, open_trackers, write_run_ids
from ml_project.versions import label_for

INFO_PATH = Path("models/train_info.json")
# Cross-validation outputs: folds.json always (`{"cv_folds": 0}` when off), oof.parquet with CV.
CV_DIR = Path("models/cv")
# Per-epoch training state of torch models; removed when training completes (not a DVC output).
CHECKPOINT_PATH = Path("checkpoints/train.pt")


def is_main_process() -> bool:
    """False on torchrun's ranks other than 0: they train but never log or write files."""
    return int(os.environ.get("RANK", 0)) == 0


def load_train_config(raw: Mapping[str, Any] | None = None) -> TrainConfig:
    raw = read_params() if raw is None else raw
    data = section(raw, "data", DataParams)
    model = raw.get("model")
    if not isinstance(model, str):
        raise ParamsError("params.yaml: model: must name one entry of models:")
    hyperparams = parse_models(raw.get("models"), model)
    train = section(raw, "train", TrainParams)
    if "auto" not in (data.task, train.metric):  # else checked against the data, in fit
        M.selection_metric(train.metric, data.task)
    tracking = section(raw, "tracking", TrackingParams)
    return TrainConfig(data, model, hyperparams[model], train, tracking)


def fit(
    config: TrainConfig,
    manifest: Manifest,
    trackers: Trackers | None = None,
    data_dir: Path = PROCESSED_DIR,
    checkpoint: Path | None = None,
) -> TrainResult:
    """Fit the configured model on the train split and log one curve step per iteration
    (per epoch for torch models, which also checkpoint to `checkpoint` and resume from it).
    With `train.cv_folds`, cross-validate instead (see `cv.py`).

    Usable from a notebook: `fit(load_train_config(), read_manifest())`.
    """
    trackers = trackers or Trackers([])
    if config.metric is None or config.task != manifest.task:  # not yet resolved (a notebook)
        config = config.for_task(manifest.task)
    X_train, y_train = load_split("train", manifest, data_dir)
    X_val, y_val = load_split("val", manifest, data_dir)
    splits = (X_train, y_train, X_val, y_val)
    if config.train.cv_folds:
        try:
            cv = cross_validate(config, manifest, splits, trackers)
        except ValueError as exc:
            raise training_failed(config, exc) from None
        return TrainResult(
            cv.pipeline, X_train.head(5), cv.history, cv.fit_seconds, cv, cv.stopped_by
        )
    return fit_one(config, manifest, splits, trackers.log_metrics, checkpoint)


def write_cv(result: TrainResult, out_dir: Path) -> None:
    """`folds.json` (per-fold and summary metrics) and `oof.parquet` (out-of-fold
    predictions); only `{"cv_folds": 0}` when cross-validation is off."""
    with atomic_dir(out_dir) as staging:
        summary = {"cv_folds": 0} if result.cv is None else result.cv.summary
        (staging / "folds.json").write_text(json.dumps(summary, indent=2) + "\n")
        if result.cv is not None:
            result.cv.oof.to_parquet(staging / "oof.parquet", index=False)


def run(
    config: TrainConfig,
    data_dir: Path = PROCESSED_DIR,
    model_path: Path = MODEL_PATH,
    info_path: Path = INFO_PATH,
) -> TrainResult:
    """The train stage: trackers open, fit, save the model and its info, trackers close."""
    manifest = read_manifest(data_dir)
    config = config.for_task(manifest.task)
    # The data's label (v3); made here too when etl was restored from the run-cache.
    label = label_for(manifest) if is_main_process() else ""
    tags = {
        **dvc_tags(),
        "data_version": manifest.data_version,
        "data_label": label,
        "model": config.model,
        "task": manifest.task,
    }
    if not is_main_process():  # torchrun: rank 0 alone logs and writes
        return fit(config, manifest, Trackers([]), data_dir, CHECKPOINT_PATH)
    # hand_off: the trackers' last calls (log_model, closing the run) finish after this stage
    # exits; evaluate, which joins the run, waits for them (tracking/child.py). Not under
    # torchrun, whose agent may end what its ranks leave running.
    run_info = RunInfo(stage="train", hand_off=not under_torchrun())
    with open_trackers(config.tracking, run_info) as trackers:
        trackers.set_tags(tags)
        trackers.log_params(config.run_params())
        result = fit(config, manifest, trackers, data_dir, CHECKPOINT_PATH)
        save_native(result.pipeline, model_path)
        write_cv(result, CV_DIR)
        info = {
            "model": config.model,
            "task": manifest.task,
            "metric": config.train.metric,
            "data_version": manifest.data_version,
            "data_label": label,
            "fit_seconds": round(result.fit_seconds, 4),
            "steps": len(result.history),
            "threads": threads.budget()[0],  # the thread budget fit_seconds was measured with
            "tags": dvc_tags(),
        }
        Path(info_path).write_text(json.dumps(info, indent=2) + "\n")
        trackers.log_model(result.pipeline, model_path, result.input_example)
        write_run_ids(trackers.run_ids)
    return result
