"""Trials on DVC's experiment queue: queue one, keep workers running, read what it produced.

Why the queue and not `dvc exp run --temp`: `-S` rewrites the workspace's params.yaml before
DVC takes its lock (see params.py's workspace guard), so two `--temp` runs started at once
from one clone race on that file. Queueing is done here, one trial at a time, by the one
search process; DVC's workers then run the trials side by side in their own temporary
workspaces, and `threads.py` already sizes each stage's thread pools by the live workers.

The parts of DVC used here that are not its documented Python API (the celery queue's
`queue_one`, `status`, `proc` and worker pid files) are the same ones `ml_project.sweeps`
uses; they were written against dvc 3.x.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dvc

PARAMS_FILE = "params.yaml"
WORKER_PIDS = Path(".dvc/tmp/exps/celery")

if not dvc.__version__.startswith("3."):  # pragma: no cover - a loud failure, not a silent one
    raise ImportError(f"ml_project.search.queue was written for dvc 3.x, found {dvc.__version__}")


def queue_trial(repo, name: str, point: Mapping[str, Any]) -> str:
    """Queue one experiment named `name` with `-S` for every value of `point`; its queue rev.
    Call with the working directory at the repository root (DVC resolves params.yaml there)."""
    from ml_project.sweeps import override

    params = [override(k, v) for k, v in point.items()]
    entry = repo.experiments.queue_one(
        repo.experiments.celery_queue, params={PARAMS_FILE: params}, name=name
    )
    return entry.stash_rev


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True


def live_workers(root: Path) -> int:
    """Queue worker processes alive, from their pid files (celery's own view can lag)."""
    count = 0
    for info in (root / WORKER_PIDS).glob("dvc-exp-worker-*.json"):
        try:
            proc = json.loads(info.read_text())
        except (OSError, ValueError):
            continue
        count += proc.get("returncode") is None and _alive(proc.get("pid"))
    return count


def ensure_workers(repo, root: Path, jobs: int) -> int:
    """Start workers up to `jobs` (idle ones exit after a minute on their own)."""
    if live_workers(root) >= jobs:
        return 0
    return repo.experiments.celery_queue.start_workers(jobs)


def statuses(repo) -> dict[str, str]:
    """Queue rev -> Queued | Running | Success | Failed."""
    return {s["rev"]: s["status"] for s in repo.experiments.celery_queue.status()}


def log_text(repo, rev: str) -> str:
    try:
        return Path(repo.experiments.celery_queue.proc[rev].stdout).read_text(errors="replace")
    except (KeyError, OSError):
        return ""


def experiment_commit(root: Path, name: str) -> str | None:
    """The commit of the experiment `name` in this clone (refs/exps/<xx>/<baseline>/<name>)."""
    out = subprocess.run(
        ["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps/"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        sha, ref = line.split(" ", 1)
        parts = ref.split("/")
        if len(parts) == 5 and len(parts[2]) == 2 and parts[4] == name:
            return sha
    return None


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
