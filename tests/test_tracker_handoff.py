"""Hand-off (tracking/child.py): a successful train stage returns without waiting for its
tracker children's last calls; the stage that joins the run next waits for them and hears what
failed. Real forked children and real lock files; the tracker is a small class of this file
whose `log_model` takes a while (the role MLflow's 1.5 s `log_model` plays in a stage)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from ml_project.tracking import TrackerError
from ml_project.tracking.child import ChildTracker, can_fork, run_lock, wait_for_run

pytestmark = pytest.mark.skipif(not can_fork(), reason="tracker children run only on Linux")

SLOW = 1.5  # seconds log_model takes


class SlowTracker:
    name = "slowtest"
    needs_model = False

    def __init__(self, out: Path, fail: bool = False, run_id: str | None = None):
        self.out, self.fail = out, fail
        self.run_id = run_id or uuid.uuid4().hex

    def log_model(self, model, path, input_example) -> None:
        time.sleep(SLOW)
        if self.fail:
            raise RuntimeError("disk full")
        (self.out / "logged").write_text(str(path))

    def close(self, status: str) -> None:
        (self.out / "closed").write_text(status)


@pytest.fixture(autouse=True)
def runtime(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "rt"))
    (tmp_path / "rt").mkdir(mode=0o700)


def start(tmp_path: Path, hand_off: bool, fail: bool = False) -> ChildTracker:
    tracker = ChildTracker("slowtest", lambda: SlowTracker(tmp_path, fail), None, hand_off)
    started = tracker.started()
    assert started is tracker and tracker.run_id
    return tracker


def test_handed_off_close_returns_at_once_and_the_joining_stage_waits(tmp_path):
    tracker = start(tmp_path, hand_off=True)
    tracker.log_model(None, tmp_path / "model.skops", None)
    began = time.monotonic()
    tracker.close("success")
    assert time.monotonic() - began < SLOW / 2  # did not wait for log_model
    assert not (tmp_path / "logged").exists()
    assert run_lock("slowtest", tracker.run_id).exists()  # held while the child works

    assert wait_for_run("slowtest", tracker.run_id) is None  # blocks until the child is done
    assert (tmp_path / "logged").read_text() == str(tmp_path / "model.skops")
    assert (tmp_path / "closed").read_text() == "success"
    assert not run_lock("slowtest", tracker.run_id).exists()  # nothing left behind
    assert wait_for_run("slowtest", tracker.run_id) is None  # and nothing to wait for now


def test_a_failure_after_the_hand_off_is_printed_and_passed_to_the_joining_stage(tmp_path, capfd):
    tracker = start(tmp_path, hand_off=True, fail=True)
    tracker.log_model(None, tmp_path / "model.skops", None)
    tracker.close("success")
    failure = wait_for_run("slowtest", tracker.run_id)
    assert failure is not None and "disk full" in failure
    assert "warning: tracker 'slowtest' failed: " in capfd.readouterr().err
    assert (tmp_path / "closed").read_text() == "failed"  # the run is not marked a success
    assert not run_lock("slowtest", tracker.run_id).exists()  # reported once, then removed


def test_a_joining_tracker_starts_only_after_the_handed_off_one_is_done(tmp_path):
    first = start(tmp_path, hand_off=True)
    first.log_model(None, tmp_path / "model.skops", None)
    first.close("success")

    def join():
        assert (tmp_path / "closed").exists(), "started before the train run was closed"
        return SlowTracker(tmp_path / "join", run_id=first.run_id)

    (tmp_path / "join").mkdir()
    joined = ChildTracker("slowtest", join, ("slowtest", first.run_id)).started()
    assert joined is not None and joined.run_id == first.run_id
    joined.close("success")  # not handed off: waits
    assert (tmp_path / "join" / "closed").read_text() == "success"


def test_a_failed_stage_waits_and_raises_what_failed(tmp_path):
    tracker = start(tmp_path, hand_off=True, fail=True)
    tracker.log_model(None, tmp_path / "model.skops", None)
    with pytest.raises(TrackerError, match="disk full"):
        tracker.close("failed")
    assert (tmp_path / "closed").read_text() == "failed"
    assert not run_lock("slowtest", tracker.run_id).exists()


def test_without_hand_off_close_waits_for_every_call(tmp_path):
    tracker = start(tmp_path, hand_off=False)
    tracker.log_model(None, tmp_path / "model.skops", None)
    tracker.close("success")
    assert (tmp_path / "logged").exists() and (tmp_path / "closed").read_text() == "success"
    assert not run_lock("slowtest", tracker.run_id).exists()  # never created
