"""The fan-out: every tracker gets every call, all are closed, failures are isolated."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from ml_project.errors import UserError
from ml_project.params import TrackingParams
from ml_project.tracking import RunInfo, Trackers, open_trackers

ONLY_DVCLIVE = {"mlflow": {"enabled": False}, "wandb": {"enabled": False}}


class Recorder:
    def __init__(self, name="rec", required=False, fail_on=None):
        self.name, self.required, self.fail_on = name, required, fail_on
        self.calls: list[tuple] = []

    def _record(self, method, *args):
        if method == self.fail_on:
            raise RuntimeError(f"{self.name} is down")
        self.calls.append((method, *args))

    def log_params(self, params):
        self._record("log_params", dict(params))

    def set_tags(self, tags):
        self._record("set_tags", dict(tags))

    def log_metrics(self, metrics, step):
        self._record("log_metrics", dict(metrics), step)

    def log_summary(self, metrics):
        self._record("log_summary", dict(metrics))

    def log_artifact(self, path, kind="file"):
        self._record("log_artifact", path, kind)

    def log_model(self, model, path, input_example):
        self._record("log_model", path)

    def close(self, status):
        self.calls.append(("close", status))


def test_every_tracker_receives_the_same_calls_and_is_closed():
    a, b = Recorder("a"), Recorder("b")
    with Trackers([a, b]) as fan:
        fan.log_params({"x": 1})
        fan.log_metrics({"train/loss": 0.5}, 0)
        fan.log_metrics({"train/loss": 0.4}, 1)
    assert a.calls == b.calls
    assert a.calls[-1] == ("close", "success")
    assert [c[2] for c in a.calls if c[0] == "log_metrics"] == [0, 1]


def test_exception_marks_every_run_failed_and_propagates():
    a, b = Recorder("a"), Recorder("b")
    with pytest.raises(ZeroDivisionError), Trackers([a, b]):
        1 / 0
    assert a.calls == b.calls == [("close", "failed")]


def test_failing_optional_tracker_is_reported_once_and_dropped(capsys):
    live, flaky = Recorder("dvclive", required=True), Recorder("mlflow", fail_on="log_metrics")
    with Trackers([live, flaky]) as fan:
        for step in range(3):
            fan.log_metrics({"val/f1": 0.9}, step)
    err = capsys.readouterr().err
    assert err.count("warning: tracker 'mlflow' failed") == 1 and "mlflow is down" in err
    assert [c[2] for c in live.calls if c[0] == "log_metrics"] == [0, 1, 2]
    assert fan.failed == {"mlflow": "mlflow is down"}
    assert flaky.calls[-1] == ("close", "failed")


def test_strict_mode_makes_a_tracker_failure_fatal():
    fan = Trackers([Recorder("mlflow", fail_on="log_params")], strict=True)
    message = r"tracker 'mlflow' failed and tracking.strict is true: mlflow is down"
    with pytest.raises(UserError, match=message), fan:
        fan.log_params({"x": 1})


def test_required_tracker_failure_is_fatal_even_when_not_strict():
    fan = Trackers([Recorder("dvclive", required=True, fail_on="log_metrics")])
    with pytest.raises(RuntimeError), fan:
        fan.log_metrics({"a": 1.0}, 0)


def test_dvclive_tracker_writes_every_step_and_the_summary(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = TrackingParams(dvclive={"enabled": True, "dir": "live"}, **ONLY_DVCLIVE)
    with open_trackers(params, RunInfo(stage="train", root=tmp_path)) as fan:
        assert fan.names == ["dvclive"]
        fan.log_params({"models.hgb.learning_rate": 0.1})
        for step in range(5):
            fan.log_metrics({"train/loss": 1.0 / (step + 1), "val/f1": 0.5 + step / 10}, step)
    rows = (tmp_path / "live/train/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert rows[0] == "step\tloss" and [r.split("\t")[0] for r in rows[1:]] == [
        "0",
        "1",
        "2",
        "3",
        "4",
    ]
    summary = json.loads((tmp_path / "live/train/metrics.json").read_text())
    assert summary["step"] == 4 and summary["val"]["f1"] == pytest.approx(0.9)
    assert "learning_rate" in (tmp_path / "live/train/params.yaml").read_text()


def test_disabled_dvclive_starts_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fan = open_trackers(
        TrackingParams(dvclive={"enabled": False}, **ONLY_DVCLIVE), RunInfo(stage="train")
    )
    assert fan.names == [] and not (tmp_path / "dvclive").exists()


def test_dvclive_summary_has_the_last_step_after_a_mid_run_sync(tmp_path, monkeypatch):
    from ml_project.tracking import dvclive_tracker

    monkeypatch.chdir(tmp_path)
    params = TrackingParams(dvclive={"enabled": True, "dir": "live"}, **ONLY_DVCLIVE)
    with open_trackers(params, RunInfo(stage="train", root=tmp_path)) as fan:
        monkeypatch.setattr(dvclive_tracker, "FLUSH_SECONDS", 0.0)
        for step in range(3):
            fan.log_metrics({"val/f1": float(step)}, step)
        monkeypatch.setattr(dvclive_tracker, "FLUSH_SECONDS", 1e9)
        for step in range(3, 6):
            fan.log_metrics({"val/f1": float(step)}, step)
    summary = json.loads((tmp_path / "live/train/metrics.json").read_text())
    assert summary["step"] == 5 and summary["val"]["f1"] == 5.0


class CannotStart:
    name = "optional"
    required = False

    @classmethod
    def from_params(cls, params, run):
        raise ConnectionError("server unreachable")


def test_optional_tracker_that_cannot_start_is_skipped(monkeypatch, capsys):
    from ml_project import tracking

    # It starts in the background: the failure surfaces at a later call, at the latest on close.
    monkeypatch.setitem(tracking.TRACKERS, "dvclive", "tests.test_tracking:CannotStart")
    with open_trackers(TrackingParams(**ONLY_DVCLIVE), RunInfo(stage="train")) as fan:
        fan.log_params({"x": 1})
    assert fan.names == [] and fan.failed == {"dvclive": "server unreachable"}
    assert capsys.readouterr().err.count("could not start and is skipped: server unreachable") == 1
    with (
        pytest.raises(UserError, match=r"tracker 'dvclive' failed .*: server unreachable"),
        open_trackers(TrackingParams(strict=True, **ONLY_DVCLIVE), RunInfo(stage="train")),
    ):
        pass


class FailsOnClose(Recorder):
    def close(self, status):
        raise OSError(f"{self.name} cannot flush")


def test_close_reaches_every_tracker_even_when_one_fails(capsys):
    bad, good = FailsOnClose("wandb"), Recorder("mlflow")
    with Trackers([bad, good]):
        pass
    assert good.calls == [("close", "success")]
    assert "warning: tracker 'wandb' failed on close: wandb cannot flush" in capsys.readouterr().err
    with pytest.raises(OSError), Trackers([FailsOnClose("dvclive", required=True), good]):
        pass
    assert good.calls[-1] == ("close", "success")


# --- Tracker faults: one line that names the store and the cause, credentials redacted ---


def test_redact_hides_passwords_in_urls_and_query_strings():
    from ml_project.tracking import redact

    assert (
        redact("postgresql://user:secret@db:5432/mlflow") == "postgresql://user:***@db:5432/mlflow"
    )
    assert redact("failed: http://me:p%40ss@host/api (x)") == "failed: http://me:***@host/api (x)"
    assert redact("https://host/x?password=abc&x=1") == "https://host/x?password=***&x=1"
    assert redact("sqlite:////tmp/mlflow.db http://host:5000") == (
        "sqlite:////tmp/mlflow.db http://host:5000"
    )


def mlflow_only(uri: str, strict: bool = False) -> TrackingParams:
    return TrackingParams(
        strict=strict,
        dvclive={"enabled": False},
        mlflow={"enabled": True, "tracking_uri": uri},
        wandb={"enabled": False},
    )


@contextlib.contextmanager
def read_only(path: Path):
    """Make `path` read-only for real; as root, file modes are ignored, so also immutable."""
    path.chmod(0o444)
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(path)], check=False).returncode:
        path.chmod(0o644)
        pytest.skip("running as root and chattr +i is not available here")
    try:
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o644)


OPEN_MLFLOW = """
import sys
from pathlib import Path
import mlflow.store.tracking.sqlalchemy_store  # preloaded, as the fork server does for a stage
from ml_project.errors import exits_on_user_error
from ml_project.params import TrackingParams
from ml_project.tracking import RunInfo, open_trackers

@exits_on_user_error
def main(uri, strict):
    params = TrackingParams(
        strict=strict == "strict",
        dvclive={"enabled": False},
        mlflow={"enabled": True, "tracking_uri": uri},
        wandb={"enabled": False},
    )
    with open_trackers(params, RunInfo(stage="train", root=Path.cwd())) as fan:
        fan.log_params({"x": 1})
        fan.log_metrics({"val/f1": 0.5}, 0)
    print(sorted(fan.failed))

for mode in sys.argv[2:]:
    main(sys.argv[1], mode)
"""


def open_mlflow(uri: str, cwd: Path, *modes: str) -> subprocess.CompletedProcess:
    """A fresh process, like a stage: MLflow keeps one store per URI for the process' life.
    Each mode (lenient, strict) opens the tracker once, in order, each in a child of its own
    (tracking/child.py), so one process serves both and imports MLflow once."""
    args = [sys.executable, "-c", OPEN_MLFLOW, uri, *modes]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_read_only_mlflow_store_is_one_warning_line_naming_the_store(tmp_path, monkeypatch):
    store = tmp_path / "mlflow.db"
    uri = f"sqlite:///{store}"
    monkeypatch.chdir(tmp_path)
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (the tracker's child forks with it)

    with open_trackers(mlflow_only(uri), RunInfo(stage="train", root=tmp_path)) as fan:
        fan.log_params({"x": 1})
        fan.log_metrics({"val/f1": 0.5}, 0)
    assert fan.failed == {} and store.is_file()  # a real store, with its tables
    with read_only(store):
        both = open_mlflow(uri, tmp_path, "lenient", "strict")
    assert both.stdout == "['mlflow']\n"  # lenient: skipped, and the stage went on
    assert both.stderr.splitlines() == [
        f"warning: tracker 'mlflow' could not start and is skipped: {uri} is read-only "
        "(attempt to write a readonly database)",
        f"error: tracker 'mlflow' failed and tracking.strict is true: {uri} is read-only "
        "(attempt to write a readonly database)",
    ]
    assert both.returncode == 2  # strict: the stage fails, with the one line above


@pytest.mark.parametrize(
    "template",
    ["http://user:s3cret-pw@127.0.0.1:{port}", "postgresql://user:s3cret-pw@127.0.0.1:{port}/db"],
)
def test_credentials_in_the_tracking_uri_never_appear_in_messages(template, tmp_path, capfd):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        uri = template.format(port=s.getsockname()[1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with open_trackers(mlflow_only(uri), RunInfo(stage="train", root=tmp_path)) as fan:
            fan.log_params({"x": 1})
        strict_params = mlflow_only(uri, strict=True)
        with pytest.raises(UserError) as strict, open_trackers(strict_params, RunInfo("train")):
            pass
    err = capfd.readouterr().err
    assert "could not start" in err and "user:***@127.0.0.1" in err
    assert "user:***@127.0.0.1" in str(strict.value)
    shown = [err, str(strict.value), fan.failed.get("mlflow", ""), *map(str, caught)]
    assert not [text for text in shown if "s3cret-pw" in text]


def test_a_joining_stage_opens_no_new_run_for_a_tracker_the_train_stage_lacked(tmp_path):
    params = TrackingParams(dvclive={"enabled": False}, wandb={"mode": "offline"})
    with open_trackers(params, RunInfo(stage="evaluate", root=tmp_path, join={})) as fan:
        fan.log_summary({"test/f1": 0.9})
    assert fan.names == [] and fan.failed == {}
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "wandb").exists()


# --- Optional trackers start and take their calls on a thread of their own ---

GATE = threading.Event()  # SlowStart.from_params waits for it
STARTED: list[Recorder] = []


class SlowStart(Recorder):
    """An optional tracker whose start-up takes as long as the test wants."""

    required = False

    @classmethod
    def from_params(cls, params, run):
        assert GATE.wait(timeout=30), "the test never let the tracker start"
        tracker = cls("slow", fail_on=getattr(run, "fail_on", None))
        tracker.run_id = "run-1"
        STARTED.append(tracker)
        return tracker


@pytest.fixture
def slow_tracker(monkeypatch):
    from ml_project import tracking

    GATE.clear()
    STARTED.clear()
    # This module's own name: importing it under another one would make a second GATE.
    monkeypatch.setitem(tracking.TRACKERS, "dvclive", f"{__name__}:SlowStart")
    yield
    GATE.set()


def test_a_slow_tracker_start_does_not_hold_up_the_stage(slow_tracker):
    begin = time.perf_counter()
    with open_trackers(TrackingParams(**ONLY_DVCLIVE), RunInfo(stage="train")) as fan:
        fan.set_tags({"model": "hgb"})
        fan.log_params({"x": 1})
        for step in range(3):
            fan.log_metrics({"val/f1": step / 10}, step)
        fan.log_model(object(), Path("models/model.skops"), None)
        waited = time.perf_counter() - begin
        assert not STARTED  # still starting, and every call above has returned
        GATE.set()
        assert fan.run_ids == {"dvclive": "run-1"}  # waits for the start, not for the calls
    assert waited < 5
    assert [c[0] for c in STARTED[0].calls] == [
        "set_tags",
        "log_params",
        "log_metrics",
        "log_metrics",
        "log_metrics",
        "log_model",
        "close",
    ]
    assert STARTED[0].calls[-1] == ("close", "success")


def test_a_crash_still_delivers_every_queued_call_then_closes_the_run_failed(slow_tracker):
    params = TrackingParams(**ONLY_DVCLIVE)
    with pytest.raises(ZeroDivisionError), open_trackers(params, RunInfo("train")) as fan:
        fan.log_metrics({"val/f1": 0.5}, 0)
        GATE.set()
        1 / 0
    assert STARTED[0].calls == [("log_metrics", {"val/f1": 0.5}, 0), ("close", "failed")]


def test_a_call_failing_on_the_tracker_thread_is_reported_once_and_the_run_fails(
    slow_tracker, capsys
):
    run = RunInfo(stage="train")
    run.fail_on = "log_model"
    GATE.set()
    with open_trackers(TrackingParams(**ONLY_DVCLIVE), run) as fan:
        fan.log_model(object(), Path("m"), None)
        fan.run_ids  # noqa: B018 - waits for the start only
    assert fan.failed == {"dvclive": "slow is down"}
    err = capsys.readouterr().err
    assert err.count("warning: tracker 'dvclive'") == 1 and "slow is down" in err
    assert STARTED[0].calls[-1] == ("close", "failed")


def test_dvclive_step_plots_hold_only_metrics_logged_at_several_steps(tmp_path, monkeypatch):
    """A value logged once (the final-only val metrics) would be a lone dot in `dvc plots`:
    it goes to metrics.json only. A one-step run has no step plots at all."""
    monkeypatch.chdir(tmp_path)
    params = TrackingParams(dvclive={"enabled": True, "dir": "live"}, **ONLY_DVCLIVE)
    with open_trackers(params, RunInfo(stage="train", root=tmp_path)) as fan:
        for step in range(3):
            row = {"val/loss": 1.0 / (step + 1)}
            fan.log_metrics({**row, "val/accuracy": 0.9} if step == 2 else row, step)
    plots = tmp_path / "live/train/plots/metrics"
    assert sorted(p.relative_to(plots).as_posix() for p in plots.rglob("*.tsv")) == ["val/loss.tsv"]
    assert len((plots / "val/loss.tsv").read_text().splitlines()) == 4  # header + 3 steps
    summary = json.loads((tmp_path / "live/train/metrics.json").read_text())
    assert summary["val"] == {"loss": pytest.approx(1 / 3), "accuracy": 0.9}

    with open_trackers(params, RunInfo(stage="one", root=tmp_path)) as fan:
        fan.log_metrics({"val/loss": 0.5, "val/f1": 0.8}, 0)
    assert (tmp_path / "live/one/plots/metrics").is_dir()  # the declared output exists
    assert not list((tmp_path / "live/one/plots/metrics").rglob("*.tsv"))
    assert json.loads((tmp_path / "live/one/metrics.json").read_text())["val"]["f1"] == 0.8


def test_stop_fit_from_a_tracker_reaches_the_trainer():
    """Pruning raises `StopFit` from a tracker's log_metrics: not a tracker failure."""
    from ml_project.models.base import StopFit

    class Pruner(Recorder):
        def log_metrics(self, metrics, step):
            raise StopFit("pruned at step 3")

    pruner, other = Pruner("pruner"), Recorder("other")
    fan = Trackers([pruner, other])
    with pytest.raises(StopFit, match="pruned"):
        fan.log_metrics({"val/f1": 0.5}, 3)
    assert fan.trackers == [pruner, other] and fan.failed == {}


def test_repro_runs_are_named_after_the_branch_and_commit(tmp_path, monkeypatch):
    from ml_project.tracking import dvc_tags, run_name

    for var in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert run_name() == f"main@{head.strip()[:7]}"
    assert dvc_tags()["dvc.baseline_rev"] == head.strip()
    monkeypatch.setenv("DVC_EXP_NAME", "t5")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc123")
    assert run_name() == "t5" and dvc_tags()["dvc.baseline_rev"] == "abc123"


def test_a_moved_project_s_mlflow_store_is_one_warning_line(tmp_path, capsys):
    from mlflow import MlflowClient

    from ml_project.tracking.mlflow_tracker import default_uri, warn_if_moved

    old, new = tmp_path / "old", tmp_path / "new"
    new.mkdir()
    uri = default_uri(new)
    client = MlflowClient(tracking_uri=uri)
    here = client.create_experiment("here", artifact_location=(new / "mlartifacts").as_uri())
    moved = client.create_experiment("moved", artifact_location=(old / "mlartifacts").as_uri())
    capsys.readouterr()  # MLflow's own log lines on creating the store
    warn_if_moved(client, here, uri, new)
    assert capsys.readouterr().err == ""
    warn_if_moved(client, moved, uri, new)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: MLflow experiment")
    assert str(old / "mlartifacts") in err and "moved or copied" in err


def test_logged_requirements_follow_the_model_s_own_types():
    """torch is listed for a torch model only, read from the types its file holds (a fork
    server preloads torch into every stage, so `sys.modules` cannot tell)."""
    from ml_project.tracking.mlflow_tracker import _pip_requirements, model_packages

    torch_model = model_packages(["ml_project.models.torch_estimator.TorchClassifier"])
    trees = model_packages(["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"])
    assert any(r.startswith("torch==") for r in _pip_requirements(torch_model))
    assert not any(r.startswith("torch==") for r in _pip_requirements(trees))
    assert [r.split("==")[0] for r in _pip_requirements(trees)] == [
        "scikit-learn",
        "skops",
        "numpy",
        "pandas",
    ]


def test_a_database_store_nothing_listens_at_fails_in_seconds_naming_it():
    """MLflow would retry creating its engine for ~200 s; the tracker fails at once, with the
    store's URI (password redacted) in its one line. File and HTTP stores are not probed."""
    from ml_project.tracking import TrackerError
    from ml_project.tracking.mlflow_tracker import MlflowTracker, reachable

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    uri = f"postgresql://search:s3cret@127.0.0.1:{port}/mlflow"
    began = time.monotonic()
    with pytest.raises(ConnectionError, match=f"cannot reach 127.0.0.1:{port}"):
        reachable(uri)
    params = TrackingParams(mlflow={"tracking_uri": uri})
    with pytest.raises(TrackerError) as failed:
        MlflowTracker.from_params(params, RunInfo(stage="train", name="x"))
    assert time.monotonic() - began < 30
    assert "s3cret" not in str(failed.value) and f"127.0.0.1:{port}" in str(failed.value)
    for other in ("sqlite:///mlflow.db", "http://127.0.0.1:1", "file:///tmp/mlruns"):
        assert reachable(other) is None
