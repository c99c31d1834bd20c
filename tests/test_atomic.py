"""Outputs appear whole or not at all, and a killed stage leaves nothing for git to pick up."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ml_project.atomic import STAGING_PREFIX, atomic_dir, atomic_file, sweep_stale
from tests.helpers.project import make_project, project_env, sh


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_failed_write_leaves_the_previous_output_and_no_staging(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as staging:
        (staging / "new.txt").write_text("half")
        raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (target / "old.txt").read_text() == "old"


def test_staging_of_dead_processes_is_swept_and_live_ones_are_kept(tmp_path):
    target = tmp_path / "processed"
    dead = tmp_path / f"{STAGING_PREFIX}processed-{_dead_pid()}-abc"
    dead.mkdir()
    (dead / "train.parquet").write_bytes(b"partial")
    dead_file = tmp_path / f"{STAGING_PREFIX}processed-{_dead_pid()}-def"
    dead_file.write_bytes(b"partial")
    live = tmp_path / f"{STAGING_PREFIX}processed-{os.getppid()}-ghi"  # pytest's parent: alive
    live.mkdir()
    other = tmp_path / f"{STAGING_PREFIX}processed-extra-{_dead_pid()}-jkl"  # another target's
    other.mkdir()
    assert set(sweep_stale(target)) == {dead, dead_file}
    assert live.exists() and other.exists()
    with atomic_file(tmp_path / "model.skops") as tmp:
        assert tmp.name.startswith(f"{STAGING_PREFIX}model.skops-{os.getpid()}-")
        tmp.write_text("x")
    assert (tmp_path / "model.skops").read_text() == "x"


def _untracked(repo: Path) -> list[str]:
    """What `git add -A` would pick up: untracked files that are not ignored."""
    out = sh("git status --porcelain --untracked-files=all", repo).stdout
    return [line for line in out.splitlines() if line.startswith("??")]


def _kill_once_staging_appears(cmd: str, repo: Path, where: Path, after: float) -> bool:
    """Start `cmd`, SIGKILL it `after` seconds after its staging appears under `where`.

    Returns whether the staging was seen (the kill then hit a write in progress).
    """
    proc = subprocess.Popen(
        cmd, shell=True, cwd=repo, env=project_env(), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    seen = False
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if any(where.glob(f"{STAGING_PREFIX}*")):
            seen = True
            time.sleep(after)
            break
        time.sleep(0.005)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return seen


@pytest.mark.slow
def test_killed_stages_leave_no_debris_for_git_and_the_next_run_sweeps_it(tmp_path):
    repo = make_project(tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["tracking"]["mlflow"]["enabled"] = params["tracking"]["wandb"]["enabled"] = False
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in ("etl", "train"):
        sh(f"python stages/{stage}.py", repo)
    for stage in ("evaluate", "export"):  # each kill lands before, during or after the write
        for after in (0.0, 0.1):
            _kill_once_staging_appears(f"python stages/{stage}.py", repo, repo, after)
            assert _untracked(repo) == []
        sh(f"python stages/{stage}.py", repo)
        assert not list(repo.glob(f"{STAGING_PREFIX}*"))

    # etl on a table big enough that writing its splits takes a moment
    rng = np.random.default_rng(0)
    rows = 200_000
    frame = pd.DataFrame(rng.normal(size=(rows, 8)), columns=[f"x{i}" for i in range(8)])
    frame["y"] = rng.integers(0, 2, rows)
    frame.to_parquet(repo / "data/raw/big.parquet")
    params["data"].update(source="data/raw/big.parquet", target="y")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git add -A && git commit -qm big", repo)
    hits = 0
    for after in (0.0, 0.05, 0.3):
        hits += _kill_once_staging_appears("python stages/etl.py", repo, repo / "data", after)
        assert _untracked(repo) == []
    assert hits, "no kill landed while the staging existed"
    sh("python stages/etl.py", repo)
    assert not list((repo / "data").glob(f"{STAGING_PREFIX}*"))
    assert (repo / "data/processed/manifest.json").is_file()
