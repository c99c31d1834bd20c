"""Search against grid: trials-to-target, and what a search trial costs over a grid experiment.

For each pair, the grid preset runs first through the sweep command (`ml_project.sweeps`);
its best validation score is the target. Then an Optuna search over the same model, with a
continuous space around the grid's and a budget of the grid's size, runs through
`ml_project.search`; trials-to-target is the number of trials (in trial order) until one
reaches the grid's best. Both run on the same queue with the same workers, so the difference
in wall time per experiment is the search's own overhead (asking and telling Optuna, reading
each trial's metrics, the journal file). MLflow and W&B are off: what is compared is the
search, not the trackers. The run-cache is emptied between the two, or DVC would restore
identical configurations instead of training them.

    python benchmarks/search.py               # hgb-lr (6) and torch (9): about 20-40 min on 2 cores
    python benchmarks/search.py --pairs hgb   # the boosting pair only
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from tests.helpers.project import make_project, project_environ, set_params, sh  # noqa: E402

# grid preset -> the search over the same model(s), budget = the grid's size.
PAIRS = {
    "hgb": (
        "hgb-lr",
        {
            "model": "hgb",
            "models.hgb.learning_rate": {"low": 0.02, "high": 0.5, "log": True},
            "models.hgb.max_leaf_nodes": {"low": 8, "high": 64, "log": True},
        },
    ),
    "torch": (
        "torch",
        {
            "model": {
                "mlp": {
                    "models.mlp.lr": {"low": 2.0e-4, "high": 5.0e-3, "log": True},
                    "models.mlp.hidden_sizes": [[64], [128, 64]],
                },
                "resnet": {"models.resnet.n_blocks": {"low": 1, "high": 4}},
            }
        },
    ),
}


def prepare(dest: Path) -> Path:
    repo = make_project(dest)
    set_params(repo, {"tracking.mlflow.enabled": False, "tracking.wandb.enabled": False})
    presets = yaml.safe_load((repo / "sweeps.yaml").read_text())
    presets["searches"] = {
        # `trials` is a placeholder: each run passes the grid's size (`run_search(trials=)`).
        f"bench-{key}": {"space": space, "sampler": "tpe", "trials": 1}
        for key, (_, space) in PAIRS.items()
    }
    (repo / "sweeps.yaml").write_text(yaml.safe_dump(presets, sort_keys=False))
    sh("git add -A && git commit -q -m bench && dvc repro -q", repo)
    return repo


def empty_run_cache(repo: Path) -> None:
    shutil.rmtree(repo / ".dvc/cache/runs", ignore_errors=True)


def one_pair(repo: Path, key: str, jobs: int, seed: int) -> dict:
    from ml_project.search import run_search
    from ml_project.sweeps import run_sweep

    grid_name, _ = PAIRS[key]
    empty_run_cache(repo)
    start = time.perf_counter()
    with project_environ():
        grid = run_sweep(grid_name, jobs=jobs, repo=repo, progress=False)
    grid_seconds = time.perf_counter() - start
    metric = grid.attrs["metric"]
    ok = grid[grid["status"] == "success"]
    target = ok[metric].astype(float)
    higher = not metric.endswith(("rmse", "mae", "log_loss"))
    best = target.max() if higher else target.min()

    empty_run_cache(repo)
    start = time.perf_counter()
    cpu = time.process_time()
    with project_environ():
        search = run_search(
            f"bench-{key}", trials=len(grid), jobs=jobs, seed=seed, repo=repo, progress=False
        )
    search_seconds = time.perf_counter() - start
    search_cpu = time.process_time() - cpu
    done = search[search["state"] == "complete"].sort_values("trial")
    reached = done[(done[metric] >= best) if higher else (done[metric] <= best)]
    to_target = int(reached["trial"].iloc[0]) + 1 if len(reached) else None
    return {
        "pair": f"{grid_name} ({len(grid)}) vs bench-{key}",
        "grid best": best,
        "search best": done[metric].max() if higher else done[metric].min(),
        "trials to target": to_target,
        "grid s/exp": grid_seconds / len(grid),
        "search s/trial": search_seconds / len(search),
        "search CPU s/trial": search_cpu / len(search),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", nargs="+", choices=sorted(PAIRS), default=sorted(PAIRS))
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; -j {args.jobs}")
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        repo = prepare(Path(tmp) / "project")
        rows = [one_pair(repo, key, args.jobs, args.seed) for key in args.pairs]
    print(
        "\n| pair | grid best | search best | trials to target | grid s/exp | search s/trial "
        "| search CPU s/trial |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['pair']} | {r['grid best']:.4f} | {r['search best']:.4f} | "
            f"{r['trials to target'] or 'not reached'} | {r['grid s/exp']:.1f} | "
            f"{r['search s/trial']:.1f} | {r['search CPU s/trial']:.2f} |"
        )


if __name__ == "__main__":
    main()
