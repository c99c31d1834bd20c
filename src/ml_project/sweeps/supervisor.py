"""Watch queued experiments until each has an outcome: restart workers, retry what failed
for a reason other than its own input, and record why.

DVC's parallel workers are not fully reliable: a worker can exit with work left, and a task
can be reported running after its worker died. The loop checks what it is told, through the
queue adapter (`dvc_queue`), and never trusts one signal alone.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ml_project.sweeps import dvc_queue
from ml_project.sweeps.grid import override

# A failed stage that printed one of these lines failed on its input: running it again
# cannot help. Anything else (DVC's own errors, a killed process, no log) may be transient.
USER_ERROR = re.compile(r"^error: .*", re.MULTILINE)
STAGE_FAILED = re.compile(r"^ERROR: failed to reproduce .*", re.MULTILINE)
# A worker that has just been started is not in `worker_status()` for a few seconds.
WORKER_START_SECONDS = 30.0
# How long a task may be reported running while no worker runs anything before it is retried.
ORPHAN_SECONDS = 30.0

Say = Callable[[str], None]


@dataclass
class Task:
    name: str
    point: dict[str, object]
    rev: str = ""  # the queue entry (stash commit); a retry gets a new one
    status: str = "Queued"  # Queued, Running, Success, Failed
    attempts: int = 1
    error: str = ""
    started: float | None = None
    orphaned: float | None = None  # since when it is "Running" with no worker alive
    notes: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.status in ("Success", "Failed")


def failure_reason(log: str) -> tuple[str, bool]:
    """(one line saying why, whether running it again could help)."""
    user = USER_ERROR.findall(log)
    if user:
        return user[-1], False
    failed = STAGE_FAILED.findall(log)
    if failed:
        return failed[-1], True
    lines = [line for line in log.splitlines() if line.strip()]
    return (lines[-1] if lines else "failed without a log (the task never started)"), True


class Sweep:
    """Queue the tasks, run them on `jobs` workers, watch until each has an outcome."""

    def __init__(
        self, root: Path, tasks: list[Task], jobs: int, retries: int, timeout: float | None
    ):
        self.root, self.tasks, self.jobs = root, tasks, jobs
        self.retries, self.timeout = retries, timeout
        self.workers_started = 0.0
        self.abandoned: list[str] = []  # queue entries of attempts that were retried

    def start(self) -> None:
        """Queue every task, starting the workers once the first is queued: they boot (~2 s)
        and run it while the rest are queued (~0.5 s each)."""
        with dvc_queue.open_queue(self.root) as queue:
            for k, task in enumerate(self.tasks):
                self._queue(queue, task)
                if k == 0:
                    self._start_workers(queue)

    def _start_workers(self, queue: dvc_queue.Queue) -> int:
        self.workers_started = time.monotonic()
        return queue.start_workers(self.jobs)

    def _queue(self, queue: dvc_queue.Queue, task: Task) -> None:
        task.rev = queue.queue(task.name, [override(k, v) for k, v in task.point.items()])
        task.status, task.started, task.orphaned = "Queued", None, None

    def poll(self, say: Say) -> bool:
        """Update every task; True while any is unfinished."""
        with dvc_queue.open_queue(self.root) as queue:
            status = queue.status(t.rev for t in self.tasks if not t.done)
            workers = len(dvc_queue.worker_pids(self.root))
            settled = time.monotonic() - self.workers_started > WORKER_START_SECONDS
            for task in self.tasks:
                if task.done:
                    continue
                task.status = status.get(task.rev, task.status)
                if task.status == "Running":
                    self._check_running(queue, task, not workers and settled, say)
                elif task.status == "Failed":
                    reason, transient = failure_reason(queue.log(task.rev))
                    self._retry_or_fail(queue, task, reason, transient, say)
            pending = [t for t in self.tasks if not t.done]
            # Workers exit when they see an empty queue; one that exits early (a known DVC
            # issue) or a retry queued after they left would otherwise leave work waiting.
            waiting = [t for t in pending if t.status == "Queued"]
            if waiting and workers < self.jobs and settled and self._start_workers(queue):
                say(f"restarted queue workers ({len(waiting)} experiment(s) waiting)")
        return bool(pending)

    def _check_running(self, queue: dvc_queue.Queue, task: Task, no_worker: bool, say: Say) -> None:
        now = time.monotonic()
        task.started = task.started or now
        # DVC can report a task as running after its worker has gone (the worker exited
        # early or was killed): nothing would ever finish or collect it. It is an orphan only
        # if no worker is alive and its own experiment process is not running either.
        no_worker = no_worker and not queue.running(task.rev)
        task.orphaned = (task.orphaned or now) if no_worker else None
        if task.orphaned and now - task.orphaned > ORPHAN_SECONDS:
            reason = "stuck: the queue reports it running but no worker is running it"
            self._retry_or_fail(queue, task, reason, True, say)
        elif self.timeout is not None and now - task.started > self.timeout:
            queue.kill(task.rev)
            reason = f"killed: still running after {self.timeout:g}s (--timeout)"
            self._retry_or_fail(queue, task, reason, True, say)

    def _retry_or_fail(
        self, queue: dvc_queue.Queue, task: Task, reason: str, transient: bool, say: Say
    ) -> None:
        if transient and task.attempts <= self.retries:
            say(f"{task.name}: {reason}; queueing it again")
            task.notes.append(reason)
            task.attempts += 1
            self.abandoned.append(task.rev)
            queue.stop(task.rev)  # an orphan's process may still be running
            self._queue(queue, task)
            self._start_workers(queue)
            return
        task.status, task.error = "Failed", reason
        say(f"{task.name}: failed: {reason} (full log: dvc queue logs {task.name})")

    def forget_abandoned(self, say: Say) -> None:
        """Drop the retried attempts from the queue, once nothing runs.

        Otherwise `dvc exp show` lists a second, failed (or forever running) row under the
        same name; the reason each attempt failed is kept in the sweep's results instead.
        """
        if self.abandoned:
            with dvc_queue.open_queue(self.root) as queue:
                left = queue.discard(self.abandoned)
            if left:
                say(f"could not remove {len(left)} retried attempt(s) from the queue: {left}")
