"""Replay an experiment: apply it in a temporary git worktree, `dvc repro` there, and compare
its metrics with the recorded ones. The workspace is not touched; the DVC cache is shared.

    from ml_project.data import replay      # or ml_project.replay
    result = replay("t5")
    result.same, result.differences
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ml_project.versions import VersionError, experiment_refs, git, natural_key, repo_root

REPLAY_METRICS = ("dvclive/train/metrics.json", "evaluation/metrics.json")


@dataclass(frozen=True)
class Replay:
    """An experiment run again: its recorded and replayed metrics, and what differs."""

    experiment: str
    rev: str
    recorded: dict[str, float]
    replayed: dict[str, float]
    differences: dict[str, tuple[float | None, float | None]]
    output: str

    @property
    def same(self) -> bool:
        return not self.differences


def replay(
    experiment: str,
    repo: Path | str = ".",
    force: bool = True,
    rtol: float = 1e-9,
    keep: Path | str | None = None,
) -> Replay:
    """Apply an experiment in a temporary git worktree, `dvc repro` it there, and compare its
    metrics with the recorded ones. The workspace is not touched; the DVC cache is shared.

    Args:
        experiment: an experiment name (`t5`).
        force: retrain (`dvc repro -f`); False: restore from the run-cache where possible.
        rtol: relative tolerance of the comparison.
        keep: a directory to leave the worktree in (removed by default).
    """
    import shutil
    import tempfile

    import yaml
    from dvc.api import DVCFileSystem

    root = repo_root(repo)
    exps = experiment_refs(root)
    if experiment not in exps:
        names = ", ".join(sorted(exps, key=natural_key)[:10]) or "none"
        raise VersionError(f"experiment '{experiment}': not found (experiments: {names})")
    rev = exps[experiment]
    fs = DVCFileSystem(str(root), rev=rev)
    try:
        recorded = _flat_metrics(lambda p: fs.read_text(p))
    except Exception:  # the cache and remote lack them
        raise VersionError(
            f"experiment '{experiment}': its recorded metrics are in neither the DVC cache nor "
            f"the remote; run `dvc exp pull <remote> {experiment}` and try again"
        ) from None
    parent = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="replay-"))
    work = parent / experiment
    git(root, "worktree", "add", "--detach", str(work), rev)
    try:
        from dvc.repo import Repo

        with Repo(str(root)) as main:
            cache_dir = main.cache.local.path
        params = yaml.safe_load((work / "params.yaml").read_text())
        for tracker in ("mlflow", "wandb"):  # a replay is a check, not a new tracked run
            params.setdefault("tracking", {}).setdefault(tracker, {})["enabled"] = False
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
        for cmd in (
            ["dvc", "cache", "dir", "--local", cache_dir],
            ["dvc", "repro", *(["-f"] if force else [])],
        ):
            proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
                errors = [ln for ln in lines if ln.startswith(("error:", "ERROR:"))] or lines
                raise VersionError(f"replay of '{experiment}': {' '.join(cmd)} failed: {errors[0]}")
        replayed = _flat_metrics(lambda p: (work / p).read_text())
    finally:
        if keep is None:
            git(root, "worktree", "remove", "--force", str(work), check=False)
            shutil.rmtree(parent, ignore_errors=True)
    differences = {
        key: (recorded.get(key), replayed.get(key))
        for key in sorted(set(recorded) | set(replayed))
        if not _close(recorded.get(key), replayed.get(key), rtol)
    }
    return Replay(experiment, rev, recorded, replayed, differences, proc.stdout)


def _flat_metrics(read: Callable[[str], str]) -> dict[str, float]:
    from ml_project.params import flatten

    flat = {}
    for path in REPLAY_METRICS:
        values = flatten(json.loads(read(path)), f"{path}:")
        flat.update({k: float(v) for k, v in values.items() if isinstance(v, int | float)})
    return flat


def _close(a: float | None, b: float | None, rtol: float) -> bool:
    import math

    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=rtol, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))
