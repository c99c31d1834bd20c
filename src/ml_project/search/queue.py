"""Trials on DVC's experiment queue, through the sweep's queue adapter, and what they produced.

Why the queue and not `dvc exp run --temp`: `-S` rewrites the workspace's params.yaml before
DVC takes its lock (see params.py's workspace guard), so two `--temp` runs started at once
from one clone race on that file. Queueing is done here, one trial at a time, by the one
search process; DVC's workers then run the trials side by side in their own temporary
workspaces, and `threads.py` already sizes each stage's thread pools by the live workers.
Every DVC internal involved stays in `ml_project.sweeps.dvc_queue`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def queue_trial(queue, name: str, point: Mapping[str, Any]) -> str:
    """Queue one experiment named `name` with `-S` for every value of `point`; its queue rev.
    Call with the working directory at the repository root (DVC resolves params.yaml there).

    The trial runs without DVC's run cache (`dvc exp run --no-run-cache`): its train stage is
    not a function of its dependencies alone, since the trial's `optuna` tracker reports every
    epoch to the study and may stop training (`train/stopped`) as the pruner decides. A trial
    whose params another run already trained (the same seed and sampler give the same points)
    would otherwise get that run's outputs restored, never report to its own trial, and carry
    the other run's pruning: a pruned result of another study in a study without pruning.
    """
    from ml_project.sweeps import override

    return queue.queue(name, [override(k, v) for k, v in point.items()], run_cache=False)


def ensure_workers(queue, root: Path, jobs: int) -> int:
    """Start workers up to `jobs` (idle ones exit after a minute on their own)."""
    from ml_project.sweeps.dvc_queue import worker_pids

    if len(worker_pids(root)) >= jobs:
        return 0
    return queue.start_workers(jobs)


def experiment_commit(root: Path, name: str) -> str | None:
    """The commit of the experiment `name` in this clone, or None."""
    from ml_project.sweeps.dvc_queue import experiment_commits

    return experiment_commits(root).get(name)


def metrics(root: Path, commit: str, path: str) -> dict[str, float]:
    """The train stage's metrics file of an experiment, flattened like `dvc exp show` names
    them (`val.f1`, `train.stopped`); read through DVC from the experiment's commit."""
    import dvc.api

    from ml_project.params import flatten

    shown = json.loads(dvc.api.read(path, repo=str(root), rev=commit))
    return {k: v for k, v in flatten(shown).items() if isinstance(v, int | float)}


def push(root: Path, remote: str, name: str) -> str:
    """`dvc exp push <remote> <name>` (git refs and cached outputs); '' or its error line."""
    proc = subprocess.run(
        ["dvc", "exp", "push", remote, name], cwd=root, capture_output=True, text=True
    )
    if proc.returncode == 0:
        return ""
    lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    return lines[-1] if lines else f"dvc exp push exited {proc.returncode}"
