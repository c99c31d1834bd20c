"""The only code that touches DVC's experiment-queue internals, for the DVC it was written for.

DVC has no public API to supervise its queue: to queue one named experiment and get its
queue entry back, read a task's process and log, find the worker processes, or mark a task
failed whose worker is gone. This module wraps the private pieces a sweep needs
(`Experiments.queue_one`, `celery_queue.proc`, `_spawn_worker`, `_mark_inactive_tasks_failure`,
the worker pid files and the `refs/exps` layout) behind a small API, and refuses to run on any other
DVC minor version, whose internals may differ. Two of DVC's own behaviours are worked around
here, where every sweep and search passes: queueing fails at once while a worker holds the
stash lock (`queue` waits, as DVC's workers do), and the daemon forked around each worker
keeps the caller's stdout and stderr open (`start_workers` gives it /dev/null):

    with open_queue(root) as queue:  # or held(root): one queue for every open_queue inside
        rev = queue.queue("t1", ["model=rf"])
        queue.start_workers(2)
        queue.status()               # {rev: "Queued" | "Running" | "Success" | "Failed"}
        queue.log(rev), queue.running(rev)
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ml_project.errors import UserError
from ml_project.threads import QUEUE_WORKSPACES_DIR, live_workers

if TYPE_CHECKING:
    from dvc.repo import Repo

# The major.minor version whose internals this module was read from and tested against.
WRITTEN_FOR = (3, 67)
PARAMS_FILE = "params.yaml"


def check_version(found: str | None = None) -> None:
    """Raise a one-line `UserError` unless DVC (`found`, default: the installed one) is the
    version this module was written for."""
    found = found if found is not None else importlib.metadata.version("dvc")
    release = tuple(int(part) for part in re.findall(r"\d+", found)[:2])
    if release != WRITTEN_FOR:
        wanted = ".".join(map(str, WRITTEN_FOR))
        raise UserError(
            f"sweeps supervise DVC's queue through DVC {wanted}.x internals, but dvc {found} "
            f"is installed: install the pinned version (pip install -r requirements.lock) "
            f"or port src/ml_project/sweeps/dvc_queue.py"
        )


def find_root(path: Path | str = ".") -> Path:
    """The DVC project containing `path`."""
    from dvc.repo import Repo

    return Path(Repo.find_root(str(path)))


def _read_json(path: Path | str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def _alive(proc: dict) -> bool:
    """Whether a `{"pid", "returncode"}` process record describes a running process."""
    if not proc or proc.get("returncode") is not None:
        return False
    try:
        os.kill(proc["pid"], 0)
    except (OSError, KeyError, TypeError):
        return False
    return True


def worker_pids(root: Path) -> list[int]:
    """The pids of the queue's worker processes that are alive."""
    return list(live_workers(root).values())


# How long queueing waits for a worker to release the queue's stash lock (DVC's workers wait
# 180 s for theirs), and how often it tries.
LOCK_WAIT_SECONDS = 180.0
LOCK_RETRY_SECONDS = 0.2

# Celery's file result backend: a file per task appears (or changes) when the task ends.
RESULTS_DIR = ".dvc/tmp/exps/celery/result"


def _results_changed(root: Path) -> int:
    """The result folder's change time: a task's result is a new file in it, however many
    results earlier experiments left there."""
    try:
        return os.stat(root / RESULTS_DIR).st_mtime_ns
    except OSError:
        return 0


def wait_for_change(root: Path, seconds: float, step: float = 0.25) -> None:
    """Sleep up to `seconds`, returning early once a queued task ends: a poll of the queue
    costs ~0.2 s of CPU (a DVC `Repo` and celery's view), a look at the result files
    almost nothing, so the supervisor sees an experiment end within `step`."""
    before, deadline = _results_changed(root), time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(step, max(0.0, deadline - time.monotonic())))
        if _results_changed(root) != before:
            return


class Queue:
    """DVC's celery experiment queue of one repository, opened by `open_queue`."""

    def __init__(self, repo: Repo, root: Path):
        self._repo, self.root = repo, root
        self._queue = repo.experiments.celery_queue

    def queue(self, name: str, overrides: list[str], run_cache: bool = True) -> str:
        """Queue one experiment `name` with `-S` overrides of params.yaml; its queue entry.
        `run_cache=False` is `dvc exp run --no-run-cache`: no stage is restored from the cache.

        A worker that is taking an entry holds the queue's stash lock for a moment, and DVC's
        `put` fails at once on a held lock (its workers wait: 180 tries a second apart). The
        sweep queues while its first workers run, so it waits like them; nothing is written
        before the lock is taken, so a try again is safe.
        """
        from dvc.lock import LockError

        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                entry = self._repo.experiments.queue_one(
                    self._queue, params={PARAMS_FILE: overrides}, name=name, run_cache=run_cache
                )
                return entry.stash_rev
            except LockError as error:
                if time.monotonic() > deadline:
                    # DVC's message: "... is busy, it is being blocked by:\n  (PID n): cmd\n..."
                    lines = str(error).splitlines()
                    holder = lines[1].strip() if len(lines) > 1 else "another process"
                    raise UserError(
                        f"could not queue {name}: DVC's experiment queue stayed locked for "
                        f"{LOCK_WAIT_SECONDS:.0f} s by {holder}"
                    ) from error
                time.sleep(LOCK_RETRY_SECONDS)

    def start_workers(self, count: int) -> int:
        """Start workers 1 to `count`, those not running; how many were started.

        What `dvc queue start -j count` does, without its check of which workers run: that
        asks celery and waits a second for answers, every time. The pid files say it at once.
        """
        running = live_workers(self.root)
        missing = [number for number in range(1, count + 1) if number not in running]
        with _stdio_detached_in_forks():
            for number in missing:
                self._queue._spawn_worker(number)
        # Each is spawned through a daemon process that writes its pid file a moment later:
        # wait for them, so a check right after this sees them and does not start them twice.
        deadline = time.monotonic() + 10
        while not set(missing) <= set(live_workers(self.root)) and time.monotonic() < deadline:
            time.sleep(0.02)
        return len(missing)

    def status(self, revs: Iterable[str] | None = None) -> dict[str, str]:
        """Queue entry -> `Queued`, `Running`, `Success` or `Failed`, for the entries `revs`
        (default: all).

        What `dvc queue status` reports, in one pass over the queue. DVC's own `status()` reads
        every finished entry's result once per finished entry (quadratic in the queue's
        history: 0.2 s a poll after 40 experiments, seconds after hundreds), and all of them
        for a sweep that asks about its own few.
        """
        from celery.result import AsyncResult

        queue, wanted = self._queue, None if revs is None else set(revs)
        found = {
            e.stash_rev: "Queued"
            for e in queue.iter_queued()
            if wanted is None or e.stash_rev in wanted
        }
        for msg, entry in queue._iter_processed():
            rev = entry.stash_rev
            if wanted is not None and rev not in wanted:
                continue
            task = AsyncResult(msg.headers["id"], app=queue.celery)
            if not task.ready():
                found[rev] = "Running"
                continue
            try:
                result = queue._load_info(rev).result
            except FileNotFoundError:
                result = None
            if result is None:
                found[rev] = "Failed"
            elif result.exp_hash and result.ref_info:
                found[rev] = "Success"
        return found

    def names(self) -> set[str]:
        """Names of the queued, running and failed entries."""
        queue = self._queue
        entries = [*queue.iter_queued(), *queue.iter_active()]
        entries += [entry for entry, _ in queue.iter_failed()]
        return {e.name for e in entries if e.name}

    def log(self, rev: str) -> str:
        """What the entry's experiment process printed so far ("" before it starts)."""
        try:
            return Path(self._queue.proc[rev].stdout).read_text(errors="replace")
        except (KeyError, OSError):
            return ""

    def running(self, rev: str) -> bool:
        """Whether the entry's own experiment process is alive (whatever its worker does)."""
        try:
            return _alive(self._queue.proc[rev].asdict())
        except (KeyError, OSError, ValueError):
            return False

    def kill(self, rev: str) -> None:
        """Kill a running entry through the queue (it is then reported as failed)."""
        with contextlib.suppress(Exception):
            self._queue.kill([rev], force=True)

    def stop(self, rev: str) -> None:
        """SIGKILL the entry's experiment process, if any, without telling the queue."""
        with contextlib.suppress(Exception):
            self._queue.proc.kill(rev)

    def discard(self, revs: Iterable[str], timeout: float = 60.0) -> list[str]:
        """Drop entries from the queue once nothing runs them, with their temporary workspaces;
        the entries still there after `timeout` seconds.

        An entry whose worker died is still "active" to celery: it is marked failed first, or
        `remove` would not find it. Right after that, or while a worker is still writing the
        entry's result, `remove` can miss it, so what is left is tried again until it is gone.
        Its workspace under .dvc/tmp/exps is left behind by the dead worker too.
        """
        revs = list(revs)
        left = set(revs)
        deadline = time.monotonic() + timeout
        while left:
            queue = self._queue
            active = {e.stash_rev: e for e in queue.iter_active()}
            for rev in left:
                if rev in active:
                    with contextlib.suppress(Exception):
                        queue._mark_inactive_tasks_failure({active[rev]: rev})
                with contextlib.suppress(Exception):
                    queue.remove([rev])
            left &= set(self.status(left))
            if not left or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        for rev in revs:
            workspace = Path(_read_json(self._queue.get_infofile_path(rev)).get("root_dir", "/"))
            if workspace.parent == self.root / QUEUE_WORKSPACES_DIR:
                shutil.rmtree(workspace, ignore_errors=True)
        return sorted(left)


_DETACHING = False  # True while DVC forks the daemons around the workers


def _detach_stdio_in_child() -> None:
    if _DETACHING:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)


os.register_at_fork(after_in_child=_detach_stdio_in_child)


@contextlib.contextmanager
def _stdio_detached_in_forks() -> Iterator[None]:
    """A child forked inside gets /dev/null for stdout and stderr.

    DVC spawns each worker through a forked daemon that waits for it, holding every descriptor
    it inherited: a sweep's stdout, when it is a pipe (`make sweep | tee log`, a notebook, CI),
    then stays open until the workers idle out, 10+ s after the sweep has printed its results
    and exited. The worker writes to its own log file (`dvc queue logs`); the daemon prints
    nothing. This process's own output is untouched.
    """
    global _DETACHING
    sys.stdout.flush()
    sys.stderr.flush()
    _DETACHING = True
    try:
        yield
    finally:
        _DETACHING = False


_HELD: dict[Path, Queue] = {}  # queues kept open by `held`, by project root


@contextlib.contextmanager
def open_queue(root: Path) -> Iterator[Queue]:
    """The queue of the DVC project at `root`, after checking the DVC version: the one `held`
    open, if any, otherwise a new one (a DVC `Repo`, closed on leaving)."""
    if root in _HELD:
        yield _HELD[root]
        return
    check_version()
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        yield Queue(repo, root)


@contextlib.contextmanager
def held(root: Path) -> Iterator[Queue]:
    """One queue for every `open_queue(root)` inside: a supervisor polling every few seconds
    otherwise opens a DVC `Repo` each time (~0.15 s of CPU, taken from the experiments it
    watches). Everything a poll asks is read from disk, so nothing it sees goes stale."""
    if root in _HELD:  # held already, by a caller: theirs to close
        yield _HELD[root]
        return
    with open_queue(root) as queue:
        _HELD[root] = queue
        try:
            yield queue
        finally:
            _HELD.pop(root, None)


def experiment_commits(root: Path) -> dict[str, str]:
    """Finished experiments (git refs) -> their commits; {} outside a git repository."""
    out = subprocess.run(
        ["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps/"],
        cwd=root,
        capture_output=True,
        text=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        sha, ref = line.split(" ", 1)
        parts = ref.split("/")
        # refs/exps/<sha[:2]>/<sha[2:]>/<name>; celery/ and exec/ refs are DVC's bookkeeping.
        if len(parts) == 5 and len(parts[2]) == 2:
            found[parts[4]] = sha
    return found


def experiment_names(root: Path) -> set[str]:
    """Every experiment name in the repository: finished (git refs), queued, running, failed."""
    names = set(experiment_commits(root))
    with open_queue(root) as queue:
        return names | queue.names()
