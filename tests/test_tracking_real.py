"""dvclive, MLflow and W&B for real: the same run read back from each, a real MLflow server,
queued experiments, and trackers that fail."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.helpers.project import project_env, set_params, sh
from tests.helpers.tracking import dvclive_curves, mlflow_client, wandb_runs

pytestmark = pytest.mark.slow


def test_one_run_reads_back_identically_from_all_three_trackers(repo):
    set_params(repo, {"models.hgb.max_iter": 25})
    sh("python stages/train.py", repo)
    sh("python stages/evaluate.py", repo)
    ids = json.loads((repo / "models/run_ids.json").read_text())
    assert set(ids) == {"mlflow", "wandb"}

    # dvclive: the versioned source of truth.
    live = dvclive_curves(repo)
    assert [s for s, _ in live["train/loss"]] == list(range(25))
    live_params = yaml.safe_load((repo / "dvclive/train/params.yaml").read_text())

    # MLflow, through its client.
    client = mlflow_client(f"sqlite:///{repo / 'mlflow.db'}")
    run = client.get_run(ids["mlflow"])
    ml_curves = {
        key: [
            (m.step, m.value)
            for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        ]
        for key in run.data.metrics
        if not key.startswith("test/")
    }

    # W&B, the offline run file of the train run (evaluate resumes the same id in another file).
    train_run, eval_run = [r for r in wandb_runs(repo) if r["id"] == ids["wandb"]]
    wb_curves: dict[str, list] = {}
    for row in train_run["history"]:
        for key, value in row.items():
            if not key.startswith("_"):
                wb_curves.setdefault(key, []).append((row["_step"], value))

    # dvclive plots only the curves; the final-only val metrics (logged at the last step) are
    # in its metrics.json, and MLflow and W&B hold them at that step.
    assert set(ml_curves) == set(wb_curves) and set(live) == {"train/loss", "val/loss", "val/f1"}
    last = max(s for s, _ in live["val/loss"])
    for key in set(ml_curves) - set(live):
        assert [s for s, _ in ml_curves[key]] == [s for s, _ in wb_curves[key]] == [last], key
    for key, points in live.items():
        for other in (ml_curves[key], wb_curves[key]):
            assert [s for s, _ in other] == [s for s, _ in points], key
            assert [v for _, v in other] == pytest.approx([v for _, v in points], rel=1e-9), key

    # The same params everywhere (MLflow stores strings).
    wb_params = {k: v for k, v in train_run["config"].items() if not k.startswith(("_", "tags."))}
    assert set(live_params) == set(run.data.params) == set(wb_params)
    assert "models.hgb.learning_rate" in live_params
    for key, value in live_params.items():
        assert run.data.params[key] == str(value) and wb_params[key] == value, key

    # Tags that lead back to DVC, the model, and evaluate's results on the same runs.
    manifest = json.loads((repo / "data/processed/manifest.json").read_text())
    assert run.data.tags["data_version"] == manifest["data_version"]
    assert run.data.tags["model"] == "hgb" and run.data.tags["task"] == "classification"
    assert f"data_version={manifest['data_version']}" in train_run["tags"]
    test_metrics = json.loads((repo / "evaluation/metrics.json").read_text())["test"]
    assert run.data.metrics["test/accuracy"] == pytest.approx(test_metrics["accuracy"])
    assert eval_run["summary"]["test/accuracy"] == pytest.approx(test_metrics["accuracy"])
    assert {a.path for a in client.list_artifacts(run.info.run_id, "plots")} >= {
        "plots/confusion_matrix.json",
        "plots/roc.json",
    }
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert any(m.source_run_id == run.info.run_id for m in models)
    assert (f"model-{ids['wandb']}", "model") in train_run["artifacts"]
    assert run.info.status == "FINISHED" and train_run["exit_code"] == 0


def test_train_hands_off_its_last_calls_and_evaluate_waits_for_them(repo, tmp_path):
    """Train's stdio are files, not pipes (as under DVC), so the stage returns before its
    tracker children's `log_model` and run close are done; evaluate, started at once, waits
    for them: its test metrics land on the logged model, and the run ends FINISHED."""
    from ml_project.forkserver import runtime_dir

    set_params(repo, {"models.hgb.max_iter": 25})
    log = tmp_path / "stages.log"
    with open(log, "w") as out:
        for stage in ("train", "evaluate"):
            subprocess.run(
                [sys.executable, f"stages/{stage}.py"],
                cwd=repo,
                env=project_env(),
                stdout=out,
                stderr=out,
                check=True,
            )
    ids = json.loads((repo / "models/run_ids.json").read_text())
    client = mlflow_client(f"sqlite:///{repo / 'mlflow.db'}")
    run = client.get_run(ids["mlflow"])
    (model,) = [
        m
        for m in client.search_logged_models(experiment_ids=[run.info.experiment_id])
        if m.source_run_id == run.info.run_id
    ]
    assert {"test/accuracy", "val/f1"} <= {m.key for m in model.metrics}
    assert run.info.status == "FINISHED"
    (train_run, eval_run) = [r for r in wandb_runs(repo) if r["id"] == ids["wandb"]]
    assert (f"model-{ids['wandb']}", "model") in train_run["artifacts"]
    assert "warning: tracker" not in log.read_text()
    locks = runtime_dir().glob(f"run-*-{ids['mlflow']}.lock")  # type: ignore[union-attr]
    assert list(locks) == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=project_env(),
        start_new_session=True,  # its web server's processes too, for the teardown's signal
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("mlflow server did not start") from None
            time.sleep(0.5)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:  # its graceful shutdown waits ~9 s on idle connections
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_runs_land_on_a_real_mlflow_server(repo, mlflow_server):
    env = {**project_env(), "MLFLOW_TRACKING_URI": mlflow_server}
    for stage in ("train", "evaluate"):
        subprocess.run(
            [sys.executable, f"stages/{stage}.py"],
            cwd=repo,
            env=env,
            check=True,
            capture_output=True,
        )
    run_id = json.loads((repo / "models/run_ids.json").read_text())["mlflow"]
    client = mlflow_client(mlflow_server)
    run = client.get_run(run_id)
    assert run.data.metrics["val/f1"] > 0.9 and "test/accuracy" in run.data.metrics
    assert len(client.get_metric_history(run_id, "val/loss")) == 100
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert [m.source_run_id for m in models] == [run_id]
    local = sqlite3.connect(repo / "mlflow.db").execute("select run_uuid from runs").fetchall()
    assert (run_id,) not in local  # nothing went to the default local store


def test_unreachable_mlflow_server_warns_once_and_training_finishes(repo):
    env_uri = f"http://127.0.0.1:{free_port()}"
    env = {**project_env(), "MLFLOW_TRACKING_URI": env_uri}
    before = (repo / "dvclive/train/metrics.json").read_text()
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "stages/train.py"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start < 60
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: tracker")]
    assert len(warnings) == 1 and "'mlflow'" in warnings[0]
    assert (repo / "dvclive/train/metrics.json").read_text() == before  # dvclive kept logging
    assert set(json.loads((repo / "models/run_ids.json").read_text())) == {"wandb"}

    set_params(repo, {"tracking.strict": True})
    strict = subprocess.run(
        [sys.executable, "stages/train.py"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert strict.returncode == 2
    assert strict.stderr.splitlines()[-1].startswith(
        "error: tracker 'mlflow' failed and tracking.strict is true: "
    )


def test_wandb_online_without_key_falls_back_to_offline(repo, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {**project_env(), "WANDB_MODE": "online", "HOME": str(home)}
    env.pop("WANDB_API_KEY", None)
    before = {p.name for p in (repo / "wandb").glob("offline-run-*")}
    proc = subprocess.run(
        [sys.executable, "stages/train.py"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "no API key" in line]
    assert lines == [
        "warning: W&B is set to online but no API key is configured; logging "
        "offline instead (upload later with `wandb sync`)"
    ]
    new = {p.name for p in (repo / "wandb").glob("offline-run-*")} - before
    wandb_id = json.loads((repo / "models/run_ids.json").read_text())["wandb"]
    assert len(new) == 1 and new.pop().endswith(wandb_id)


def test_unwritable_wandb_dir_is_a_reported_tracker_failure(repo):
    (repo / "not-a-dir").write_text("")
    env = {**project_env(), "WANDB_DIR": str(repo / "not-a-dir" / "wandb")}
    proc = subprocess.run(
        [sys.executable, "stages/train.py"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: tracker")]
    assert len(warnings) == 1 and warnings[0].startswith(
        "warning: tracker 'wandb' could not start and is skipped: cannot write under"
    )
    assert set(json.loads((repo / "models/run_ids.json").read_text())) == {"mlflow"}


def test_queued_experiments_log_to_the_main_root(repo):
    names = ["q-low", "q-high"]
    for name, alpha in zip(names, (0.5, 2.0), strict=True):
        sh(f"dvc exp run --queue -n {name} -S model=linear -S models.linear.alpha={alpha}", repo)
    sh("dvc queue start -j 1", repo)
    deadline = time.monotonic() + 600
    while True:
        status = sh("dvc queue status", repo).stdout
        if not any(word in status for word in ("Queued", "Running")):
            break
        assert time.monotonic() < deadline, status
        time.sleep(3)
    assert status.count("Success") == 2, status

    client = mlflow_client(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ml_project")
    runs = client.search_runs([experiment.experiment_id])
    by_name = {r.data.tags.get("dvc.exp_name"): r for r in runs}
    for name in names:
        run = by_name[name]
        assert run.data.tags["model"] == "linear" and "test/accuracy" in run.data.metrics
    wandb_names = [r["name"] for r in wandb_runs(repo)]
    assert all(wandb_names.count(name) == 2 for name in names)  # train + evaluate
    assert not list((repo / ".dvc/tmp/exps").glob("**/mlflow.db"))
    assert not list((repo / ".dvc/tmp/exps").glob("**/offline-run-*"))
    assert not math.isnan(by_name[names[0]].data.metrics["val/f1"])


def test_train_and_evaluate_write_nothing_under_home(repo, tmp_path):
    """W&B's cache and artifact staging and MLflow's telemetry id used to land in ~."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**project_env(), "HOME": str(home)}
    for var in ("XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        env.pop(var, None)
    for var in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "MLFLOW_DISABLE_TELEMETRY"):
        env.pop(var, None)
    for stage in ("train", "evaluate"):
        proc = subprocess.run(
            [sys.executable, f"stages/{stage}.py"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == []
    # The staged copy of the model that `wandb sync` uploads later stays in the ignored wandb/.
    staged = list((repo / "wandb/data/artifacts/staging").rglob("*"))
    model = (repo / "models/model.skops").read_bytes()
    assert any(p.is_file() and p.read_bytes() == model for p in staged)


KILLED_STAGE = """
import sys, time
from pathlib import Path
from ml_project.params import TrackingParams
from ml_project.tracking import RunInfo, open_trackers

params = TrackingParams(dvclive={"enabled": False}, wandb={"enabled": False})
fan = open_trackers(params, RunInfo(stage="train", root=Path.cwd(), name="killed"))
fan.log_params({"lr": 0.1})
for step in range(5):
    fan.log_metrics({"val/f1": step / 10}, step)
print(fan.run_ids["mlflow"], flush=True)
time.sleep(600)
"""


def test_a_killed_stage_leaves_its_mlflow_run_failed_with_everything_sent(tmp_path):
    """MLflow runs in a child of the stage: SIGKILL the stage, and the child still closes the
    run (before, a killed stage left it RUNNING forever)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_STAGE],
        cwd=tmp_path,
        env=project_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    run_id = proc.stdout.readline().strip()  # the run is started once its id is known
    time.sleep(2)  # the forwarding thread drains the queued calls
    proc.kill()
    proc.wait()
    client = mlflow_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    deadline = time.monotonic() + 60
    while client.get_run(run_id).info.status == "RUNNING":
        assert time.monotonic() < deadline, "the run was left RUNNING"
        time.sleep(0.5)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.params == {"lr": "0.1"}
    assert [m.step for m in client.get_metric_history(run_id, "val/f1")] == list(range(5))
