"""Torch models through the real pipeline: `dvc exp run -S model=mlp`, a killed and resumed
train stage, and two torchrun processes (gloo) against one."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.helpers.project import project_env, read_json, set_params, sh

pytestmark = pytest.mark.slow


def curve(repo: Path, key: str = "val/f1") -> list[str]:
    return (repo / f"dvclive/train/plots/metrics/{key}.tsv").read_text().splitlines()


def test_exp_run_mlp_trains_per_epoch_and_exports_onnx_and_torchscript(untracked_repo):
    out = sh(
        "dvc exp run -S model=mlp -S models.mlp.max_epochs=6 -S models.mlp.patience=0",
        untracked_repo,
    ).stdout
    # 6 epochs + the final (restored-best) step; the data version sits between them
    assert re.search(r"^train: mlp, data \S+ \(\w+\), 7 step\(s\), ", out, re.MULTILINE), out
    summary = read_json(untracked_repo / "dvclive/train/metrics.json")
    assert summary["step"] == 6 and summary["val"]["f1"] > 0.9
    assert 0 <= summary["train"]["best_epoch"] <= 5
    assert len(curve(untracked_repo)) == 1 + 7 and len(curve(untracked_repo, "train/loss")) == 1 + 7
    assert read_json(untracked_repo / "evaluation/metrics.json")["test"]["accuracy"] > 0.9

    parity = read_json(untracked_repo / "export/parity.json")
    for fmt in ("onnx", "torchscript"):
        assert parity[fmt]["max_abs_diff"] <= parity[fmt]["atol"], parity
    assert parity["onnx"]["label_agreement"] == 1.0
    assert sorted(p.name for p in (untracked_repo / "export/model").iterdir()) == [
        "model.onnx",
        "model.skops",
        "model.torchscript.pt",
        "signature.json",
    ]
    # predict serves the torch model's ONNX file from raw columns, like any other model
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer(as_frame=True).frame.drop(columns="target").head(7)
    raw.columns = [c.replace(" ", "_") for c in raw.columns]  # as etl names them
    raw.to_csv(untracked_repo / "rows.csv", index=False)
    pred = sh("python -m ml_project.predict rows.csv --output preds.csv", untracked_repo)
    assert pred.returncode == 0
    preds = pd.read_csv(untracked_repo / "preds.csv")
    assert len(preds) == 7 and set(preds["prediction"]) <= {0, 1}
    assert not (untracked_repo / "checkpoints/train.pt").exists()  # removed after a completed run


def _epoch_of(checkpoint: Path) -> int:
    try:
        return int(torch.load(checkpoint, weights_only=True)["epoch"])
    except Exception:  # not written yet, or being replaced this instant
        return -1


def test_a_killed_train_stage_resumes_and_ends_like_an_uninterrupted_run(repo):
    # No early stopping and small batches: enough epochs to kill the run in the middle.
    set_params(
        repo,
        {
            "model": "mlp",
            "models.mlp.max_epochs": 60,
            "models.mlp.patience": 0,
            "models.mlp.batch_size": 8,
            "tracking.mlflow.enabled": False,  # dvclive is what must continue its steps
            "tracking.wandb.enabled": False,
        },
    )
    sh("python stages/train.py", repo)  # the reference, outside DVC: no run-cache entry
    # val/accuracy is logged at the final step only: metrics.json, no plot (tracking/dvclive)
    reference = {key: curve(repo, key) for key in ("train/loss", "val/loss", "val/f1")}
    expected = read_json(repo / "dvclive/train/metrics.json")

    checkpoint = repo / "checkpoints/train.pt"
    proc = subprocess.Popen(
        ["dvc", "repro", "train"],
        cwd=repo,
        env=project_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while _epoch_of(checkpoint) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _epoch_of(checkpoint)
    assert 3 <= killed_at < 59, f"the run was not killed mid-training (epoch {killed_at})"

    resumed = sh("dvc repro train", repo)
    assert f"resuming from checkpoints/train.pt: epoch {killed_at + 1} of 60" in resumed.stderr
    assert read_json(repo / "dvclive/train/metrics.json") == expected
    for key, lines in reference.items():
        assert curve(repo, key) == lines, key  # every epoch, once, with identical values
    assert not checkpoint.exists()


def test_torchrun_two_gloo_processes_match_one_process(repo):
    set_params(
        repo,
        {
            "model": "mlp",
            "models.mlp.max_epochs": 5,
            "models.mlp.patience": 0,
            "models.mlp.dropout": 0.0,  # dropout masks are drawn per process
            "models.mlp.device": "cpu",
            "tracking.mlflow.enabled": False,
        },
    )
    sh("python stages/etl.py", repo)
    sh("python stages/train.py", repo)
    single = read_json(repo / "dvclive/train/metrics.json")
    single_curve = curve(repo, "val/loss")
    wandb_runs = len(list((repo / "wandb").glob("offline-run-*")))

    sh("torchrun --standalone --nproc_per_node 2 stages/train.py", repo)
    double = read_json(repo / "dvclive/train/metrics.json")
    assert double["step"] == single["step"] == 5
    # Stated tolerance: 1e-4 relative. Only the order of floating-point sums differs.
    for section in ("train", "val"):
        for key, value in single[section].items():
            assert double[section][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    for a, b in zip(curve(repo, "val/loss")[1:], single_curve[1:], strict=True):
        assert float(a.split("\t")[1]) == pytest.approx(float(b.split("\t")[1]), rel=1e-4)
    # rank 0 alone logged: one more W&B run, not two
    assert len(list((repo / "wandb").glob("offline-run-*"))) == wandb_runs + 1
    assert json.loads((repo / "models/train_info.json").read_text())["model"] == "mlp"
