"""Score the trained pipeline on the test split: DVC metrics and plots."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ml_project import metrics as M
from ml_project.data import PROCESSED_DIR, Manifest, load_split

EVAL_DIR = Path("evaluation")
METRICS_FILE = "metrics.json"
PLOTS_DIR = "plots"


def test_metrics(pipeline, manifest: Manifest, data_dir: Path = PROCESSED_DIR):
    """Metrics on the test split, plus the arrays the plots are drawn from."""
    X, y = load_split("test", manifest, data_dir)
    pred = pipeline.predict(X)
    proba = None
    if manifest.task == "classification" and hasattr(pipeline, "predict_proba"):
        proba = pipeline.predict_proba(X)
    classes = getattr(pipeline, "classes_", None)
    return M.compute(manifest.task, y, pred, proba, classes), y, pred, proba, classes


def classification_plots(y, pred, proba, classes) -> dict[str, list[dict]]:
    from sklearn.metrics import precision_recall_curve, roc_curve
    from sklearn.preprocessing import label_binarize

    plots = {
        "confusion_matrix": [
            {"actual": str(a), "predicted": str(p)} for a, p in zip(y, pred, strict=True)
        ]
    }
    if proba is None:
        return plots
    if len(classes) == 2:
        truth, score = (np.asarray(y) == classes[1]).astype(int), proba[:, 1]
    else:  # micro-average over one-vs-rest
        truth, score = label_binarize(y, classes=classes).ravel(), proba.ravel()
    fpr, tpr, _ = roc_curve(truth, score)
    precision, recall, _ = precision_recall_curve(truth, score)
    plots["roc"] = [{"fpr": float(f), "tpr": float(t)} for f, t in zip(fpr, tpr, strict=True)]
    plots["precision_recall"] = [
        {"recall": float(r), "precision": float(p)} for r, p in zip(recall, precision, strict=True)
    ]
    return plots


def regression_plots(y, pred) -> dict[str, list[dict]]:
    return {
        "predicted_vs_actual": [
            {"actual": float(a), "predicted": float(p)} for a, p in zip(y, pred, strict=True)
        ],
        "residuals": [
            {"predicted": float(p), "residual": float(a - p)} for a, p in zip(y, pred, strict=True)
        ],
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
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        (staging / PLOTS_DIR).mkdir()
        (staging / METRICS_FILE).write_text(json.dumps({"test": scores}, indent=2) + "\n")
        for name, rows in plots.items():
            pd.DataFrame(rows).to_json(staging / PLOTS_DIR / f"{name}.json", orient="records")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {f"test/{k}": v for k, v in scores.items()}
