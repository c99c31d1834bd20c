"""K-fold cross-validation of the active model (`train.cv_folds: K`, 0 is off).

The folds split train+val: stratified for classification, shuffled with `train.seed`. Each
fold trains exactly like a normal run, its held-out part serving as the val split (early
stopping, curves). Naming, the same in every tracker:

- `fold<k>/train/loss`, `fold<k>/val/<metric>`: fold k's curve, steps from 0 per fold;
- `fold<k>/val/<metric>` at the last step: fold k's final metrics (all of them);
- `cv/<metric>_mean`, `cv/<metric>_std`: across folds, at the last step; the DVC metrics
  `dvc exp show` compares.

Rows are merged by step and logged once all folds are done, so every tracker receives the
same names on the same, increasing steps (W&B drops a step lower than one it has seen).

The final model is `train.cv_final`: `refit` trains the model once more on train+val (a torch
model for the folds' mean best epoch count, without early stopping); `ensemble` keeps the K
fold models and averages them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ml_project.errors import ParamsError
from ml_project.fitting import Splits, TrainConfig, fit_one
from ml_project.models import StopFit

if TYPE_CHECKING:
    from ml_project.data import Manifest
    from ml_project.tracking import Trackers

Log = Callable[[dict[str, float], int], None]


@dataclass
class CvOutcome:
    pipeline: Any
    history: list[dict[str, float]]
    oof: pd.DataFrame  # out-of-fold predictions, one row per train+val row
    summary: dict[str, Any]  # folds.json
    fit_seconds: float = 0.0
    fold_pipelines: list[Any] = field(default_factory=list)
    stopped_by: str | None = None  # a `StopFit` raised while the merged curve was logged


def splitter(task: str, folds: int, seed: int):
    from sklearn.model_selection import KFold, StratifiedKFold

    cls = StratifiedKFold if task == "classification" else KFold
    return cls(folds, shuffle=True, random_state=seed)


def _collector(rows: dict[int, dict[str, float]], prefix: str) -> Log:
    def log(row: dict[str, float], step: int) -> None:
        rows.setdefault(step, {}).update({f"{prefix}{k}": v for k, v in row.items()})

    return log


def cross_validate(
    config: TrainConfig, manifest: Manifest, splits: Splits, trackers: Trackers
) -> CvOutcome:
    """Train the K folds exactly like a normal run (`fitting.fit_one`), then the final model.

    `config` is resolved for the task (`TrainConfig.for_task`). Returns the final pipeline,
    the merged curve (already logged to `trackers`), the out-of-fold predictions and the
    per-fold / summary metrics.
    """
    X_train, y_train, X_val, y_val = splits
    X = pd.concat([X_train, X_val], ignore_index=True)
    y = np.concatenate([np.asarray(y_train), np.asarray(y_val)])
    spec, task, k_folds, seed = config.spec, config.task, config.train.cv_folds, config.train.seed
    averaged = config.train.cv_final == "ensemble" and task == "classification"
    if averaged and not spec.has_proba(config.new_pipeline(manifest)):  # e.g. hard voting
        raise ParamsError(
            f"params.yaml: train.cv_final: 'ensemble' averages probabilities, which "
            f"models.{config.model} does not give (valid here: refit)"
        )
    start = time.perf_counter()

    rows: dict[int, dict[str, float]] = {}
    finals, pipelines, best_epochs, oof_parts = [], [], [], []
    for k, (tr, va) in enumerate(splitter(task, k_folds, seed).split(X, y), start=1):
        fold = (X.iloc[tr], y[tr], X.iloc[va], y[va])
        result = fit_one(config, manifest, fold, _collector(rows, f"fold{k}/"))
        finals.append({key[4:]: v for key, v in result.history[-1].items() if key[:4] == "val/"})
        pipelines.append(result.pipeline)
        best_epochs.append(getattr(result.pipeline[-1], "best_epoch_", None))
        pred, proba = spec.outputs(result.pipeline, X.iloc[va])
        part = pd.DataFrame({"row": va, "fold": k, "target": y[va], "prediction": pred})
        if proba is not None:
            for j, cls in enumerate(result.pipeline.classes_):
                part[f"proba_{cls}"] = proba[:, j]
        oof_parts.append(part)

    if config.train.cv_final == "ensemble":
        from sklearn.pipeline import Pipeline

        from ml_project.models.ensembles import FoldEnsemble

        folds = FoldEnsemble.from_fitted(pipelines, task)
        pipeline = Pipeline([(config.model, folds)])  # the step name says which spec
    else:
        # The model once more on all of train+val: torch models for the folds' mean best
        # epoch count (no val split is left to stop on); their curve has `train/loss` only.
        refit = dataclasses.replace(
            config, hyperparams=spec.refit_hyperparams(config.hyperparams, best_epochs)
        )
        pipeline = fit_one(refit, manifest, (X, y, None, None), _collector(rows, "")).pipeline

    summary_row = {f"fold{k}/val/{m}": v for k, f in enumerate(finals, 1) for m, v in f.items()}
    stats = {}
    for m in finals[0]:
        values = np.array([f[m] for f in finals], dtype=np.float64)
        stats[m] = {"mean": float(values.mean()), "std": float(values.std())}
        summary_row[f"cv/{m}_mean"], summary_row[f"cv/{m}_std"] = stats[m].values()
    last = max(rows, default=-1) + 1
    rows[last] = summary_row
    stopped_by = None
    for step in sorted(rows)[:-1]:
        try:
            trackers.log_metrics(rows[step], step)
        except StopFit as exc:  # e.g. a pruner: the curve ends, the summary is still logged
            stopped_by = str(exc) or "StopFit"
            summary_row["train/stopped"] = 1.0
            break
    with contextlib.suppress(StopFit):
        trackers.log_metrics(summary_row, last)
    history = [rows[step] for step in sorted(rows)]

    oof = pd.concat(oof_parts).sort_values("row").reset_index(drop=True)
    summary = {
        "cv_folds": k_folds,
        "final": config.train.cv_final,
        "metric": config.selection.name,
        "folds": [{"fold": k, **f} for k, f in enumerate(finals, 1)],
        "summary": stats,
    }
    seconds = time.perf_counter() - start
    return CvOutcome(pipeline, history, oof, summary, seconds, pipelines, stopped_by)
