"""Fixtures only: tiny in-memory data, and real copies of the project in temporary git repos;
and the order test files are handed to xdist's workers.

The building blocks live in tests/helpers/ (import them from there).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.data import messy_frame
from tests.helpers.project import make_project, set_params, sh

# Files whose few tests run longest (real searches, sweeps, generated projects; `--durations`),
# longest first. `make test` hands whole files to its 2 workers (`--dist loadfile`) in
# collection order (`--no-loadscope-reorder`; xdist's default order, most tests first, handed
# these out last, so one worker ran the last of them alone for minutes while the other idled).
LONGEST_FIRST = (
    "tests/test_search_real.py",
    "tests/test_sweeps.py",
    "tests/template/test_generated_projects.py",
    "tests/test_promote.py",
    "tests/test_pipeline.py",
    "tests/test_workspace_guard.py",
    "tests/test_tracking_real.py",
    "tests/test_versions.py",
    "tests/test_torch_pipeline.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """An xdist worker sizes its own native pools to its share of the cores, as a sweep does
    for its queue workers (`ml_project.threads`). With two workers on two cores, each running
    two OpenMP threads that busy-wait, a 0.1 s hgb test took 6 s. Only this process is sized:
    the environment, which the stages the tests start inherit, is left as it is."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return
    import sklearn  # noqa: F401  (loads scikit-learn's OpenMP runtime)
    import torch  # its own OpenMP runtime, sized when it loads: so load it now
    from threadpoolctl import threadpool_limits

    from ml_project.threads import per_worker

    share = per_worker(int(workerinput["workercount"]))
    torch.set_num_threads(share)
    threadpool_limits(limits=share)  # every OpenMP and BLAS runtime loaded so far, for good


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: k for k, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable


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
