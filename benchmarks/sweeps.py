"""Sweep overhead: the same 4 experiments through the queue (1 and 2 workers), through
sequential `dvc exp run`, and through a plain in-process Python loop, which is the floor.

Runs in a temporary copy of the project after one `dvc repro` (so every method starts from
the same cached ETL output), with MLflow and W&B switched off so that what is measured is the
orchestration, not the trackers. The run-cache is emptied before each method: otherwise DVC
would restore the second method's experiments instead of training them.

    python benchmarks/sweeps.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import chdir
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.project import (  # noqa: E402
    make_project,
    project_env,
    project_environ,
    set_params,
)

ALPHAS = (0.25, 0.5, 2.0, 4.0)  # models.linear.alpha of the 4 experiments


def in_process(repo: Path) -> None:
    """The floor: train, evaluate and export each configuration by calling the package."""
    from ml_project import evaluation, export, training
    from ml_project.data import read_manifest
    from ml_project.params import ExportParams, TrackingParams, read_params, section
    from ml_project.persistence import MODEL_PATH

    with chdir(repo):
        for alpha in ALPHAS:
            raw = read_params()
            raw["model"] = "linear"
            raw["models"]["linear"]["alpha"] = alpha
            training.run(training.load_train_config(raw))
            evaluation.run_tracked(section(raw, "tracking", TrackingParams))
            export.run(MODEL_PATH, read_manifest(), section(raw, "export", ExportParams))


def sequential(repo: Path) -> None:
    for alpha in ALPHAS:
        subprocess.run(
            ["dvc", "exp", "run", "-S", "model=linear", "-S", f"models.linear.alpha={alpha}"],
            cwd=repo,
            env=project_env(),
            check=True,
            capture_output=True,
        )


def queued(repo: Path, jobs: int) -> float:
    """Returns the CPU seconds the sweep command itself used (queueing, polling, results)."""
    from ml_project.sweeps import run_sweep

    cpu = time.process_time()
    frame = run_sweep(
        params={"model": ["linear"], "models.linear.alpha": list(ALPHAS)},
        jobs=jobs,
        repo=repo,
        progress=False,
        retries=0,
    )
    assert (frame["status"] == "success").all(), frame[["status", "error"]]
    return time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args()
    rows: list[tuple[str, float, float | None]] = []
    with tempfile.TemporaryDirectory() as tmp, project_environ():
        repo = make_project(Path(tmp))
        set_params(repo, {"tracking.mlflow.enabled": False, "tracking.wandb.enabled": False})
        subprocess.run(["dvc", "repro"], cwd=repo, check=True, capture_output=True)
        subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
        subprocess.run(["git", "commit", "-qm", "baseline"], cwd=repo, check=True)

        methods = {
            "in-process loop (floor)": lambda: in_process(repo),
            "sequential dvc exp run": lambda: sequential(repo),
            "queue, 1 worker": lambda: queued(repo, 1),
            "queue, 2 workers": lambda: queued(repo, 2),
        }
        for name, method in methods.items():
            shutil.rmtree(repo / ".dvc/cache/runs", ignore_errors=True)
            start = time.perf_counter()
            own_cpu = method()
            rows.append((name, time.perf_counter() - start, own_cpu))

    n = len(ALPHAS)
    floor = rows[0][1] / n
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; {n} experiments")
    print("(model=linear, MLflow and W&B off; every stage re-executed)\n")
    print("| method | total s | per experiment s | overhead per experiment s | ratio to floor |")
    print("|---|---:|---:|---:|---:|")
    for name, total, _ in rows:
        per = total / n
        print(f"| {name} | {total:.1f} | {per:.1f} | {per - floor:+.1f} | {per / floor:.1f}x |")
    print(
        "\n| the sweep command's own CPU (queueing, polling, results) | seconds | per experiment |"
    )
    print("|---|---:|---:|")
    for name, _, cpu in rows[2:]:
        print(f"| {name} | {cpu:.1f} | {cpu / n:.2f} |")


if __name__ == "__main__":
    main()
