"""Fixtures only: tiny in-memory data, and real copies of the project in temporary git repos.

The building blocks live in tests/helpers/ (import them from there).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.data import messy_frame
from tests.helpers.project import make_project, set_params, sh


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
    set_params(repo, {"tracking.mlflow.enabled": False, "tracking.wandb.enabled": False})
    return repo
