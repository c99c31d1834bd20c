"""Read back what a sweep left: DVC's experiments and queue, MLflow runs, W&B offline runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers.project import sh
from tests.helpers.wandb_records import read_run

LEFTOVERS = ("mlflow.db", "mlruns", "mlartifacts", "wandb", "dvclive", "checkpoints")


def stages_ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


def exp_rows(repo: Path) -> dict[str, dict]:
    """`dvc exp show`, one flat row per named experiment."""
    import dvc.api

    return {r["Experiment"]: r for r in dvc.api.exp_show(repo=str(repo)) if r["Experiment"]}


def metrics_files(repo: Path) -> dict[str, float]:
    """The workspace's metrics, flattened like `dvc exp show` (`test.f1`, `val.f1`, ...)."""
    flat: dict[str, float] = {}
    for rel in ("dvclive/train/metrics.json", "evaluation/metrics.json", "export/parity.json"):
        data = json.loads((repo / rel).read_text())
        for section, values in data.items():
            if isinstance(values, dict):
                flat.update({f"{section}.{k}": v for k, v in values.items()})
            else:
                flat[section] = values
    return flat


def queue_states(repo: Path) -> dict[str, list[str]]:
    """Experiment name -> the status of each queue task that ran under it."""
    states: dict[str, list[str]] = {}
    for line in sh("dvc queue status", repo).stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[-1] in ("Success", "Failed", "Queued", "Running"):
            states.setdefault(parts[1], []).append(parts[-1])
    return states


def assert_sweep_complete(
    repo: Path, names: list[str], trackers: bool, failed: list[str] = ()
) -> dict[str, dict]:
    """Every experiment succeeded once, with its results; nothing left in temp workspaces.

    With `trackers`, each has exactly one MLflow run and one W&B run named after it, holding
    the same full per-step history as its dvclive curve.
    """
    rows = exp_rows(repo)
    states = queue_states(repo)
    for name in names:
        assert "Success" in states.get(name, []), (name, states)
        assert rows[name]["State"] == "Success", rows[name]
        assert isinstance(rows[name]["test.f1"], float) and rows[name]["val.f1"] > 0.5
    for name in failed:
        assert set(states[name]) == {"Failed"}, (name, states)
        assert rows.get(name, {"State": "Failed"})["State"] == "Failed", rows[name]
    assert not [s for s in states.values() if {"Queued", "Running"} & set(s)], states

    exps = repo / ".dvc/tmp/exps"
    assert not [p for p in exps.iterdir() if p.name.startswith("tmp")]  # workspaces removed
    stray = [p for name in LEFTOVERS for p in exps.rglob(name)]
    assert stray == [], stray
    if trackers:
        _assert_tracker_runs(repo, names, rows)
    return rows


def _assert_tracker_runs(repo: Path, names: list[str], rows: dict[str, dict]) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ml_project")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    by_name: dict[str, list] = {}
    for run in runs:
        by_name.setdefault(run.data.tags.get("dvc.exp_name"), []).append(run)

    wandb_runs: dict[str, list[dict]] = {}
    for path in sorted((repo / "wandb").glob("offline-run-*/run-*.wandb")):
        record = read_run(path)
        wandb_runs.setdefault(record["name"], []).append(record)

    for name in names:
        (run,) = by_name[name]  # exactly one MLflow run
        assert run.info.status == "FINISHED" and run.info.run_name == name
        # Artifacts go to the experiment's store (the repo root it was created in), never into
        # the experiment's temporary workspace, which DVC deletes.
        artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
        assert "/.dvc/tmp/" not in str(artifacts) and artifacts.is_dir(), artifacts
        assert "test/f1" in run.data.metrics  # evaluate joined the train run
        steps = list(range(int(rows[name]["step"]) + 1))
        history = sorted(
            client.get_metric_history(run.info.run_id, "val/loss"), key=lambda m: m.step
        )
        assert [m.step for m in history] == steps, name

        files = wandb_runs[name]  # train and evaluate write one file each, for one run id
        assert len({f["id"] for f in files}) == 1, (name, [f["id"] for f in files])
        wb = [row for f in files for row in f["history"] if "val/loss" in row]
        assert [row["_step"] for row in wb] == steps, name
        assert [row["val/loss"] for row in wb] == pytest.approx([m.value for m in history]), name
