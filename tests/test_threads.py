"""The thread budget and the GPU pick: who wins, what the pools really get, round robin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ml_project import threads
from ml_project.sweeps import thread_budget
from tests.helpers.project import ROOT, project_env


def test_each_worker_gets_its_share_of_the_cores_and_at_least_one():
    assert threads.per_worker(1, cores=8) == 8
    assert threads.per_worker(2, cores=8) == 4
    assert threads.per_worker(3, cores=8) == 2
    assert threads.per_worker(2, cores=2) == 1
    assert threads.per_worker(4, cores=2) == 1
    assert threads.available_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, (8, "all cores")),
        ({"ML_PROJECT_THREADS": "2"}, (2, "ML_PROJECT_THREADS")),
        ({"OMP_NUM_THREADS": "3", "ML_PROJECT_THREADS": "2"}, (3, "OMP_NUM_THREADS")),
        ({"LOCAL_WORLD_SIZE": "4"}, (2, "torchrun, 4 process(es) per node")),
        ({"ML_PROJECT_THREADS": "1", "LOCAL_WORLD_SIZE": "4"}, (1, "ML_PROJECT_THREADS")),
        ({"OMP_NUM_THREADS": "", "ML_PROJECT_THREADS": "zero"}, (8, "all cores")),
    ],
)
def test_the_user_setting_wins_then_the_sweep_then_torchrun(env, expected):
    assert threads.budget(env, cores=8) == expected


def _fake_queue(root: Path, workers: dict[int, int | None]) -> Path:
    """A DVC root with worker pid files (`None`: a worker that has exited) and a workspace."""
    celery = root / threads.QUEUE_WORKERS_DIR
    celery.mkdir(parents=True)
    for number, pid in workers.items():
        info = {"pid": pid or 999_999_999, "returncode": None if pid else 0}
        (celery / f"dvc-exp-worker-{number}.json").write_text(json.dumps(info))
    workspace = root / threads.QUEUE_WORKSPACES_DIR / "tmpabc"
    workspace.mkdir()
    return workspace


def test_inside_a_dvc_queue_workspace_the_live_workers_share_the_cores(tmp_path, monkeypatch):
    workspace = _fake_queue(tmp_path, {1: os.getpid(), 2: os.getppid(), 3: None})
    env = {"DVC_ROOT": str(tmp_path)}
    assert threads.queue_workers(env, workspace) == {1: os.getpid(), 2: os.getppid()}
    assert threads.queue_workers(env, tmp_path) == {}  # `dvc exp run` in the workspace itself
    assert threads.queue_workers({}, workspace) == {}  # not under DVC
    monkeypatch.chdir(workspace)
    assert threads.budget(env, cores=8) == (4, "2 DVC queue worker(s)")
    assert threads.budget({**env, "ML_PROJECT_THREADS": "3"}, cores=8)[0] == 3


def test_a_gpu_per_worker_round_robin(tmp_path, monkeypatch):
    assert [threads.pick_gpu(3, i) for i in range(5)] == [0, 1, 2, 0, 1]
    assert threads.pick_gpu(1, 7) == 0
    with pytest.raises(ValueError):
        threads.pick_gpu(0, 0)
    # torchrun's local rank first; else the queue worker this process descends from.
    assert threads.worker_index({"LOCAL_RANK": "5"}) == 5
    assert threads.worker_index({}) == 0
    workspace = _fake_queue(tmp_path, {1: 999_999_998, 2: os.getppid()})
    monkeypatch.chdir(workspace)
    assert threads.worker_index({"DVC_ROOT": str(tmp_path)}) == 1


def test_torch_device_auto_takes_the_workers_gpu(monkeypatch):
    torch = pytest.importorskip("torch")
    from ml_project.models.torch_estimator import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setenv("LOCAL_RANK", "4")
    assert resolve_device("auto") == torch.device("cuda", 1)
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert resolve_device("auto") == torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


PROBE = """
import json, sys
sys.path.insert(0, "stages")
import _bootstrap
import sklearn.ensemble, torch
from threadpoolctl import threadpool_info
print(json.dumps({"pools": sorted({p["num_threads"] for p in threadpool_info()}),
                  "torch": torch.get_num_threads()}))
"""


@pytest.mark.parametrize(
    ("env", "pools"),
    [({"ML_PROJECT_THREADS": "2"}, 2), ({"OMP_NUM_THREADS": "1", "ML_PROJECT_THREADS": "2"}, 1)],
)
def test_a_stage_process_starts_its_pools_at_the_budget(env, pools):
    """What the pools really run with, read back by threadpoolctl and torch in a process that
    starts like a stage: `_bootstrap` first, then the libraries."""
    clean = {k: v for k, v in project_env().items() if not k.endswith("_NUM_THREADS")}
    clean.pop(threads.ENV, None)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    seen = json.loads(proc.stdout)
    assert seen == {"pools": [pools], "torch": pools}


def test_apply_sets_every_pool_and_keeps_what_the_user_set():
    env = {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"}
    assert threads.apply(env) == 3
    assert env == {
        **{var: "3" for var in threads.POOL_VARS},
        "OMP_WAIT_POLICY": "ACTIVE",
        threads.ENV: "3",
    }
    env = {"ML_PROJECT_THREADS": "1"}
    threads.apply(env)
    assert env["OMP_NUM_THREADS"] == "1" and env["OMP_WAIT_POLICY"] == "PASSIVE"


def test_the_sweep_gives_its_workers_their_share_and_keeps_a_user_setting(monkeypatch):
    for var in ("OMP_NUM_THREADS", threads.ENV):
        monkeypatch.delenv(var, raising=False)
    with thread_budget(2):
        assert os.environ[threads.ENV] == str(threads.per_worker(2))
    assert threads.ENV not in os.environ
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    with thread_budget(2):
        assert threads.ENV not in os.environ
