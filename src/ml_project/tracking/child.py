"""An optional tracker run in a forked child process: its start-up uses the other core.

Threads alone do not shorten a stage: starting MLflow or W&B is mostly importing Python code,
which holds the GIL, so a tracker thread only slows the training thread down by as much as it
saves. A child forked from the stage at `open_trackers` (cheap: nothing is re-imported, and the
stage is not importing anything at that moment) imports and starts the tracker in parallel,
and the stage's `BackgroundTracker` thread forwards the calls to it, one round trip each.

`log_model` sends the saved model's path, not the object: the child loads it with
`load_native`, which is also the proof that the file logged as the model loads. A tracker
that logs the file alone says so with `needs_model = False` (W&B), and skips the load. If the stage
dies, the child sees the pipe close and ends the run as failed.

Hand-off (the train stage, `RunInfo.hand_off`): a successful stage does not wait for its
children's last calls (`log_model`, about 1.5 s with MLflow's own reload check, and closing the
run). It sends them and exits; each child finishes on its own, holding a lock file named after
its run (`run_lock`) until done. The next stage joining that run (evaluate) waits for the lock
in its own tracker child, so that wait overlaps evaluate's work, and it reports what failed.
A failed or strict stage still waits for everything, as before.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.process
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ml_project.tracking import TrackerError, describe
from ml_project.tracking.background import Forwarder


def can_fork() -> bool:
    """Linux only: macOS system libraries are not fork-safe, and Windows has no fork. Where it
    is False, the tracker runs on its thread in the stage's process instead."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


# The stage's ends of the pipes to its tracker children. A child closes its copies at once:
# while any process holds a stage's end open, that child would never see the stage die.
_STAGE_ENDS: set = set()


def _quietly(call: Callable[[], Any]) -> None:
    with contextlib.suppress(Exception):  # the call that needs it will report it
        call()


def run_lock(name: str, run_id: str) -> Path | None:
    """The file a handed-off child holds locked until its run's logging is done (None where
    there is no private runtime directory: then nothing is handed off)."""
    from ml_project.forkserver import runtime_dir

    directory = runtime_dir()
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in run_id)
    return directory / f"run-{name}-{safe}.lock" if directory is not None else None


def _hold(path: Path | None):
    """Create and lock `path` for this process's life (None if it cannot)."""
    import fcntl

    if path is None:
        return None
    try:
        handle = open(path, "w")  # noqa: SIM115 - held until the process exits
    except OSError:
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
    except OSError:
        handle.close()
        return None
    return handle


def _release(handle, failure: str | None) -> None:
    """Done: remove the lock file, or leave the failure in it for the stage that joins next."""
    if handle is None:
        return
    with contextlib.suppress(OSError):
        if failure is None:
            os.unlink(handle.name)
        else:
            handle.write(failure)
            handle.flush()
    handle.close()


def wait_for_run(name: str, run_id: str) -> str | None:
    """Wait until an earlier stage's handed-off child for this run is done; return what it
    reported as failed (None when it finished, or when there was nothing to wait for)."""
    import fcntl

    path = run_lock(name, run_id)
    if path is None:
        return None
    try:
        handle = open(path)  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None  # finished (or never handed off)
    with handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        text = handle.read().strip()
        if not os.path.exists(path):
            return None  # removed between our open and its release: it finished
        with contextlib.suppress(OSError):
            os.unlink(path)
    return text or "its process ended before it finished logging"


def _serve(conn, start: Callable[[], Any], after: tuple[str, str] | None, hand_off: bool) -> None:
    """The child: start the tracker, then run each call and answer ("ok"|"error", detail)
    where the stage waits for an answer; the others' failures are reported at close."""
    for end in list(_STAGE_ENDS):
        end.close()
    _STAGE_ENDS.clear()
    earlier = wait_for_run(*after) if after is not None else None
    if after is not None and earlier is not None:
        print(
            f"warning: tracker '{after[0]}': the train stage's logging to this run did not "
            f"finish: {earlier}",
            file=sys.stderr,
            flush=True,
        )
    try:
        tracker = start()
    except Exception as exc:  # noqa: BLE001 - reported by the stage
        conn.send(("error", describe(exc)))
        return
    if tracker is None:
        conn.send(("ok", None))
        return
    store = getattr(tracker, "store", "")
    run_id = getattr(tracker, "run_id", None)
    name = getattr(tracker, "name", "tracker")
    lock = _hold(run_lock(name, run_id)) if hand_off and run_id else None
    conn.send(("ok", (run_id, store, lock is not None)))
    prepare = getattr(tracker, "prepare", None)  # optional: imports for later calls, early
    if prepare is not None:  # on a thread: the calls coming in meanwhile must not wait
        threading.Thread(target=_quietly, args=(prepare,), daemon=True).start()
    deferred: str | None = None  # the first failure of a call the stage did not wait for
    failure: str | None = None
    while True:
        try:
            method, args, answer = conn.recv()
        except EOFError:  # the stage is gone (and reports why): nothing more will come
            with contextlib.suppress(Exception):
                tracker.close("failed")
            break
        error = None
        if method == "close" and deferred is not None:
            args = ("failed",)  # a run whose logging failed is not a success
        try:
            if method == "log_model" and getattr(tracker, "needs_model", True):
                from ml_project.persistence import load_native

                args = (load_native(args[1]), *args[1:])
            getattr(tracker, method)(*args)
        except Exception as exc:  # noqa: BLE001 - reported by the stage, or here
            error = describe(exc, store)
        if method == "close":
            error = error or deferred
            if answer:  # the stage reports it
                conn.send(("error", error) if error else ("ok", None))
            elif error:  # handed off: the stage is gone; so this process, and the next stage
                print(f"warning: tracker '{name}' failed: {error}", file=sys.stderr, flush=True)
                failure = error
            break
        if answer:
            conn.send(("error", error) if error else ("ok", None))
        elif error and deferred is None:
            deferred = error
    _release(lock, failure)


class ChildTracker(Forwarder):
    """The stage's side of a tracker running in a child process.

    `after`: (tracker name, run id) of an earlier stage's run this one joins; the child waits
    for that run's handed-off logging before it starts. `hand_off`: on a successful close, send
    the last calls and return without waiting for them (see the module's docstring).
    """

    def __init__(
        self,
        name: str,
        start: Callable[[], Any],
        after: tuple[str, str] | None = None,
        hand_off: bool = False,
    ):
        self.name = name
        self.required = False
        self.run_id: str | None = None
        self.store = ""
        self.hand_off = hand_off
        for stream in (sys.stdout, sys.stderr):  # else the child repeats what is buffered
            stream.flush()
        context = multiprocessing.get_context("fork")
        self._conn, child_end = context.Pipe()
        _STAGE_ENDS.add(self._conn)
        self._process = context.Process(
            target=_serve,
            args=(child_end, start, after, hand_off),
            name=f"{name}-tracker",
            daemon=False,
        )
        self._process.start()
        child_end.close()

    def _reply(self) -> Any:
        try:
            kind, detail = self._conn.recv()
        except EOFError:
            raise TrackerError(f"the {self.name} tracker process exited unexpectedly") from None
        if kind == "error":
            raise TrackerError(detail)
        return detail

    def started(self) -> ChildTracker | None:
        """Wait for the child's start-up: this tracker, or None if it chose not to run."""
        try:
            detail = self._reply()
        except TrackerError:
            self._end()
            raise
        if detail is None:
            self._end()
            return None
        self.run_id, self.store, locked = detail
        self.hand_off = self.hand_off and locked  # only a run the next stage can wait for
        return self

    def _forward(self, method: str, *args: Any) -> None:
        self._conn.send((method, args, True))
        self._reply()

    def _end(self) -> None:
        _STAGE_ENDS.discard(self._conn)
        self._conn.close()
        self._process.join()

    def log_model(self, model: Any, path: Path, input_example: Any) -> None:
        # The child loads `path`. Not waited for: a failure is raised by `close`, or, handed
        # off, reported by the child and by the stage that joins the run next.
        self._conn.send(("log_model", (None, Path(path), input_example), False))

    def close(self, status: str) -> None:
        if self.hand_off and status == "success":
            self._conn.send(("close", (status,), False))
            _STAGE_ENDS.discard(self._conn)
            self._conn.close()
            # Not joined at exit either (multiprocessing joins its live children then).
            multiprocessing.process._children.discard(self._process)  # type: ignore[attr-defined]
            return
        try:
            self._forward("close", status)
        finally:
            self._end()
