"""An optional tracker started and driven on its own thread, off the stage's critical path.

Starting MLflow (imports and its SQLite store) or W&B (its service process) takes seconds, and
so does `log_model`. `BackgroundTracker` starts the tracker on a thread of its own and queues
every call for that thread, in order, so the stage loads data and fits while trackers start,
and its calls return at once. `close` waits for everything queued, then closes the tracker:
nothing is dropped when the stage fails, since the fan-out always closes.

A failure on the thread is kept and raised on the caller's next call (or `wait_started`, or
`close`), once, so the fan-out reports and drops the tracker exactly as it would a synchronous
one. A start failure is raised as `StartFailure`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


class StartFailure(Exception):
    """The tracker could not start; the original error is its `__cause__`."""


class Forwarder:
    """The `Tracker` protocol's calls, each handed to `_forward(method, *args)` with copies of
    its mappings (the caller may change them once the call has returned)."""

    def _forward(self, method: str, *args: Any) -> None:
        raise NotImplementedError

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._forward("log_params", dict(params))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._forward("set_tags", dict(tags))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._forward("log_metrics", dict(metrics), step)

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        self._forward("log_summary", dict(metrics))

    def log_artifact(self, path: Path, kind: str = "file") -> None:
        self._forward("log_artifact", Path(path), kind)

    def log_model(self, model: Any, path: Path, input_example: Any) -> None:
        self._forward("log_model", model, Path(path), input_example)


class BackgroundTracker(Forwarder):
    required = False  # a required tracker (dvclive) starts on the caller's thread

    def __init__(self, name: str, start: Callable[[], Any]):
        self.name = name
        self.store = ""
        self._tracker: Any = None
        self._error: BaseException | None = None
        self._reported = False
        self._closing = False
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(start,), name=f"{name}-tracker", daemon=True
        )
        self._thread.start()

    def _run(self, start: Callable[[], Any]) -> None:
        try:
            self._tracker = start()
            self.store = getattr(self._tracker, "store", "")
        except Exception as exc:  # noqa: BLE001 - raised on the caller's thread
            failure = StartFailure(str(exc))
            failure.__cause__ = exc
            self._error = failure
        finally:
            self._started.set()
        while (call := self._calls.get()) is not None:
            method, args = call
            if self._tracker is None or (self._error is not None and method != "close"):
                continue
            if method == "close" and self._error is not None:
                args = ("failed",)  # a run whose logging failed is not a success
            try:
                getattr(self._tracker, method)(*args)
            except Exception as exc:  # noqa: BLE001 - raised on the caller's thread
                self._error = self._error or exc

    def _raise_pending(self) -> None:
        if self._error is not None and not self._reported:
            self._reported = True
            raise self._error

    def _forward(self, method: str, *args: Any) -> None:
        self._raise_pending()
        if not self._closing:
            self._calls.put((method, args))

    @property
    def active(self) -> bool:
        """False once known that the tracker chose not to run (e.g. W&B mode disabled)."""
        return not self._started.is_set() or self._tracker is not None or self._error is not None

    def wait_started(self) -> None:
        self._started.wait()
        self._raise_pending()

    @property
    def run_id(self) -> str | None:
        self._started.wait()
        return getattr(self._tracker, "run_id", None)

    def close(self, status: str) -> None:
        """Run everything queued, close the tracker, and raise what failed on the way."""
        if not self._closing:
            self._closing = True
            self._calls.put(("close", (status,)))
            self._calls.put(None)
        self._thread.join()
        self._raise_pending()
