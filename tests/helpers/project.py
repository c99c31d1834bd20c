"""Real copies of the project in temporary git repos, and commands run in them."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
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


@contextlib.contextmanager
def project_environ(**extra: str) -> Iterator[None]:
    """Run in-process code (and the queue workers it starts) in the tests' clean environment,
    plus `extra` variables."""
    saved, clean = dict(os.environ), {**project_env(), **extra}
    os.environ.clear()
    os.environ.update(clean)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


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


def set_params(repo: Path, changes: Mapping[str, Any]) -> None:
    """Edit the repo's params.yaml: `{"models.hgb.learning_rate": 0.2, ...}` (dotted keys)."""
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = raw
        for part in parents:
            node = node[part]
        node[leaf] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
