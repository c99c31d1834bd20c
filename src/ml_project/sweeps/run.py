"""`run_sweep`: validate, expand, name, queue and supervise, then report."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_project.errors import UserError
from ml_project.sweeps import dvc_queue
from ml_project.sweeps.grid import PARAMS_FILE, expand, grids_for, load_presets
from ml_project.sweeps.names import names_for
from ml_project.sweeps.report import preload, results
from ml_project.sweeps.supervisor import Say, Sweep, Task

if TYPE_CHECKING:
    import pandas as pd


def run_sweep(
    preset: str | None = None,
    params: Mapping[str, Sequence[object]] | None = None,
    *,
    jobs: int = 2,
    name: str | None = None,
    retries: int = 1,
    timeout: float | None = None,
    repo: Path | str = ".",
    progress: bool = True,
    poll_seconds: float = 3.0,
    on_poll: Callable[[list[Task]], None] | None = None,
) -> pd.DataFrame:
    """Run a sweep and return one row per experiment, best first.

    Args:
        preset: a preset of `sweeps.yaml`; `params` adds or replaces grid keys.
        params: `{param: [values]}`, swept as a Cartesian product (without a preset, alone).
        jobs: parallel queue workers (`dvc queue start -j`).
        name: experiment name prefix (`name-1`, ...); default `t<n>`, the next free numbers.
        retries: how many times to re-queue an experiment that failed for a reason other than
            its own input (a killed task, a DVC error). Input errors are never retried.
        timeout: seconds an experiment may run before it is killed (and retried); None: no limit.
        repo: any directory inside the project.
        progress: show a progress bar and event lines on stderr.
        poll_seconds: how often the queue is checked.
        on_poll: called with the tasks after each check (tests use it to inject faults).

    Returns:
        A DataFrame indexed by experiment name with `status`, `attempts`, `error`,
        `retried_after` (why earlier attempts failed), the swept params, and every metric
        (`val.f1`, `test.f1`, ...), best first; `best` marks the best success by `train.metric`
        on the validation split. `df.attrs` holds `metric`, `params`, `best`, `failed`.
    """
    if jobs < 1:
        raise UserError(f"jobs: must be at least 1 (got {jobs})")
    if retries < 0:
        raise UserError(f"retries: must be 0 or more (got {retries})")
    root = dvc_queue.find_root(repo)
    base = _read_params(root)
    grids, where = grids_for(preset, params, load_presets(root) if preset is not None else {})
    points, dropped = expand(grids, base, where)
    say = _printer(progress)
    if dropped:
        say(f"skipping {dropped} grid point(s) that train the same model as an earlier one")
    # DVC resolves the params file of `-S` against the working directory, not the repo.
    with contextlib.chdir(root), thread_budget(jobs), dvc_queue.held(root):
        names = names_for(root, len(points), name)
        tasks = [Task(n, p) for n, p in zip(names, points, strict=True)]
        sweep = Sweep(root, tasks, jobs, retries, timeout)
        sweep.start()
        preload()
        _wait(sweep, say, progress, poll_seconds, on_poll)
        sweep.forget_abandoned(say)
        return results(root, sweep.tasks, base)


@contextlib.contextmanager
def thread_budget(jobs: int) -> Iterator[None]:
    """Give each of `jobs` workers its share of the cores (`ML_PROJECT_THREADS`, read by every
    stage; see `threads.py`) for as long as the sweep starts workers. Queue workers inherit
    this process's environment, and the experiments and stages they run inherit theirs.
    A budget the user set (`ML_PROJECT_THREADS` or `OMP_NUM_THREADS`) is kept."""
    from ml_project.threads import ENV, per_worker

    if ENV in os.environ or "OMP_NUM_THREADS" in os.environ:
        yield
        return
    os.environ[ENV] = str(per_worker(jobs))
    try:
        yield
    finally:
        os.environ.pop(ENV, None)


def _read_params(root: Path) -> dict[str, Any]:
    from ml_project.params import read_params

    return read_params(root / PARAMS_FILE)


def _printer(progress: bool) -> Say:
    if not progress:
        return lambda message: None
    from tqdm.auto import tqdm

    return lambda message: tqdm.write(f"sweep: {message}", file=sys.stderr)


def _wait(
    sweep: Sweep,
    say: Say,
    progress: bool,
    poll_seconds: float,
    on_poll: Callable[[list[Task]], None] | None,
) -> None:
    from tqdm.auto import tqdm

    tasks = sweep.tasks
    with tqdm(
        total=len(tasks), desc="sweep", unit="exp", file=sys.stderr, disable=not progress
    ) as bar:
        while True:
            busy = sweep.poll(say)
            bar.update(sum(t.done for t in tasks) - bar.n)
            running = [t.name for t in tasks if t.status == "Running"]
            failed = sum(t.status == "Failed" for t in tasks)
            bar.set_postfix_str(f"running: {' '.join(running) or '-'}, failed: {failed}")
            if on_poll is not None:
                on_poll(tasks)
            if not busy:
                return
            dvc_queue.wait_for_change(sweep.root, poll_seconds)
