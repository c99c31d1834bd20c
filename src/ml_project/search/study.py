"""Where a study lives: an embedded file on one machine, a database server for many.

- No URL: Optuna's journal file `optuna.journal` at the repository root (ignored by git);
  several processes on one machine may share it.
- `postgresql://user:password@host:5432/db` (or MySQL, or `sqlite:///path`): an Optuna RDB
  storage. Every machine running the same command against it works on the same study.

The trial budget is the study's, not one machine's: a trial is only created while the study
holds fewer than the budget, and that check-then-create is done under a lock that every
machine takes (a PostgreSQL advisory lock; a file lock next to a file storage), so the study
ends with exactly the budget however many machines ask at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
from pathlib import Path
from typing import Any

from ml_project.errors import UserError

DEFAULT_FILE = "optuna.journal"
ENV_STORAGE = "ML_PROJECT_SEARCH_STORAGE"  # the default --storage
# A server storage fails the trials of a machine that stopped sending heartbeats (killed,
# powered off) once this much time has passed, so they are not left RUNNING forever.
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120


def is_server(url: str) -> bool:
    return "://" in url and not url.startswith("sqlite:")


def resolve_url(url: str | None, root: Path) -> str:
    """The storage: a database URL as given, or an absolute path of the journal file (stages
    run in DVC's temporary workspaces, where a relative path would point elsewhere)."""
    url = url or os.environ.get(ENV_STORAGE) or DEFAULT_FILE
    if "://" in url:
        return url
    return str((root / url).resolve())


def shown(url: str) -> str:
    from ml_project.tracking import redact

    return redact(url)


def open_storage(url: str, heartbeat: bool = True):
    """An Optuna storage for `url`, or a one-line error when it cannot be reached."""
    import warnings

    import optuna

    # Optuna's INFO lines ("Using an existing study") and the heartbeat's ExperimentalWarning
    # would interleave with the search's own progress lines.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        if "://" not in url:
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            Path(url).parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(url))
        kwargs: dict[str, Any] = {"engine_kwargs": {"pool_pre_ping": True}}
        if heartbeat and is_server(url):
            kwargs.update(heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS)
        return _rdb(url, kwargs)
    except Exception as exc:  # the driver's error: refused, unknown host, bad password
        from ml_project.tracking import describe

        reason = describe(exc)
        raise UserError(
            f"--storage {shown(url)}: cannot open the study storage: {reason}"
        ) from None


def _rdb(url: str, kwargs: dict[str, Any], attempts: int = 3):
    """Optuna's RDB storage. Machines started together on an empty database all create its
    tables: one wins and the others fail on a duplicate table, then find it made."""
    import time

    import optuna

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except Exception as exc:  # noqa: BLE001 - retried, then raised as it is
            message = str(exc).lower()
            if attempt + 1 == attempts or not (
                "already exists" in message or "duplicate" in message
            ):
                raise
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


def open_study(storage, name: str, direction: str, metric: str, sampler, pruner: dict[str, Any]):
    """Create the study, or join it; one created for another direction or metric is refused.

    `pruner` is the pruner's settings (`make_pruner`'s); they are recorded on the study (user
    attr `pruner`, this search's replacing an earlier one's), where the trials' `optuna`
    tracker reads them, with `metric`: not from its environment, which a queue worker started
    by an earlier search still carries."""
    import optuna

    from ml_project.tracking.optuna_tracker import ATTR_METRIC, ATTR_PRUNER, make_pruner

    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction=optuna.study.StudyDirection[direction.upper()],
        sampler=sampler,
        pruner=make_pruner(pruner),
        load_if_exists=True,
    )
    had = study.direction.name.lower()
    if had != direction:
        raise UserError(
            f"study '{name}' was created to {had} but this search would {direction} {metric}; "
            f"use another --study name"
        )
    recorded = study.user_attrs.get(ATTR_METRIC)
    if recorded is None:
        study.set_user_attr(ATTR_METRIC, metric)
    elif recorded != metric:
        raise UserError(
            f"study '{name}' optimizes {recorded}, not {metric}; use another --study name"
        )
    study.set_user_attr(ATTR_PRUNER, dict(pruner))
    return study


@contextlib.contextmanager
def budget_lock(storage, url: str, study_name: str):
    """Held while a machine counts the study's trials and creates one: see the module doc."""
    key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)
    engine = getattr(storage, "engine", None)
    if engine is not None and engine.dialect.name == "postgresql":
        from sqlalchemy import text

        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    if "://" not in url or url.startswith("sqlite:///"):
        # Not `<file>.lock`: that one is the journal backend's own lock.
        path = Path(url.removeprefix("sqlite:///") + ".budget-lock")
        with path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    yield  # another server (MySQL): Optuna's own atomicity; the budget may be overshot


def owner() -> dict[str, Any]:
    """Which process runs a trial: recorded on it, to fail a dead machine's trials."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def fail_stale(study, storage, url: str) -> list[int]:
    """Fail the RUNNING trials nobody runs any more: on a server, those whose heartbeat stopped
    (Optuna's own check); with a file storage (one machine), those whose search process on this
    host is gone. Returns their numbers."""
    import optuna
    from optuna.trial import TrialState

    running = (TrialState.RUNNING,)
    before = {t.number for t in study.get_trials(deepcopy=False, states=running)}
    if is_server(url):
        optuna.storages.fail_stale_trials(study)
    else:
        host = socket.gethostname()
        for trial in study.get_trials(deepcopy=False, states=running):
            attrs = trial.user_attrs
            if attrs.get("host") == host and not _alive(attrs.get("pid")):
                with contextlib.suppress(Exception):  # another process failed it first
                    storage.set_trial_user_attr(
                        trial._trial_id, "error", "stale: the search process running it is gone"
                    )
                    study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    after = {t.number for t in study.get_trials(deepcopy=False, states=running)}
    return sorted(before - after)


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True
