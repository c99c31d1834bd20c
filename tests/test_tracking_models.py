"""What a user sees of one `dvc repro` run, read back through each tool's own API: the MLflow
logged model (final metrics, served output), the run's name and commit, `dvc plots show`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers.project import sh
from tests.helpers.wandb_records import read_run

pytestmark = pytest.mark.slow

FINAL_ONLY = {"val/accuracy", "val/roc_auc", "val/log_loss"}


def _client(repo: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")


def _run_id(repo: Path) -> str:
    return json.loads((repo / "models/run_ids.json").read_text())["mlflow"]


def test_the_logged_model_carries_the_final_metrics(built):
    client = _client(built)
    run = client.get_run(_run_id(built))
    last = len(client.get_metric_history(run.info.run_id, "val/loss")) - 1
    assert last > 0  # hgb logs one step per iteration: step 0 is not the final one
    (model,) = [
        m
        for m in client.search_logged_models(experiment_ids=[run.info.experiment_id])
        if m.source_run_id == run.info.run_id
    ]
    linked = {m.key: m for m in model.metrics}
    assert set(linked) == set(run.data.metrics)  # the curve's final values and test/*
    for key, value in run.data.metrics.items():  # the run's latest value of each
        assert linked[key].value == pytest.approx(value), key
    assert {linked[k].step for k in linked if not k.startswith("test/")} == {last}
    final = json.loads((built / "dvclive/train/metrics.json").read_text())["val"]
    assert linked["val/f1"].value == pytest.approx(final["f1"])


def test_the_documented_model_uri_serves_probabilities_matching_its_signature(built, monkeypatch):
    """`runs:/<run_id>/model` (the README's URI) loads; the pyfunc returns what its signature
    says: one float column per class, the same probabilities as the ONNX export."""
    import mlflow.pyfunc

    from ml_project.predict import load_model, predict_frame

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{built / 'mlflow.db'}")
    uri = f"runs:/{_run_id(built)}/model"
    rows = pd.read_parquet(built / "data/processed/test.parquet").drop(columns=["target"]).head(7)
    model = mlflow.pyfunc.load_model(uri)
    (spec,) = model.metadata.signature.outputs.inputs
    assert spec.type == np.dtype("float64") and spec.shape == (-1, 2)
    served = np.asarray(model.predict(rows))
    assert served.shape == (7, 2) and served.sum(axis=1) == pytest.approx(1.0)
    session, sig = load_model(built / "export/model/model.onnx")
    onnx = predict_frame(session, sig, rows)
    expected = onnx[[f"proba_{c}" for c in sig["classes"]]].to_numpy()
    assert served == pytest.approx(expected, abs=1e-5)


def test_a_repro_run_is_named_after_its_commit_in_mlflow_and_wandb(built):
    head = sh("git rev-parse HEAD", built).stdout.strip()
    run = _client(built).get_run(_run_id(built))
    assert run.info.run_name == f"main@{head[:7]}"
    assert run.data.tags["dvc.baseline_rev"] == head
    wandb_id = json.loads((built / "models/run_ids.json").read_text())["wandb"]
    runs = [read_run(f) for f in (built / "wandb").glob(f"offline-run-*-{wandb_id}/*.wandb")]
    assert any(
        r["name"] == f"main@{head[:7]}" and f"dvc.baseline_rev={head}" in r["tags"] for r in runs
    ), [(r["name"], r["tags"]) for r in runs]


def test_w_and_b_lists_the_installed_packages_once_per_run(built):
    """W&B lists the installed packages (the run's requirements.txt) when a run starts. The
    evaluate stage joins the train stage's run and does not list them again: that reads every
    installed package's metadata, 0.3 s of CPU, for the same list."""
    import wandb

    wandb_id = json.loads((built / "models/run_ids.json").read_text())["wandb"]
    train, evaluate = sorted((built / "wandb").glob(f"offline-run-*-{wandb_id}"))  # by time
    requirements = (train / "files/requirements.txt").read_text().splitlines()
    assert f"wandb=={wandb.__version__}" in requirements and len(requirements) > 50
    assert not (evaluate / "files/requirements.txt").exists()


def test_dvc_plots_draw_each_file_once_and_no_lone_dots(built):
    proc = subprocess.run(
        ["dvc", "plots", "show", "--json"], cwd=built, capture_output=True, text=True, check=True
    )
    data = json.loads(proc.stdout)["data"]
    drawn = {name: plots for name, plots in data.items() if plots}
    # One chart per file: no `dvc.yaml::` twin drawn from the stage's plots as lines vs step.
    sources = [name.split("::")[-1] for name in drawn]
    assert len(sources) == len(set(sources)), sources
    assert {"evaluation/plots/confusion_matrix.json", "evaluation/plots/roc.json"} <= set(drawn)
    steps = {n: p for n, p in drawn.items() if n.startswith("dvclive/train/plots/metrics/")}
    keys = {n.removeprefix("dvclive/train/plots/metrics/").removesuffix(".tsv") for n in steps}
    assert keys == {"train/loss", "val/loss", "val/f1"} and not keys & FINAL_ONLY
    for name, (plot,) in steps.items():
        assert len(plot["content"]["data"]["values"]) > 1, name
