"""One logging interface, many trackers.

Training and evaluation talk to a `Trackers` fan-out only. Each enabled tracker is one class
behind the `Tracker` protocol, looked up by name in `TRACKERS` and imported only when enabled,
so a disabled tracker costs nothing.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ml_project.errors import UserError
from ml_project.params import TrackingParams
from ml_project.tracking.background import BackgroundTracker, StartFailure

# name -> "module:Class"; the class has `from_params(params, run) -> Tracker | None`.
TRACKERS: dict[str, str] = {
    "dvclive": "ml_project.tracking.dvclive_tracker:DvcliveTracker",
    "mlflow": "ml_project.tracking.mlflow_tracker:MlflowTracker",
    "wandb": "ml_project.tracking.wandb_tracker:WandbTracker",
    "optuna": "ml_project.tracking.optuna_tracker:OptunaTracker",  # search trials only
}


class Tracker(Protocol):
    name: str
    required: bool  # a required tracker's failure is always fatal (dvclive: source of truth)

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def log_summary(self, metrics: Mapping[str, float]) -> None: ...
    def log_artifact(self, path: Path, kind: str = "file") -> None: ...  # a file or a directory
    def log_model(self, model: Any, path: Path, input_example: Any) -> None: ...
    def close(self, status: str) -> None: ...


@dataclass
class RunInfo:
    """Where and as what a stage logs: shared by every tracker of one run."""

    stage: str
    root: Path = field(default_factory=lambda: repo_root())
    resume: bool = False  # continue this stage's own interrupted run (dvclive steps)
    # None: start new runs. A dict (tracker name -> run id): attach to an earlier stage's runs.
    join: dict[str, str] | None = None
    name: str = field(default_factory=lambda: run_name())
    # Return from a successful close without waiting for the trackers' last calls (train: the
    # stage that joins next waits for them instead; see tracking/child.py).
    hand_off: bool = False


def repo_root() -> Path:
    """The main repository root, also inside a queued experiment's temporary workspace."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def _git(*args: str) -> str:
    """`git <args>` in the working directory (a queued run's workspace: HEAD is the
    baseline), stripped; "" outside a git repository or without git."""
    import subprocess

    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def baseline_rev() -> str:
    """The commit the run started from: DVC's under `dvc exp run`, else git's HEAD
    (`dvc repro`, or a stage run by hand)."""
    return os.environ.get("DVC_EXP_BASELINE_REV") or _git("rev-parse", "HEAD")


def run_name() -> str:
    """The tracker run's name: the DVC experiment's (`t5`) under `dvc exp run`; else, for
    `dvc repro`, the branch and short commit it ran on (`main@12cf6da`)."""
    if os.environ.get("DVC_EXP_NAME"):
        return os.environ["DVC_EXP_NAME"]
    rev = baseline_rev()
    if not rev:
        return ""
    branch = _git("rev-parse", "--abbrev-ref", "HEAD")
    return f"{branch if branch and branch != 'HEAD' else 'detached'}@{rev[:7]}"


def dvc_tags() -> dict[str, str]:
    """Tags linking a run back to DVC and git; empty values are dropped."""
    tags = {
        "dvc.exp_name": os.environ.get("DVC_EXP_NAME", ""),
        "dvc.baseline_rev": baseline_rev(),
        "dvc.stage": os.environ.get("DVC_STAGE", ""),
    }
    return {k: v for k, v in tags.items() if v}


# `scheme://user:password@host`, and `password=...`-style query parameters.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*):[^\s/@]*@")
_QUERY_SECRET = re.compile(
    r"(?P<head>\b(?:password|passwd|pwd|token|access_token|api_key|secret)=)[^&\s'\"]+", re.I
)


def redact(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by `***`.

    Every message the trackers print goes through this: a tracking URI such as
    `postgresql://user:secret@db/mlflow` becomes `postgresql://user:***@db/mlflow`.
    """
    text = _URL_PASSWORD.sub(r"\g<head>:***@", text)
    return _QUERY_SECRET.sub(r"\g<head>***", text)


class TrackerError(Exception):
    """A tracker failure already described in one line (store and cause)."""


def root_cause(exc: BaseException) -> BaseException:
    """The innermost error under `exc`: what actually went wrong, not the wrappers around it.

    MLflow wraps SQLAlchemy's error, whose message starts with how the failing statement was
    reached ("raised as a result of Query-invoked autoflush"); the driver's error
    (`.orig`, e.g. sqlite3's "attempt to write a readonly database") says why.
    """
    seen = set()
    while id(exc) not in seen and not isinstance(exc, TrackerError):
        seen.add(id(exc))
        inner = getattr(exc, "orig", None)  # SQLAlchemy's DBAPIError: the driver's own error
        if not isinstance(inner, BaseException):
            inner = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if inner is None:
            break
        exc = inner
    return exc


def describe(exc: BaseException, store: str = "") -> str:
    """One line for a tracker failure: where it was writing (`store`) and why, redacted."""
    cause = root_cause(exc)
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    # SQLAlchemy appends the statement and its parameters: not the reason, and maybe private.
    lines = [line for line in lines if not line.startswith(("[SQL:", "[parameters:", "(Back"))]
    reason = " ".join(" ".join(lines).split()) or type(cause).__name__
    if isinstance(cause, TrackerError) or not store:
        text = reason
    elif "readonly database" in reason or "read-only file system" in reason.lower():
        text = f"{store} is read-only ({reason})"
    else:
        text = f"{store}: {reason}"
    return redact(text)[:300]


def strict_failure(name: str, exc: BaseException, store: str = "") -> UserError:
    """One line, exit status 2: under `tracking.strict`, a tracker failure stops the stage."""
    reason = describe(exc, store)
    return UserError(f"tracker '{name}' failed and tracking.strict is true: {reason}")


def _stops_fit(exc: BaseException) -> bool:
    """True for `models.base.StopFit`, imported only once something failed."""
    try:
        from ml_project.models.base import StopFit
    except ImportError:
        return False
    return isinstance(exc, StopFit)


def _store(tracker: Tracker) -> str:
    """Where a tracker writes, for messages (`store`, optional: e.g. MLflow's tracking URI)."""
    return getattr(tracker, "store", "")


class Trackers:
    """Fan-out over the enabled trackers; a context manager that always closes all of them.

    A failing optional tracker is reported once on stderr, naming it, and dropped; the others
    (dvclive above all) go on. With `tracking.strict: true`, or for a required tracker, the
    failure is raised instead.
    """

    def __init__(self, trackers: list[Tracker], strict: bool = False):
        self.trackers = list(trackers)
        self.strict = strict
        self.failed: dict[str, str] = {}

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.trackers if getattr(t, "active", True)]

    @property
    def run_ids(self) -> dict[str, str]:
        """Run ids of the trackers that have one, for later stages to join the same run.

        Waits for trackers still starting in the background; one that could not start is
        reported and dropped here, so its id is never recorded.
        """
        self._each("wait_started")
        return {t.name: run_id for t in self.trackers if (run_id := getattr(t, "run_id", None))}

    def _each(self, method: str, *args, **kwargs) -> None:
        for tracker in list(self.trackers):
            call = getattr(tracker, method, None)
            if call is None:  # `wait_started`: only trackers started in the background have it
                continue
            try:
                call(*args, **kwargs)
            except Exception as exc:
                if _stops_fit(exc):
                    raise  # a tracker asking training to stop (pruning), not a failure
                self._failed(tracker, exc)
                self._drop(tracker, exc)

    def _failed(self, tracker: Tracker, exc: Exception, closing: bool = False) -> None:
        """Raise when the failure is fatal; otherwise report it once and record it."""
        if tracker.required:
            raise exc
        if self.strict:
            raise strict_failure(tracker.name, exc, _store(tracker)) from exc
        reason = describe(exc, _store(tracker))
        self.failed[tracker.name] = reason
        if isinstance(exc, StartFailure):
            what = "could not start and is skipped"
        elif closing:
            what = "failed on close"
        else:
            what = "failed and is skipped for the rest of this run"
        print(f"warning: tracker '{tracker.name}' {what}: {reason}", file=sys.stderr)

    def _drop(self, tracker: Tracker, exc: BaseException) -> None:
        self.trackers.remove(tracker)
        with contextlib.suppress(Exception):  # it already failed; closing is best effort
            tracker.close("failed")

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._each("log_params", params)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._each("set_tags", tags)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._each("log_metrics", metrics, step)

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        self._each("log_summary", metrics)

    def log_artifact(self, path: Path, kind: str = "file") -> None:
        self._each("log_artifact", Path(path), kind)

    def log_model(self, model: Any, path: Path, input_example: Any) -> None:
        self._each("log_model", model, Path(path), input_example)

    def close(self, status: str = "success") -> None:
        """Close every tracker (background ones finish their queued calls first), then raise
        or report what failed."""
        errors = []
        for tracker in self.trackers:
            try:
                tracker.close(status)
            except Exception as exc:  # noqa: BLE001 - every tracker must get its close()
                errors.append((tracker, exc))
        self.trackers = []
        for tracker, error in errors:
            self._failed(tracker, error, closing=True)

    def __enter__(self) -> Trackers:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close("failed" if exc_type is not None else "success")


RUN_IDS_PATH = Path("models/run_ids.json")


def write_run_ids(ids: Mapping[str, str], path: Path = RUN_IDS_PATH) -> None:
    """Record the train stage's run ids (a stage output) so evaluate joins the same runs."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(dict(sorted(ids.items())), indent=2) + "\n")


def read_run_ids(path: Path = RUN_IDS_PATH) -> dict[str, str]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: not found; run the train stage first") from None


class TrackerClass(Protocol):
    """What the registry names: a tracker class, started with `from_params`."""

    name: str
    required: bool

    def from_params(self, params: TrackingParams, run: RunInfo) -> Tracker | None: ...


def load_tracker_class(name: str) -> TrackerClass:
    module, cls = TRACKERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def open_trackers(params: TrackingParams, run: RunInfo) -> Trackers:
    """Start every enabled tracker for `run`; disabled ones are never imported.

    Optional trackers (MLflow, W&B) start on threads of their own and take their calls there
    (`BackgroundTracker`), so their start-up and slow calls overlap the stage's work; the
    fan-out's `close` waits for them. Those marked `in_child` run in a forked child process
    (`ChildTracker`), so that their start-up also runs on another core. A required tracker
    (dvclive) starts here, at once.

    A tracker that cannot start is handled like one that fails later: fatal when it is
    required or `tracking.strict` is on, otherwise reported once and skipped. For a background
    tracker that happens at the first fan-out call after it failed, at the latest on close.
    """
    fanout = Trackers([], strict=params.strict)
    for name in TRACKERS:
        section = getattr(params, name, None)
        if section is None or not section.enabled:
            continue
        cls = load_tracker_class(name)
        if not cls.required:
            start: Callable[[], Any] = functools.partial(cls.from_params, params, run)
            if getattr(cls, "in_child", False):
                from ml_project.tracking.child import ChildTracker, can_fork

                if can_fork():
                    joined = (run.join or {}).get(name)
                    after = (name, joined) if joined else None
                    hand_off = run.hand_off and not params.strict
                    start = ChildTracker(name, start, after, hand_off).started
            fanout.trackers.append(BackgroundTracker(name, start))
            continue
        try:
            tracker = cls.from_params(params, run)
        except Exception as exc:
            if params.strict or cls.required:
                fanout.close("failed")
                if cls.required:
                    raise
                raise strict_failure(name, exc) from exc
            fanout.failed[name] = describe(exc)
            print(
                f"warning: tracker '{name}' could not start and is skipped: {fanout.failed[name]}",
                file=sys.stderr,
            )
            continue
        if tracker is not None:
            fanout.trackers.append(tracker)
    return fanout
