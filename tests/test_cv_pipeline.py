"""`dvc exp run -S train.cv_folds=5 -S model=stacking` end to end, with all three trackers."""

from __future__ import annotations

import json

import pytest

from tests.helpers.project import read_json, set_params, sh
from tests.helpers.tracking import dvclive_curves, mlflow_client, wandb_runs

pytestmark = pytest.mark.slow


def test_cv_stacking_experiment_logs_folds_to_every_tracker_and_exports(repo):
    # A scikit-learn member and the torch MLP, kept small.
    set_params(
        repo,
        {
            "models.stacking.members": {"linear": {}, "mlp": {"max_epochs": 4}},
            "models.stacking.cv": 2,
        },
    )
    out = sh("dvc exp run -S train.cv_folds=5 -S model=stacking", repo).stdout
    assert "Running stage 'export'" in out

    summary = read_json(repo / "dvclive/train/metrics.json")
    assert summary["cv"]["f1_mean"] > 0.9 and 0 <= summary["cv"]["f1_std"] < 0.1
    assert set(summary) >= {f"fold{k}" for k in range(1, 6)}
    folds = read_json(repo / "models/cv/folds.json")
    assert [f["fold"] for f in folds["folds"]] == [1, 2, 3, 4, 5]
    assert folds["summary"]["f1"]["mean"] == pytest.approx(summary["cv"]["f1_mean"])
    assert (repo / "models/cv/oof.parquet").is_file()
    shown = sh("dvc exp show --csv", repo).stdout
    assert "cv.f1_mean" in shown and "cv.f1_std" in shown

    parity = read_json(repo / "export/parity.json")
    assert parity["onnx"]["max_abs_diff"] <= parity["onnx"]["atol"]
    assert "torchscript" not in parity  # metrics only: the reason is beside the models
    skipped = read_json(repo / "export/model/skipped.json")
    assert set(skipped) == {"torchscript"} and "(models.stacking)" in skipped["torchscript"]

    # The same names on the same steps in dvclive, MLflow and W&B.
    live = dvclive_curves(repo)
    # Curves only: values logged at one step (cv/*, each fold's train loss, which a one-step
    # model logs once) are in metrics.json, not drawn as lone dots.
    assert {"fold1/val/f1", "fold5/val/loss"} <= set(live)
    assert not {"fold5/train/loss", "fold5/val/log_loss", "cv/f1_mean", "cv/f1_std"} & set(live)
    assert "loss" in read_json(repo / "dvclive/train/metrics.json")["fold5"]["train"]
    ids = json.loads((repo / "models/run_ids.json").read_text())
    client = mlflow_client(f"sqlite:///{repo / 'mlflow.db'}")
    run = client.get_run(ids["mlflow"])
    train_run = next(r for r in wandb_runs(repo) if r["id"] == ids["wandb"])
    wb: dict[str, list] = {}
    for row in train_run["history"]:
        for key, value in row.items():
            if not key.startswith("_"):
                wb.setdefault(key, []).append((row["_step"], value))
    for key, points in live.items():
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        for other in ([(m.step, m.value) for m in history], wb[key]):
            assert [s for s, _ in other] == [s for s, _ in points], key
            assert [v for _, v in other] == pytest.approx([v for _, v in points]), key
    assert run.data.tags["dvc.exp_name"] and run.data.tags["model"] == "stacking"
