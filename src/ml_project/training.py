"""The trainer: fit one registered model, log its per-iteration curve, save it.

Nothing here branches on a model name: what differs between models lives in their
`ModelSpec` (builder, whether features are scaled, how to stage per-iteration outputs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from ml_project import metrics as M
from ml_project import threads
from ml_project.atomic import atomic_dir
from ml_project.data import PROCESSED_DIR, Manifest, load_split, read_manifest
from ml_project.errors import ParamsError, UserError
from ml_project.models import StopFit, get_spec, parse_models
from ml_project.models.preprocessing import build_pipeline, preprocessor
from ml_project.params import (
    DataParams,
    TrackingParams,
    TrainParams,
    flatten,
    read_params,
    resolve_task,
    section,
)
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


@dataclass(frozen=True)
class TrainConfig:
    """Everything the train stage reads from params.yaml, parsed and cross-checked."""

    data: DataParams
    model: str
    hyperparams: BaseModel
    train: TrainParams
    tracking: TrackingParams

    def run_params(self) -> dict[str, Any]:
        """The run's effective params, flattened, as every tracker receives them."""
        return flatten(
            {
                "data": self.data.model_dump(),
                "model": self.model,
                "models": {self.model: self.hyperparams.model_dump()},
                "train": self.train.model_dump(),
            }
        )

    def for_task(self, task: str) -> TrainConfig:
        """This config for data of `task`: `auto` task and metric resolved (params.py)."""
        data, train = resolve_task(self.data, self.train, task)
        return dataclasses.replace(self, data=data, train=train)


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
    return TrainConfig(
        data, model, hyperparams[model], train, section(raw, "tracking", TrackingParams)
    )


@dataclass
class TrainResult:
    pipeline: Any
    input_example: Any  # a few raw training rows, for tracker model signatures
    history: list[dict[str, float]] = field(default_factory=list)
    fit_seconds: float = 0.0
    cv: Any = None  # a cv.CvOutcome when `train.cv_folds` is on
    stopped_by: str | None = None  # why a `StopFit` ended training early (e.g. pruning)

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def _outputs(model, out: np.ndarray, task: str):
    """(predictions, probabilities or None) from a staged output."""
    if task == "classification" and np.ndim(out) == 1:  # labels only (hard voting)
        return out, None
    if task == "classification":
        return model.classes_[np.argmax(out, axis=1)], out
    return out, None


def _step_metrics(task, metric, model, out_train, y_train, out_val, y_val, final: bool):
    """One curve step: both losses and the selection metric; every val metric at the end."""
    classes = getattr(model, "classes_", None)
    pred_tr, proba_tr = _outputs(model, out_train, task)
    pred_val, proba_val = _outputs(model, out_val, task)
    row = {
        "train/loss": M.loss(task, y_train, pred_tr, proba_tr, classes),
        "val/loss": M.loss(task, y_val, pred_val, proba_val, classes),
    }
    if final:
        scores = M.compute(task, y_val, pred_val, proba_val, classes)
    else:
        scores = {metric.name: float(metric.fn(y_val, pred_val, proba_val, classes))}
    row.update({f"val/{k}": v for k, v in scores.items()})
    return row


def _with_last(items):
    """Yield `(item, is_last)`."""
    iterator = iter(items)
    try:
        previous = next(iterator)
    except StopIteration:
        return
    for item in iterator:
        yield previous, False
        previous = item
    yield previous, True


def _final_outputs(pipeline, X, task):
    if task == "classification" and hasattr(pipeline, "predict_proba"):
        return pipeline.predict_proba(X)
    return pipeline.predict(X)


def _training_failed(config: TrainConfig, exc: Exception) -> UserError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return UserError(f"models.{config.model}: training failed: {first}")


def _fit_per_epoch(config, pipeline, metric, log, checkpoint, start, splits) -> TrainResult:
    """Fit the preprocessing, then the estimator epoch by epoch on the transformed splits.

    One step per epoch; a last step holds every val metric of the final model, which is the
    best epoch's weights (early stopping restores them), so `metrics.json` describes the
    model that was saved.
    """
    X_train, y_train, X_val, y_val = splits
    task = config.data.task
    prep, model = pipeline[:-1], pipeline[-1]
    result = TrainResult(pipeline, X_train.head(5))

    def on_epoch(row: dict[str, float], epoch: int) -> None:
        result.history.append(row)
        log(row, epoch)  # may raise StopFit: the estimator's loop ends training

    Xt_train = prep.fit_transform(X_train, y_train)
    Xt_val = prep.transform(X_val)
    try:
        model.fit(
            Xt_train,
            y_train,
            eval_set=(Xt_val, y_val),
            callbacks=[on_epoch],
            checkpoint=checkpoint,
            resume=config.train.resume,
        )
    except ValueError as exc:
        raise _training_failed(config, exc) from None
    result.fit_seconds = time.perf_counter() - start
    result.stopped_by = model.stopped_by_
    out_val = _final_outputs(pipeline, X_val, task)
    out_train = _final_outputs(pipeline, X_train, task)
    row = _step_metrics(task, metric, model, out_train, y_train, out_val, y_val, final=True)
    row["train/best_epoch"] = float(model.best_epoch_)
    _log_final(result, log, row, len(result.history))
    return result


def _log_final(result: TrainResult, log, row: dict[str, float], step: int) -> None:
    """The last row, logged whatever a `StopFit` callback thinks of it: training is over."""
    if result.stopped_by is not None:
        row["train/stopped"] = 1.0
    result.history.append(row)
    with contextlib.suppress(StopFit):
        log(row, step)


def _fit_one(config, manifest, splits, log, checkpoint=None) -> TrainResult:
    """Fit one pipeline on `splits` = (X_train, y_train, X_val, y_val), logging its curve."""
    X_train, y_train, X_val, y_val = splits
    task = manifest.task
    spec = get_spec(config.model)
    metric = M.selection_metric(config.train.metric, task)
    estimator = spec.build(task, config.hyperparams, config.train.seed, metric)
    pipeline = build_pipeline(preprocessor(manifest, spec.scale), estimator)
    start = time.perf_counter()
    if spec.per_epoch:
        return _fit_per_epoch(config, pipeline, metric, log, checkpoint, start, splits)
    try:
        pipeline.fit(X_train, y_train)
    except ValueError as exc:
        raise _training_failed(config, exc) from None
    if spec.after_fit is not None:
        spec.after_fit(pipeline[-1])
    result = TrainResult(pipeline, X_train.head(5), fit_seconds=time.perf_counter() - start)

    model = pipeline[-1]
    if spec.staged is not None:
        Xt_train = pipeline[:-1].transform(X_train)
        Xt_val = pipeline[:-1].transform(X_val)
        stages = zip(spec.staged(model, Xt_train), spec.staged(model, Xt_val), strict=True)
    else:
        stages = [(_final_outputs(pipeline, X_train, task), _final_outputs(pipeline, X_val, task))]
    # One step held back, so the last one is known without keeping every stage in memory.
    for step, ((out_train, out_val), last) in enumerate(_with_last(stages)):
        row = _step_metrics(task, metric, model, out_train, y_train, out_val, y_val, last)
        if last:
            _log_final(result, log, row, step)
            break
        result.history.append(row)
        try:
            log(row, step)
        except StopFit as exc:  # the curve ends here; the final row describes the model
            result.stopped_by = str(exc) or "StopFit"
            out_train = _final_outputs(pipeline, X_train, task)
            out_val = _final_outputs(pipeline, X_val, task)
            row = _step_metrics(task, metric, model, out_train, y_train, out_val, y_val, True)
            _log_final(result, log, row, step + 1)
            break
    return result


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
    config = config.for_task(manifest.task)
    X_train, y_train = load_split("train", manifest, data_dir)
    X_val, y_val = load_split("val", manifest, data_dir)
    splits = (X_train, y_train, X_val, y_val)
    if config.train.cv_folds:
        from ml_project.cv import cross_validate

        try:
            cv = cross_validate(config, manifest, splits, trackers, _fit_one)
        except ValueError as exc:
            raise _training_failed(config, exc) from None
        return TrainResult(cv.pipeline, X_train.head(5), cv.history, cv.fit_seconds, cv)
    return _fit_one(config, manifest, splits, trackers.log_metrics, checkpoint)


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
    with open_trackers(config.tracking, RunInfo(stage="train")) as trackers:
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
