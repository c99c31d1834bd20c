"""Sweeps through the real DVC queue: presets, names, parallel workers, failures and retries,
exact replay, the notebook, and experiments moved between two clones."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from ml_project.errors import UserError
from ml_project.sweeps import dvc_queue, run_sweep, supervisor
from ml_project.threads import per_worker
from tests.helpers.notebooks import run_notebook
from tests.helpers.project import ROOT, make_project, project_env, project_environ, set_params, sh
from tests.helpers.sweep_checks import assert_sweep_complete, exp_rows, metrics_files, stages_ran

# --------------------------------------------------------------------------- bad input, end to end


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["run", "nope"],
            "error: unknown preset 'nope' (valid: smoke, models, hgb-lr, torch)",
        ),
        (
            ["run", "smoke", "-S", "models.linear.alpah=1,2"],
            "error: sweeps.yaml: smoke: models.linear.alpah: not a param in params.yaml "
            "(valid keys under models.linear: alpha, max_iter)",
        ),
        (
            ["run", "-S", "modle=rf"],
            "error: -S: modle: not a param in params.yaml (valid top-level keys: data, "
            "etl, model, models, train, tracking, export)",
        ),
        (
            ["run", "-S", "model"],
            "error: -S 'model': expected key=value[,value...], e.g. -S 'model=rf,hgb'",
        ),
        (["run"], "error: nothing to sweep: name a preset or give -S key=value[,value...]"),
        (["run", "smoke", "-j", "0"], "error: jobs: must be at least 1 (got 0)"),
        (
            ["run", "smoke", "-j", "two"],
            "error: python -m ml_project.sweeps run: argument -j/--jobs: invalid int value: 'two'",
        ),
        (
            ["launch"],
            "error: python -m ml_project.sweeps: argument {list,run,next-name}: invalid "
            "choice: 'launch' (choose from 'list', 'next-name', 'run')",
        ),
    ],
)
def test_bad_input_is_one_line_and_queues_nothing(tmp_path, args, message):
    repo = make_project(tmp_path)
    proc = sh([sys.executable, "-m", "ml_project.sweeps", *args], repo, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == message
    assert not (repo / ".dvc/tmp/exps").exists()
    assert sh("git for-each-ref refs/exps", repo).stdout == ""


def test_a_broken_preset_names_its_key(tmp_path):
    repo = make_project(tmp_path)
    (repo / "sweeps.yaml").write_text("quick:\n  grids:\n    model: [rf]\n")
    proc = sh([sys.executable, "-m", "ml_project.sweeps", "run", "quick"], repo, check=False)
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        "error: sweeps.yaml: quick: needs a 'grid' (and optionally a 'description')",
    )
    with pytest.raises(UserError, match="no values to sweep"):
        run_sweep(params={"model": []}, repo=repo)


# --------------------------------------------------------------------------- 8 experiments, 2 workers

RACE_ROUNDS = int(os.environ.get("SWEEP_RACE_ROUNDS", "1"))  # raise it to soak-test the queue
RACE8 = {
    "description": "6 boosting + 2 torch experiments, each with a per-step curve",
    "grid": [
        {
            "model": "hgb",
            "models.hgb.learning_rate": [0.05, 0.1, 0.3],
            "models.hgb.max_iter": [6, 9],
        },
        {"model": "mlp", "models.mlp.max_epochs": 3, "models.mlp.lr": [0.001, 0.003]},
    ],
}


@pytest.fixture(scope="module", params=range(RACE_ROUNDS))
def race8(built, tmp_path_factory, request):
    """A copy of the project that ran an 8-experiment preset on 2 workers, from the CLI."""
    repo = tmp_path_factory.mktemp(f"race8-{request.param}") / "repo"
    shutil.copytree(built, repo, symlinks=True)
    presets = yaml.safe_load((repo / "sweeps.yaml").read_text())
    (repo / "sweeps.yaml").write_text(yaml.safe_dump({**presets, "race8": RACE8}, sort_keys=False))
    sh("git add sweeps.yaml && git commit -q -m race8", repo)
    proc = sh([sys.executable, "-m", "ml_project.sweeps", "run", "race8", "-j", "2"], repo)
    return repo, proc


@pytest.mark.slow
def test_a_sweep_of_8_on_2_workers_completes_whole(race8):
    repo, proc = race8
    names = [f"t{i}" for i in range(1, 9)]
    assert "8 of 8 succeeded; best by val.f1: t" in proc.stdout
    table = proc.stdout.split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in table[2:]].count("t1") <= 1
    starred = [line for line in table[2:] if line.split()[1] == "*"]
    assert len(starred) == 1 and starred[0] == table[2]  # the best, first
    best = starred[0].split()[0]
    assert f"replay the best: dvc exp apply {best} && dvc repro" in proc.stdout

    next_name = sh([sys.executable, "-m", "ml_project.sweeps", "next-name"], repo).stdout
    assert next_name == "t9\n"
    rows = assert_sweep_complete(repo, names, trackers=True)
    steps = {rows[n]["model"]: int(rows[n]["step"]) + 1 for n in names}
    assert {int(rows[n]["step"]) + 1 for n in names if rows[n]["model"] == "hgb"} == {6, 9}
    assert steps["mlp"] == 4  # 3 epochs, then the final model's step


@pytest.mark.slow
def test_a_torch_experiment_replays_from_cache_and_reruns_identically(race8):
    repo, _ = race8
    rows = exp_rows(repo)
    name = next(n for n, r in rows.items() if r["model"] == "mlp")
    # Each of the 2 workers trained with its share of the cores (the sweep's thread budget).
    user = project_env().get("OMP_NUM_THREADS")
    assert_replays(repo, name, rows[name], threads=int(user) if user else per_worker(2))


def assert_replays(repo: Path, name: str, row: dict, threads: int | None = None) -> None:
    """`dvc exp apply` + `dvc repro` restores everything; `dvc repro -f` gives the same."""
    sh(f"dvc exp apply {name}", repo)
    out = sh("dvc repro", repo).stdout
    assert stages_ran(out) == set(), out
    if threads is not None:
        assert json.loads((repo / "models/train_info.json").read_text())["threads"] == threads
    restored = metrics_files(repo)
    assert restored["test.f1"] == pytest.approx(row["test.f1"], rel=1e-12)
    assert restored["val.f1"] == pytest.approx(row["val.f1"], rel=1e-12)
    assert sh("dvc status", repo).stdout.strip() == "Data and pipelines are up to date."

    # Trackers are not a dependency of any stage: switching them off changes no hash.
    set_params(repo, {"tracking.mlflow.enabled": False, "tracking.wandb.enabled": False})
    # A torch model's float sums depend on its thread count: re-run with the one it trained
    # with (a -j 2 sweep gave each worker its share), as the README's replay section says.
    recorded = json.loads((repo / "models/train_info.json").read_text())["threads"]
    out = sh(f"ML_PROJECT_THREADS={recorded} dvc repro -f", repo).stdout
    assert stages_ran(out) == {"etl", "train", "evaluate", "export"}
    assert metrics_files(repo) == restored


# --------------------------------------------------------------------------- failures and retries


@pytest.fixture(scope="module", params=range(RACE_ROUNDS))
def sk_sweep(built, tmp_path_factory, request):
    """Three linear experiments without trackers, and two real faults: t1's process is
    killed (`dvc queue kill`), then, once t3 runs, every queue worker is SIGKILLed, which
    leaves t3 reported as running with nobody to finish it. t2 has an invalid alpha.

    The faults are not raced: one attempt each of t1 and t3 waits at the start of its train
    stage (a gate, tests/helpers/gate.py). t1's is killed there, so it is certainly running
    when killed; t3's goes on only once t1's retry is queued and every worker is dead, so
    t3's process finishes with nobody to collect it, whatever the machine's load.

    The team's DVC remote is configured (and committed) first, as `dvc exp push` uses the
    remote of the experiment's own commit.
    """
    repo = tmp_path_factory.mktemp(f"sk-{request.param}") / "repo"
    shutil.copytree(built, repo, symlinks=True)
    set_params(repo, {"tracking.mlflow.enabled": False, "tracking.wandb.enabled": False})
    dvc_yaml = (repo / "dvc.yaml").read_text()
    train = "cmd: python stages/train.py\n"
    assert dvc_yaml.count(train) == 1
    (repo / "dvc.yaml").write_text(
        dvc_yaml.replace(train, "cmd: python tests/helpers/gate.py && python stages/train.py\n")
    )
    storage = tmp_path_factory.mktemp("dvc-storage")
    sh(f"dvc remote add -d -f shared {storage}", repo)
    sh(
        "git commit -q -m 'no trackers, gated, shared remote' params.yaml dvc.yaml .dvc/config",
        repo,
    )
    gates = tmp_path_factory.mktemp("gates")
    for name in ("t1", "t3"):
        (gates / f"{name}.hold").touch()
    faults: list[str] = []

    def held(name: str) -> bool:
        return (gates / f"{name}.held").exists()

    def release(name: str) -> None:
        (gates / f"{name}.open").touch()

    def inject_faults(tasks):
        task = {t.name: t for t in tasks}
        if "kill t1" not in faults and task["t1"].status == "Running" and held("t1"):
            sh("dvc queue kill t1", repo)  # its held attempt; the retry is not held
            faults.append("kill t1")
        # Once t1's killed attempt has been seen failed and queued again, and t3 is held:
        ready = task["t1"].attempts > 1 and task["t3"].status == "Running" and held("t3")
        if faults == ["kill t1"] and ready:
            pids = dvc_queue.worker_pids(repo)
            assert pids, "no queue worker alive while t3 is held"
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while set(pids) & set(dvc_queue.worker_pids(repo)) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not set(pids) & set(dvc_queue.worker_pids(repo)), "workers survived SIGKILL"
            faults.append("kill workers")
            release("t3")  # its process finishes, with no worker left to collect it

    # Called from another directory that has a params.yaml of its own, which must stay as is.
    elsewhere = tmp_path_factory.mktemp("cwd")
    shutil.copy(repo / "params.yaml", elsewhere / "params.yaml")
    try:
        with (
            project_environ(SWEEP_GATES=str(gates)),
            contextlib.chdir(elsewhere),
            pytest.MonkeyPatch.context() as patch,
        ):
            # The supervisor's margins, in seconds, before it calls a task orphaned or restarts
            # workers: what they guard against is staged here, so only their waiting is cut.
            patch.setattr(supervisor, "ORPHAN_SECONDS", 5.0)
            patch.setattr(supervisor, "WORKER_START_SECONDS", 5.0)
            frame = run_sweep(
                params={"model": ["linear"], "models.linear.alpha": [0.5, -1, 2.0]},
                jobs=2,
                repo=repo,
                progress=False,
                poll_seconds=1.0,
                retries=2,
                on_poll=inject_faults,
            )
    finally:
        for name in ("t1", "t3"):  # nothing may stay held after the sweep
            release(name)
    assert (elsewhere / "params.yaml").read_text() == (repo / "params.yaml").read_text()
    return repo, frame, faults


@pytest.mark.slow
def test_a_failure_stays_alone_and_killed_experiments_are_retried(sk_sweep):
    repo, frame, faults = sk_sweep
    assert faults == ["kill t1", "kill workers"]
    # An input error is never retried (t2 may have been re-run once, if the workers were
    # killed under it, but not because of its error).
    assert frame.loc["t2", "status"] == "failed"
    assert "error:" not in frame.loc["t2", "retried_after"]
    assert frame.loc["t2", "error"] == (
        "error: params.yaml: models.linear.alpha: Input should be greater than 0 (got -1)"
    )
    assert frame.attrs["failed"] == {"t2": frame.loc["t2", "error"]}
    assert frame.loc["t1", "status"] == "success" and frame.loc["t1", "attempts"] >= 2
    assert frame.loc["t1", "retried_after"]  # why the killed attempt failed
    assert frame.loc["t3", "status"] == "success" and frame.loc["t3", "attempts"] >= 2
    assert "no worker is running it" in frame.loc["t3", "retried_after"]
    assert frame["val.f1"].notna().sum() == 2 and frame.attrs["best"] in {"t1", "t3"}
    assert list(frame.index)[-1] == "t2"  # failures last
    assert_sweep_complete(repo, ["t1", "t3"], trackers=False, failed=["t2"])
    logs = sh("dvc queue logs t2", repo).stdout
    assert "error: params.yaml: models.linear.alpha: Input should be greater than 0" in logs
    # The one-pass status the sweep polls with says what DVC's own status() says, failures
    # included, and only about the entries asked for.
    with project_environ(), dvc_queue.open_queue(repo) as queue:
        theirs = {s["rev"]: s["status"] for s in queue._queue.status()}
        assert queue.status() == theirs and "Failed" in theirs.values()
        some = sorted(theirs)[:2]
        assert queue.status(some) == {rev: theirs[rev] for rev in some}


@pytest.mark.slow
def test_a_sklearn_experiment_replays_from_cache_and_reruns_identically(sk_sweep):
    repo, frame, _ = sk_sweep
    assert_replays(repo, "t3", exp_rows(repo)["t3"])


# --------------------------------------------------------------------------- between machines


@pytest.mark.slow
def test_an_experiment_moves_between_two_clones(sk_sweep, tmp_path):
    """Clone A pushes t1 to a bare git remote and the DVC remote; clone B gets it whole."""
    a, _, _ = sk_sweep
    storage = Path(sh("dvc remote list", a).stdout.split("shared")[1].split()[0])
    bare = tmp_path / "origin.git"
    sh(f"git init -q --bare -b main {bare}", tmp_path)
    sh(f"git remote add origin {bare} && git push -q origin main", a)
    sh("dvc exp push origin t1", a)
    assert list((storage / "files/md5").iterdir())

    b = tmp_path / "b"
    sh(f"git clone -q {bare} {b}", tmp_path)
    sh("dvc exp pull origin t1", b)
    shown = sh("dvc exp show --csv", b).stdout  # the table, without a terminal
    assert [line for line in shown.splitlines() if line.startswith("t1,")]
    sh("dvc exp apply t1", b)
    sh("dvc pull", b)
    out = sh("dvc repro", b).stdout
    assert stages_ran(out) == set(), out
    pushed = exp_rows(a)["t1"]
    for key in ("val.f1", "test.f1", "test.accuracy", "onnx.max_abs_diff"):
        assert metrics_files(b)[key] == pytest.approx(pushed[key], rel=1e-12), key
    assert (b / "export/model/model.onnx").is_file()


@pytest.mark.slow
def test_the_default_remote_pushes_and_pulls(repo, tmp_path):
    home = tmp_path / "home"
    env = {**project_env(), "HOME": str(home)}

    def dvc(*args):
        return subprocess.run(
            ["dvc", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
        )

    dvc("push")
    assert list((home / ".cache/ml_project/dvc-storage/files/md5").iterdir())
    shutil.rmtree(repo / ".dvc/cache")
    shutil.rmtree(repo / "models")
    dvc("pull")
    assert (repo / "models/model.skops").is_file()
    assert dvc("status").stdout.strip() == "Data and pipelines are up to date."


# --------------------------------------------------------------------------- the notebook


@pytest.mark.slow
def test_the_example_notebook_runs_a_sweep(built, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(built, repo, symlinks=True)
    set_params(repo, {"tracking.mlflow.enabled": False, "tracking.wandb.enabled": False})
    sh("git commit -q -m 'no trackers' params.yaml", repo)
    outputs = run_notebook(repo, "notebooks/sweep.ipynb")
    assert not [o for o in outputs if o.output_type == "error"]
    html = next(o for o in outputs if o.output_type == "execute_result")["data"]["text/html"]
    assert "t1" in html and "t2" in html and "success" in html
    assert_sweep_complete(repo, ["t1", "t2"], trackers=False)


def test_the_supervisor_wakes_when_a_task_result_appears(tmp_path):
    """Between queue polls the sweep watches celery's result files: it sees an experiment end
    within a fraction of a second instead of the poll interval, and sleeps it out otherwise."""
    results = tmp_path / dvc_queue.RESULTS_DIR
    results.mkdir(parents=True)
    began = time.monotonic()
    dvc_queue.wait_for_change(tmp_path, 0.6)
    assert time.monotonic() - began >= 0.6  # nothing happened: the full interval

    def finish() -> None:
        time.sleep(0.3)
        (results / "celery-task-meta-1").write_text("{}")

    writer = threading.Thread(target=finish)
    began = time.monotonic()
    writer.start()
    dvc_queue.wait_for_change(tmp_path, 30)
    writer.join()
    assert 0.3 <= time.monotonic() - began < 5


def test_a_held_queue_serves_every_poll_inside_and_closes_after(tmp_path):
    """The sweep and the search hold one queue (one DVC Repo) open while they poll."""
    sh("git init -q && dvc init -q", tmp_path)
    with dvc_queue.held(tmp_path) as queue:
        with dvc_queue.open_queue(tmp_path) as inner:
            assert inner is queue
        with dvc_queue.held(tmp_path) as nested:  # a second hold leaves the first one's
            assert nested is queue
        with dvc_queue.open_queue(tmp_path) as inner:
            assert inner is queue
        assert queue.status() == {}
    with dvc_queue.open_queue(tmp_path) as after:
        assert after is not queue


HOLD_STASH_LOCK = """
import sys, time
from dvc.repo import Repo
from dvc.repo.experiments.refs import CELERY_STASH
from dvc.repo.experiments.utils import get_exp_rwlock
with Repo(sys.argv[1]) as repo, get_exp_rwlock(repo, writes=["workspace", CELERY_STASH]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_queueing_waits_for_a_worker_holding_the_stash_lock(tmp_path, monkeypatch):
    """A queue worker taking an entry holds DVC's stash lock, and DVC's `put` fails at once on
    it: the sweep, which queues while its first workers run, waits for the lock instead (CI
    failed on this), and names the holder in one line if it never comes free."""
    sh("git init -q && dvc init -q && echo 'a: 1' > params.yaml", tmp_path)
    sh("git add -A && git commit -q -m init", tmp_path)
    monkeypatch.chdir(tmp_path)  # DVC reads params.yaml's overrides from the working directory

    def hold(seconds: float) -> subprocess.Popen:
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_STASH_LOCK, str(tmp_path), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        return holder

    with dvc_queue.open_queue(tmp_path) as queue:
        holder = hold(1.5)
        began = time.monotonic()
        rev = queue.queue("t1", ["a=2"])
        assert holder.wait(10) == 0
        assert time.monotonic() - began >= 1.0  # it waited for the holder to let go
        assert queue.status() == {rev: "Queued"}

        monkeypatch.setattr(dvc_queue, "LOCK_WAIT_SECONDS", 1.0)
        holder = hold(30)
        try:
            with pytest.raises(UserError) as refused:
                queue.queue("t2", ["a=3"])
        finally:
            holder.kill()
            holder.wait()
        message = str(refused.value)
        assert "\n" not in message and "could not queue t2" in message
        assert f"PID {holder.pid}" in message
        assert queue.status() == {rev: "Queued"}  # t2 was not queued


def test_workers_are_started_by_number_only_where_none_runs(tmp_path):
    """`start_workers` reads which workers run from their pid files and starts only the missing
    numbers (DVC's own check asks celery and waits a second each time); once it returns, the
    workers it started are seen, so a second call right after starts none twice."""
    sh("git init -q && dvc init -q && git commit -q -m init", tmp_path)
    with project_environ(), dvc_queue.open_queue(tmp_path) as queue:
        assert queue.start_workers(1) == 1
        first = dvc_queue.worker_pids(tmp_path)
        assert len(first) == 1
        assert queue.start_workers(2) == 1  # worker 1 runs: only worker 2 is started
        assert queue.start_workers(2) == 0
        both = dvc_queue.worker_pids(tmp_path)
        assert len(both) == 2 and first[0] in both
        for pid in both:  # an empty queue: they would idle out after 10 s
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while dvc_queue.worker_pids(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert dvc_queue.worker_pids(tmp_path) == []
        assert queue.start_workers(1) == 1  # a dead worker's number is started again
        for pid in dvc_queue.worker_pids(tmp_path):
            os.kill(pid, signal.SIGTERM)


START_ONE_WORKER = """
import sys
from pathlib import Path
from ml_project.sweeps import dvc_queue
with dvc_queue.open_queue(Path(sys.argv[1])) as queue:
    print("started", queue.start_workers(1))
print("still printing", flush=True)
"""


def test_a_worker_does_not_hold_the_output_of_the_process_that_started_it(tmp_path):
    """The sweep's output can be a pipe (`make sweep | tee log`, a notebook, CI): it closes
    when the sweep exits, not when the workers it started idle out 10+ s later (DVC's forked
    daemon around each worker kept the sweep's stdout and stderr). Its own output is whole."""
    sh("git init -q && dvc init -q && git commit -q -m init", tmp_path)
    with project_environ():
        proc = subprocess.run(  # reads both pipes until every holder has closed them
            [sys.executable, "-c", START_ONE_WORKER, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    workers = dvc_queue.worker_pids(tmp_path)
    for pid in workers:
        os.kill(pid, signal.SIGTERM)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "started 1\nstill printing\n"
    assert len(workers) == 1  # still running when the pipes were closed


def test_notebook_is_stored_without_outputs():
    notebook = json.loads((ROOT / "notebooks/sweep.ipynb").read_text())
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert "run_sweep(" in "".join(code[0]["source"])
