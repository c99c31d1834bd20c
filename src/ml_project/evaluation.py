"""Score the trained pipeline on the test split: DVC metrics and plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ml_project import metrics as M
from ml_project.atomic import atomic_dir
from ml_project.data import PROCESSED_DIR, Manifest, load_split, read_manifest
from ml_project.models import spec_of
from ml_project.params import TrackingParams
from ml_project.persistence import MODEL_PATH, load_native
from ml_project.tracking import RUN_IDS_PATH, RunInfo, open_trackers, read_run_ids

EVAL_DIR = Path("evaluation")
METRICS_FILE = "metrics.json"
PLOTS_DIR = "plots"


def test_metrics(pipeline, manifest: Manifest, data_dir: Path = PROCESSED_DIR):
    """Metrics on the test split, plus the arrays the plots are drawn from."""
    X, y = load_split("test", manifest, data_dir)
    pred, proba = spec_of(pipeline).outputs(pipeline, X)
    classes = getattr(pipeline, "classes_", None)
    return M.compute(manifest.task, y, pred, proba, classes), y, pred, proba, classes


def classification_plots(y, pred, proba, classes) -> dict[str, pd.DataFrame]:
    from sklearn.metrics import precision_recall_curve, roc_curve
    from sklearn.preprocessing import label_binarize

    plots = {
        "confusion_matrix": pd.DataFrame(
            {"actual": np.asarray(y).astype(str), "predicted": np.asarray(pred).astype(str)}
        )
    }
    if proba is None:
        return plots
    if len(classes) == 2:
        truth, score = (np.asarray(y) == classes[1]).astype(int), proba[:, 1]
    else:  # micro-average over one-vs-rest
        truth, score = label_binarize(y, classes=classes).ravel(), proba.ravel()
    fpr, tpr, _ = roc_curve(truth, score)
    precision, recall, _ = precision_recall_curve(truth, score)
    plots["roc"] = pd.DataFrame({"fpr": fpr, "tpr": tpr})
    plots["precision_recall"] = pd.DataFrame({"recall": recall, "precision": precision})
    return plots


def regression_plots(y, pred) -> dict[str, pd.DataFrame]:
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    return {
        "predicted_vs_actual": pd.DataFrame({"actual": y, "predicted": pred}),
        "residuals": pd.DataFrame({"predicted": pred, "residual": y - pred}),
    }


def run(pipeline, manifest: Manifest, data_dir: Path = PROCESSED_DIR, out_dir: Path = EVAL_DIR):
    """Write `metrics.json` ({"test": {...}}) and `plots/*.json`; return the test metrics.

    Output appears in one rename, so a failed evaluation leaves nothing that looks valid.
    """
    scores, y, pred, proba, classes = test_metrics(pipeline, manifest, data_dir)
    if manifest.task == "classification":
        plots = classification_plots(y, pred, proba, classes)
    else:
        plots = regression_plots(y, pred)
    with atomic_dir(out_dir) as staging:
        (staging / PLOTS_DIR).mkdir()
        (staging / METRICS_FILE).write_text(json.dumps({"test": scores}, indent=2) + "\n")
        for name, frame in plots.items():
            frame.to_json(staging / PLOTS_DIR / f"{name}.json", orient="records")
    return {f"test/{k}": v for k, v in scores.items()}


def run_tracked(
    tracking: TrackingParams,
    model_path: Path = MODEL_PATH,
    data_dir: Path = PROCESSED_DIR,
    out_dir: Path = EVAL_DIR,
    run_ids_path: Path = RUN_IDS_PATH,
) -> dict[str, float]:
    """The evaluate stage: score the test split and attach metrics and plots to the train run."""
    pipeline, manifest = load_native(model_path), read_manifest(data_dir)
    join = read_run_ids(run_ids_path)
    with open_trackers(tracking, RunInfo(stage="evaluate", join=join)) as trackers:
        scores = run(pipeline, manifest, data_dir, out_dir)
        trackers.log_summary(scores)
        trackers.log_artifact(Path(out_dir) / PLOTS_DIR, "plots")
    return scores
