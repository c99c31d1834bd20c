"""An optional tracker run in a forked child process: its start-up uses the other core.

Threads alone do not shorten a stage: starting MLflow or W&B is mostly importing Python code,
which holds the GIL, so a tracker thread only slows the training thread down by as much as it
saves. A child forked from the stage at `open_trackers` (cheap: nothing is re-imported, and the
stage is not importing anything at that moment) imports and starts the tracker in parallel,
and the stage's `BackgroundTracker` thread forwards the calls to it, one round trip each.

`log_model` sends the saved model's path, not the object: the child loads it with
`load_native`, which is also the proof that the file logged as the model loads. If the stage
dies, the child sees the pipe close and ends the run as failed.
"""

from __future__ import annotations

import contextlib
import multiprocessing
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


def _serve(conn, start: Callable[[], Any]) -> None:
    """The child: start the tracker, then run each call and answer ("ok"|"error", detail)."""
    for end in list(_STAGE_ENDS):
        end.close()
    _STAGE_ENDS.clear()
    try:
        tracker = start()
    except Exception as exc:  # noqa: BLE001 - reported by the stage
        conn.send(("error", describe(exc)))
        return
    if tracker is None:
        conn.send(("ok", None))
        return
    store = getattr(tracker, "store", "")
    conn.send(("ok", (getattr(tracker, "run_id", None), store)))
    prepare = getattr(tracker, "prepare", None)  # optional: imports for later calls, early
    if prepare is not None:  # on a thread: the calls coming in meanwhile must not wait
        threading.Thread(target=_quietly, args=(prepare,), daemon=True).start()
    while True:
        try:
            method, args = conn.recv()
        except EOFError:  # the stage is gone: nothing more will come
            tracker.close("failed")
            return
        try:
            if method == "log_model":
                from ml_project.persistence import load_native

                args = (load_native(args[1]), *args[1:])
            getattr(tracker, method)(*args)
            conn.send(("ok", None))
        except Exception as exc:  # noqa: BLE001 - reported by the stage
            conn.send(("error", describe(exc, store)))
        if method == "close":
            return


class ChildTracker(Forwarder):
    """The stage's side of a tracker running in a child process."""

    def __init__(self, name: str, start: Callable[[], Any]):
        self.name = name
        self.required = False
        self.run_id: str | None = None
        self.store = ""
        for stream in (sys.stdout, sys.stderr):  # else the child repeats what is buffered
            stream.flush()
        context = multiprocessing.get_context("fork")
        self._conn, child_end = context.Pipe()
        _STAGE_ENDS.add(self._conn)
        self._process = context.Process(
            target=_serve, args=(child_end, start), name=f"{name}-tracker", daemon=False
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
        self.run_id, self.store = detail
        return self

    def _forward(self, method: str, *args: Any) -> None:
        self._conn.send((method, args))
        self._reply()

    def _end(self) -> None:
        _STAGE_ENDS.discard(self._conn)
        self._conn.close()
        self._process.join()

    def log_model(self, model: Any, path: Path, input_example: Any) -> None:
        self._forward("log_model", None, Path(path), input_example)  # the child loads `path`

    def close(self, status: str) -> None:
        try:
            self._forward("close", status)
        finally:
            self._end()
