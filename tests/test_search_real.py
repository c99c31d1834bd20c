"""Searches run for real: trials as queued DVC experiments on one machine (names, records,
MLflow runs, a failing trial), two clones sharing one study on a real PostgreSQL server with
a bare git remote and a DVC remote, and pruning against the same search without it."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml

from ml_project.search import run_search, table
from ml_project.search import study as St
from ml_project.search.queue import experiment_commit
from tests.helpers.project import project_env, project_environ, set_params, sh

pytestmark = pytest.mark.slow
optuna.logging.set_verbosity(optuna.logging.WARNING)


def add_search(repo: Path, name: str, body: dict) -> None:
    """Add a search to the copy's sweeps.yaml and commit it (queued runs see commits only)."""
    presets = yaml.safe_load((repo / "sweeps.yaml").read_text())
    presets.setdefault("searches", {})[name] = body
    (repo / "sweeps.yaml").write_text(yaml.safe_dump(presets, sort_keys=False))
    sh("git add -A && git commit -q -m search", repo)


def exp_show(repo: Path) -> dict[str, dict]:
    """`dvc exp show --json`: experiment name -> {"params": flat, "metrics": flat}."""
    from ml_project.params import flatten

    rows = json.loads(sh("dvc exp show --json --no-pager", repo).stdout)
    found = {}
    for baseline in rows:
        for exp in baseline.get("experiments") or []:
            for rev in exp["revs"]:
                data = rev.get("data") or {}
                params = data.get("params", {}).get("params.yaml", {}).get("data", {})
                metrics = data.get("metrics", {}).get("dvclive/train/metrics.json", {})
                found[rev["name"]] = {
                    "params": flatten(params),
                    "metrics": flatten(metrics.get("data", {})),
                }
    return found


# --------------------------------------------------------------------------- one machine


def test_grid_search_on_one_machine_records_trials_experiments_and_mlflow_runs(repo):
    """The grid sampler over two points, one of which fails in the train stage: the failed
    trial is FAIL in Optuna with its `error:` line and the search goes on; the other is one
    experiment and one MLflow run, each leading to the other."""
    from mlflow.tracking import MlflowClient

    add_search(
        repo,
        "leaves",
        {
            "sampler": "grid",
            "space": {
                "model": "hgb",
                "models.hgb.max_iter": 10,
                "models.hgb.max_leaf_nodes": [1, 15],  # 1 is below the schema's minimum
            },
        },
    )
    with project_environ():
        frame = run_search("leaves", jobs=2, repo=repo, progress=False)

    study = optuna.load_study(
        study_name="leaves", storage=St.open_storage(str(repo / St.DEFAULT_FILE))
    )
    assert sorted(t.number for t in study.trials) == [0, 1]  # the grid's size is the budget
    by_leaves = {
        json.loads(t.user_attrs["params"])["models.hgb.max_leaf_nodes"]: t for t in study.trials
    }
    failed, ok = by_leaves[1], by_leaves[15]  # every grid point once (in a shuffled order)
    assert failed.state == optuna.trial.TrialState.FAIL
    assert failed.user_attrs["error"].startswith("error: params.yaml: models.hgb.max_leaf_nodes")
    assert ok.state == optuna.trial.TrialState.COMPLETE
    bad, good = failed.user_attrs["dvc_exp"], ok.user_attrs["dvc_exp"]
    assert {bad, good} == {"leaves-t0", "leaves-t1"}

    shown = exp_show(repo)
    assert good in shown
    assert shown[good]["params"]["models.hgb.max_leaf_nodes"] == 15
    assert shown[good]["metrics"]["val.f1"] == ok.value

    assert list(frame.index) == [good, bad]  # best first
    assert frame.loc[good, "best"] and frame.attrs["best"] == good
    assert frame.loc[bad, "state"] == "failed"
    assert frame.attrs["replay"] == f"dvc exp apply {good} && dvc repro"
    printed = table(frame)
    assert "FAILED: error: params.yaml: models.hgb.max_leaf_nodes" in printed

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ml_project")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`dvc.exp_name` = '{good}'"
    )
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.metrics["val/f1"] == pytest.approx(ok.value)


# --------------------------------------------------------------------------- many machines


def _pg_binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if not found:
        pytest.fail(
            f"PostgreSQL server binaries not found ({name}): install them "
            "(Debian: apt-get install -y postgresql; .ci/run does this)"
        )
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def postgres() -> Iterator[str]:
    """A real PostgreSQL server on 127.0.0.1 for this test: its URL. initdb refuses to run as
    root, so as root the server runs as the `postgres` user (made by Debian's package)."""
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    home = Path(tempfile.mkdtemp(prefix="ml-project-pg-"))
    data, port = home / "data", _free_port()
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]

    def run(*cmd: str) -> None:
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, text=True, cwd=home)

    run(initdb, "-D", str(data), "-U", "search", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {home}"
    run(pg_ctl, "-D", str(data), "-o", options, "-l", str(home / "log"), "-w", "start")
    try:
        yield f"postgresql://search@127.0.0.1:{port}/postgres"
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)


def _clones(untracked_repo: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Two clones of one project sharing a bare git remote and a local DVC remote."""
    a = untracked_repo  # its params change (trackers off) is committed by add_search
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    sh(f"git remote add origin {remote} && git push -q origin main", a)
    b = tmp_path / "b"
    subprocess.run(["git", "clone", "-q", str(remote), str(b)], check=True, env=project_env())
    store = tmp_path / "dvc-store"
    for clone in (a, b):
        sh("git config user.email test@example.com && git config user.name test", clone)
        sh(f"dvc remote modify --local local url {store}", clone)
    sh("dvc push -q", a)  # the baseline's data, so b's replay can fetch what it needs
    return a, b


def test_two_clones_share_one_study_on_postgresql(untracked_repo, tmp_path, postgres):
    add_search(
        untracked_repo,
        "shared",
        {
            "trials": 4,
            "space": {
                "model": "hgb",
                "models.hgb.max_iter": 10,
                "models.hgb.learning_rate": {"low": 0.05, "high": 0.5, "log": True},
                "models.hgb.max_leaf_nodes": {"low": 4, "high": 31},
            },
        },
    )
    a, b = _clones(untracked_repo, tmp_path)
    command = ["python", "-m", "ml_project.search", "shared", "-j", "1", "--storage", postgres]
    procs = [
        subprocess.Popen(
            command,
            cwd=clone,
            env=project_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for clone in (a, b)
    ]
    outputs = [p.communicate(timeout=900) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "study shared (postgresql://search@127.0.0.1" in out

    study = optuna.load_study(study_name="shared", storage=postgres)
    assert len(study.trials) == 4  # the budget, exactly, with two machines asking
    names = [t.user_attrs["dvc_exp"] for t in study.trials]
    assert sorted(names) == [f"shared-t{k}" for k in range(4)]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert len({t.user_attrs["pid"] for t in study.trials}) == 2  # both machines ran trials

    # The best trial, retrained from scratch in the clone that ran it, scores the same.
    best = study.best_trial
    name = best.user_attrs["dvc_exp"]
    runner = a if experiment_commit(a, name) else b
    sh(f"dvc exp apply {name}", runner)
    sh("dvc repro -f train", runner)
    replayed = json.loads((runner / "dvclive/train/metrics.json").read_text())
    assert replayed["val"]["f1"] == best.value

    # Every trial, from either clone, as an experiment of the other after `dvc exp pull`.
    for clone in (a, b):
        theirs = [n for n in names if experiment_commit(clone, n) is None]
        assert 0 < len(theirs) < 4  # each clone ran some trials itself
        for exp in theirs:
            pulled = sh(f"dvc exp pull origin {exp}", clone, check=False)
            assert pulled.returncode == 0, pulled.stderr
        shown = exp_show(clone)
        for trial in study.trials:
            exp = shown[trial.user_attrs["dvc_exp"]]
            assert exp["metrics"]["val.f1"] == trial.value
            sampled = json.loads(trial.user_attrs["params"])
            assert exp["params"]["models.hgb.learning_rate"] == sampled["models.hgb.learning_rate"]
    other = b if runner == a else a  # and the best one applied in the clone that did not run it
    sh(f"dvc exp apply {name}", other)
    applied = json.loads((other / "dvclive/train/metrics.json").read_text())
    assert applied["val"]["f1"] == best.value


# --------------------------------------------------------------------------- pruning


def _total_epochs(repo: Path, study_name: str) -> tuple[int, int]:
    """(epochs trained by the study's trials, pruned trials): each epoch's validation score is
    reported to the trial, and a pruned trial's experiment says `train.stopped`."""
    shown = exp_show(repo)
    study = optuna.load_study(
        study_name=study_name, storage=St.open_storage(str(repo / St.DEFAULT_FILE))
    )
    epochs = 0
    for trial in study.trials:
        stopped = shown[trial.user_attrs["dvc_exp"]]["metrics"].get("train.stopped")
        assert (trial.state == optuna.trial.TrialState.PRUNED) == bool(stopped)
        epochs += len(trial.intermediate_values)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    return epochs, pruned


def test_pruning_cuts_the_epochs_trained_against_the_same_search_without_it(untracked_repo):
    set_params(untracked_repo, {"tracking.optuna.enabled": True})
    body = {
        "trials": 4,
        "space": {
            "model": "mlp",
            "models.mlp.max_epochs": 12,
            "models.mlp.patience": 0,
            "models.mlp.hidden_sizes": [[16]],
            "models.mlp.lr": {"low": 1.0e-5, "high": 3.0e-2, "log": True},
        },
    }
    add_search(untracked_repo, "pruned", {**body, "pruner": "median"})
    add_search(untracked_repo, "unpruned", {**body, "pruner": "none"})
    with project_environ():
        run_search("pruned", jobs=1, seed=0, repo=untracked_repo, progress=False)
        run_search("unpruned", jobs=1, seed=0, repo=untracked_repo, progress=False)
    with_pruning, pruned = _total_epochs(untracked_repo, "pruned")
    without, none_pruned = _total_epochs(untracked_repo, "unpruned")
    assert pruned >= 1 and none_pruned == 0
    assert with_pruning < without
