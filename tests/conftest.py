"""Shared fixtures: tiny in-memory data, and real copies of the project in temporary git repos."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def project_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    # Trackers use their defaults (local SQLite, offline W&B) unless a test says otherwise.
    for var in (
        "DVC_EXP_NAME",
        "DVC_ROOT",
        "DVC_STAGE",
        "DVC_EXP_BASELINE_REV",
        "MLFLOW_TRACKING_URI",
        "WANDB_MODE",
        "WANDB_DIR",
        "WANDB_PROJECT",
        "WANDB_ENTITY",
        "WANDB_API_KEY",
    ):
        env.pop(var, None)
    env["WANDB_SILENT"] = "true"
    return env


def sh(cmd: str | list[str], cwd: Path, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run a real command in `cwd`; on unexpected failure, show its output."""
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        shell=isinstance(cmd, str),
        env=project_env(),
        text=True,
        capture_output=True,
        **kw,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{cmd!r} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def project_files() -> list[str]:
    """Tracked and new-but-not-ignored files: what a fresh clone (plus this change) holds."""
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        text=True,
        capture_output=True,
        check=True,
    ).stdout.split("\n")
    return [f for f in out if f and (ROOT / f).is_file()]


def make_project(dest: Path) -> Path:
    """Copy the project into `dest`, as a git repo with one commit and an initialised DVC."""
    for rel in project_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    for cmd in (
        "git init -q -b main",
        "git config user.email test@example.com",
        "git config user.name test",
        "git add -A",
        "git commit -q -m init",
    ):
        sh(cmd, dest)
    return dest


def messy_frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Numeric, string and boolean features with missing values; a learnable string target."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n).round(1),
            "income": rng.lognormal(10, 0.5, n).round(2),
            "city": rng.choice(["paris", "lyon", "nice"], n),
            "member": rng.choice([True, False], n),
        }
    )
    score = (frame["age"] - 40) / 10 + (frame["city"] == "paris") * 1.5
    frame["churn"] = np.where(score + rng.normal(0, 0.5, n) > 0.5, "yes", "no")
    frame.loc[frame.index % 7 == 0, "age"] = np.nan
    frame.loc[frame.index % 11 == 0, "city"] = None
    return frame


@pytest.fixture
def messy() -> pd.DataFrame:
    return messy_frame()


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Path:
    """The project, run once with `dvc repro`; tests that change it work on a copy (`repo`)."""
    repo = make_project(tmp_path_factory.mktemp("project"))
    sh("dvc repro", repo)
    return repo


@pytest.fixture
def repo(built, tmp_path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(built, copy, symlinks=True)
    return copy


@pytest.fixture
def untracked_repo(repo) -> Path:
    """A copy with MLflow and W&B off (dvclive stays), for tests that check no tracker: each
    experiment then skips two tracker start-ups and the logged model (~10 s on 2 cores).
    Tracking params are no stage's dependency, so nothing else changes."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for tracker in ("mlflow", "wandb"):
        params["tracking"][tracker]["enabled"] = False
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return repo
