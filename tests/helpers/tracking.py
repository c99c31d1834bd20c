"""Read a run back from each tracker: dvclive's curves, an MLflow client, W&B offline runs."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.wandb_records import read_run


def dvclive_curves(repo: Path) -> dict[str, list[tuple[int, float]]]:
    base = repo / "dvclive/train/plots/metrics"
    curves = {}
    for tsv in sorted(base.rglob("*.tsv")):
        rows = [line.split("\t") for line in tsv.read_text().splitlines()[1:]]
        curves[str(tsv.relative_to(base).with_suffix(""))] = [(int(s), float(v)) for s, v in rows]
    return curves


def mlflow_client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def wandb_runs(repo: Path) -> list[dict]:
    return [read_run(f) for f in sorted((repo / "wandb").glob("offline-run-*/run-*.wandb"))]
