"""The `StopFit` contract (models/base.py): a callback ends training after the current step,
the best weights so far are kept, and training finishes normally with a final row."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from ml_project import training
from ml_project.data import run_etl
from ml_project.models import StopFit
from ml_project.params import DataParams


@pytest.fixture(scope="module")
def etl(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    return run_etl(DataParams(source="breast_cancer", task="classification"), out), out


def config(model: str, **block):
    raw = yaml.safe_load(open("params.yaml"))  # noqa: SIM115
    raw["model"] = model
    raw["data"]["source"], raw["data"]["task"] = "breast_cancer", "classification"
    raw["train"]["metric"] = "f1"
    raw["models"][model].update(block)
    return training.load_train_config(raw)


class Pruner:
    """Records what it is given and raises StopFit at step `at`, like an Optuna pruner."""

    def __init__(self, at: int):
        self.at, self.rows = at, []

    def log_metrics(self, row, step):
        self.rows.append((step, dict(row)))
        if step >= self.at:
            raise StopFit(f"pruned at step {step}")


def _fit(cfg, manifest, data_dir, pruner):
    trackers = training.Trackers([])
    trackers.log_metrics = pruner.log_metrics  # the fan-out's one entry point for rows
    return training.fit(cfg, manifest, trackers, data_dir)


def test_stopfit_from_an_epoch_callback_ends_torch_training_with_a_final_row(etl):
    manifest, data_dir = etl
    cfg = config("mlp", max_epochs=20, patience=0)
    pruner = Pruner(at=3)
    result = _fit(cfg, manifest, data_dir, pruner)
    model = result.pipeline[-1]
    assert model.stopped_by_ == "pruned at step 3" and result.stopped_by == "pruned at step 3"
    assert model.n_epochs_ == 4  # epochs 0-3, then stopped
    steps = [step for step, _ in pruner.rows]
    assert steps == [0, 1, 2, 3, 4]  # the final row is still logged, after the last epoch
    final = pruner.rows[-1][1]
    assert final["train/stopped"] == 1.0 and "val/accuracy" in final
    assert "train/stopped" not in pruner.rows[-2][1]
    # the best epoch's weights, as early stopping would restore them
    f1 = [row["val/f1"] for _, row in pruner.rows[:-1]]
    assert final["val/f1"] == pytest.approx(max(f1), rel=1e-6)
    assert model.best_epoch_ == int(np.argmax(f1))


def test_no_stopfit_means_no_stopped_mark(etl):
    manifest, data_dir = etl
    pruner = Pruner(at=10**6)
    result = _fit(config("mlp", max_epochs=3), manifest, data_dir, pruner)
    assert result.pipeline[-1].stopped_by_ is None and result.stopped_by is None
    assert "train/stopped" not in pruner.rows[-1][1] and len(pruner.rows) == 4


def test_stopfit_from_a_per_iteration_curve_ends_the_logging_loop(etl):
    manifest, data_dir = etl
    pruner = Pruner(at=5)
    result = _fit(config("hgb", max_iter=30), manifest, data_dir, pruner)
    assert result.stopped_by == "pruned at step 5"
    steps = [step for step, _ in pruner.rows]
    assert steps == [0, 1, 2, 3, 4, 5, 6]
    final = pruner.rows[-1][1]
    assert final["train/stopped"] == 1.0 and "val/roc_auc" in final
    # the final row describes the saved model (every iteration), same as an unpruned run
    whole = training.fit(config("hgb", max_iter=30), manifest, data_dir=data_dir)
    assert {k: v for k, v in final.items() if k != "train/stopped"} == whole.final


def test_stopfit_while_cv_logs_its_merged_curve_still_logs_the_summary(etl):
    manifest, data_dir = etl
    raw_config = config("linear")
    cfg = training.load_train_config(
        {
            **yaml.safe_load(open("params.yaml")),  # noqa: SIM115
            "model": "linear",
            "data": {**raw_config.data.model_dump(), "task": "classification"},
            "train": {**raw_config.train.model_dump(), "cv_folds": 3},
        }
    )
    pruner = Pruner(at=0)
    result = _fit(cfg, manifest, data_dir, pruner)
    assert result.stopped_by == "pruned at step 0"
    steps = [step for step, _ in pruner.rows]
    assert steps[0] == 0 and len(steps) == 2  # the first row, then the summary
    assert pruner.rows[-1][1]["train/stopped"] == 1.0 and "cv/f1_mean" in pruner.rows[-1][1]
