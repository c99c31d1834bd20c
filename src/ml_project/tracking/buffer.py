"""Per-step metrics, written off the training loop's thread.

A tracker's write costs from ~0.1 ms (W&B) to hundreds of ms (an MLflow batch into SQLite).
`StepBuffer.add` only appends to a list; a daemon thread hands everything collected to the
tracker's `write` at most every `interval` seconds, so live views stay at most that far behind,
and `close` writes the rest. Every step is kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

Batch = list[tuple[int, dict[str, float], float]]  # (step, metrics, wall-clock time)


class StepBuffer:
    def __init__(self, write: Callable[[Batch], None], interval: float = 2.0, name: str = ""):
        self._write = write
        self._interval = interval
        self._pending: Batch = []
        self._pending_lock = threading.Lock()
        self._writer_lock = threading.RLock()  # one writer at a time: the thread or the caller
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"{name}-writer", daemon=True)
        self._thread.start()

    def add(self, metrics: Mapping[str, float], step: int) -> None:
        """Queue one step. A failure of the background writer surfaces here, on the caller."""
        if self._error is not None:
            raise self._error
        with self._pending_lock:
            self._pending.append((step, dict(metrics), time.time()))

    def flush(self) -> None:
        with self._writer_lock:
            with self._pending_lock:
                batch, self._pending = self._pending, []
            if batch:
                self._write(batch)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold off the background writer, for calls on the tracker that are not thread-safe."""
        with self._writer_lock:
            yield

    def close(self) -> None:
        """Stop the thread and write everything still queued, on the caller's thread."""
        self._stop.set()
        self._thread.join()
        if self._error is not None:
            raise self._error
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - re-raised on the caller's next add()
                self._error = exc
                return
