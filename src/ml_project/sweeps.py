"""Sweeps: grids of params run through DVC's experiment queue, with readable names.

A sweep queues one DVC experiment per grid point (`dvc exp run --queue`), starts the queue's
workers, waits with a progress bar, and returns one row per experiment: its name, status,
the swept params and its metrics, the best one marked. Presets live in `sweeps.yaml`.

Experiments are named `t1`, `t2`, ... (the next free numbers across all experiments of the
repository) unless a name is given. DVC's parallel workers are not fully reliable, so the
waiting loop checks what it is told: workers that exit with work left are restarted, a task
that fails without a project `error:` line (a DVC or infrastructure failure, a killed
process) is queued again up to `retries` times, and the result always says which experiments
failed and why.

    python -m ml_project.sweeps list
    python -m ml_project.sweeps run hgb-lr -j 2
    python -m ml_project.sweeps run -S 'model=rf,hgb' -S 'models.hgb.learning_rate=0.05,0.1'
    dvc exp run -n $(python -m ml_project.sweeps next-name) -S model=rf   # one, named t<n>
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ml_project.errors import UserError, exits_on_user_error

if TYPE_CHECKING:
    import pandas as pd

PRESETS_FILE = "sweeps.yaml"
PARAMS_FILE = "params.yaml"
AUTO_NAME = re.compile(r"t(\d+)")
# A failed stage that printed one of these lines failed on its input: running it again
# cannot help. Anything else (DVC's own errors, a killed process, no log) may be transient.
USER_ERROR = re.compile(r"^error: .*", re.MULTILINE)
# A worker that has just been started is not in `worker_status()` for a few seconds.
WORKER_START_SECONDS = 30.0
# How long a task may be reported running while no worker runs anything before it is retried.
ORPHAN_SECONDS = 30.0
STAGE_FAILED = re.compile(r"^ERROR: failed to reproduce .*", re.MULTILINE)


# --------------------------------------------------------------------------- grids and presets


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    grids: tuple[dict[str, list[Any]], ...]  # the union of these grids' Cartesian products


def _as_grid(raw: Any, where: str) -> dict[str, list[Any]]:
    if not isinstance(raw, Mapping) or not raw:
        raise UserError(f"{where}: a grid is a mapping of param -> list of values")
    return {str(k): list(v) if isinstance(v, list) else [v] for k, v in raw.items()}


def load_presets(root: Path | str = ".") -> dict[str, Preset]:
    """Read `sweeps.yaml`: `name: {description: ..., grid: {param: [values]} | [grids]}`."""
    path = Path(root) / PRESETS_FILE
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise UserError(f"{PRESETS_FILE}: file not found in {Path(root).resolve()}") from None
    except yaml.YAMLError:
        raise UserError(f"{PRESETS_FILE}: not valid YAML") from None
    if not isinstance(raw, Mapping):
        raise UserError(f"{PRESETS_FILE}: expected a mapping of preset names")
    presets = {}
    for name, body in raw.items():
        where = f"{PRESETS_FILE}: {name}"
        if not isinstance(body, Mapping) or "grid" not in body:
            raise UserError(f"{where}: needs a 'grid' (and optionally a 'description')")
        unknown = sorted(set(body) - {"grid", "description"})
        if unknown:
            raise UserError(f"{where}: unknown key '{unknown[0]}' (valid keys: description, grid)")
        grids = body["grid"] if isinstance(body["grid"], list) else [body["grid"]]
        presets[str(name)] = Preset(
            str(name),
            str(body.get("description", "")),
            tuple(_as_grid(g, f"{where}: grid") for g in grids),
        )
    return presets


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and quotes: `a,[1, 2],'x,y'` -> 3 items."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items]


def parse_set_flags(flags: Iterable[str]) -> dict[str, list[Any]]:
    """`["model=rf,hgb", "models.hgb.max_iter=50"]` -> `{"model": ["rf", "hgb"], ...}`."""
    grid: dict[str, list[Any]] = {}
    for flag in flags:
        key, sep, values = flag.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise UserError(f"-S {flag!r}: expected key=value[,value...], e.g. -S 'model=rf,hgb'")
        grid[key.strip()] = [yaml.safe_load(v) for v in _split_top_level(values)]
    return grid


def check_keys(grid: Mapping[str, Any], params: Mapping[str, Any], where: str) -> None:
    """Every grid key must name one value in params.yaml; the error lists its siblings."""
    from ml_project.params import flatten

    flat = flatten(params)
    for key in grid:
        if key in flat:
            continue
        parent = key.rpartition(".")[0]
        siblings = sorted(
            {k[len(parent) + 1 :].split(".")[0] for k in flat if k.startswith(f"{parent}.")}
        )
        if not parent or not siblings:
            scope, siblings = "top-level keys", list(params)
        else:
            scope = f"keys under {parent}"
        raise UserError(
            f"{where}: {key}: not a param in {PARAMS_FILE} (valid {scope}: {', '.join(siblings)})"
        )


def _effective(point: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    """What the pipeline really trains: `models.<m>.*` only matters when `model` is `m`."""
    model = point.get("model", params.get("model"))
    kept = {
        k: v for k, v in point.items() if not (k.startswith("models.") and k.split(".")[1] != model)
    }
    return json.dumps(kept, sort_keys=True, default=str)


def expand(
    grids: Sequence[Mapping[str, list[Any]]], params: Mapping[str, Any], where: str
) -> tuple[list[dict[str, Any]], int]:
    """The grid points, in order, and how many were dropped as duplicates of an earlier one.

    A point that only differs in the hyperparameters of a model it does not train is the
    same experiment: DVC would restore it from the run-cache and no tracker would see a run.
    """
    points, seen, dropped = [], set(), 0
    for grid in grids:
        check_keys(grid, params, where)
        for values in itertools.product(*grid.values()):
            point = dict(zip(grid, values, strict=True))
            key = _effective(point, params)
            if key in seen:
                dropped += 1
                continue
            seen.add(key)
            points.append(point)
    return points, dropped


def override(key: str, value: Any) -> str:
    """One `-S key=value` for DVC (Hydra override syntax)."""
    if isinstance(value, str) and not re.fullmatch(r"[\w./-]+", value):
        return f"{key}='{value}'"
    return f"{key}={json.dumps(value) if not isinstance(value, str) else value}"


# --------------------------------------------------------------------------- names


def existing_names(root: Path) -> set[str]:
    """Names of every experiment in the repository, finished, queued, running or failed, and
    on its git remote when that is reachable (so two clones do not both make `t5`)."""
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/exps/"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    # refs/exps/<sha[:2]>/<sha[2:]>/<name>; celery/ and exec/ refs are DVC's own bookkeeping.
    names = {r.split("/", 4)[4] for r in refs if r.count("/") >= 4 and len(r.split("/")[2]) == 2}
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        queue = repo.experiments.celery_queue
        entries = [*queue.iter_queued(), *queue.iter_active()]
        entries += [entry for entry, _ in queue.iter_failed()]
    from ml_project.versions import remote_experiment_names  # the git remote's, if reachable

    return names | {e.name for e in entries if e.name} | set(remote_experiment_names(root))


def next_names(taken: Iterable[str], count: int) -> list[str]:
    """`count` fresh `t<n>` names above the highest one taken."""
    numbers = [int(m.group(1)) for n in taken if (m := AUTO_NAME.fullmatch(n))]
    start = max(numbers, default=0) + 1
    return [f"t{i}" for i in range(start, start + count)]


def names_for(root: Path, count: int, name: str | None) -> list[str]:
    taken = existing_names(root)
    if name is None:
        return next_names(taken, count)
    names = [name] if count == 1 else [f"{name}-{i}" for i in range(1, count + 1)]
    clash = sorted(set(names) & taken)
    if clash:
        raise UserError(f"--name: experiment '{clash[0]}' already exists; choose another name")
    return names


# --------------------------------------------------------------------------- the queue


@dataclass
class Task:
    name: str
    point: dict[str, Any]
    rev: str = ""  # the queue entry (stash commit); a retry gets a new one
    status: str = "Queued"  # Queued, Running, Success, Failed
    attempts: int = 1
    error: str = ""
    started: float | None = None
    orphaned: float | None = None  # since when it is "Running" with no worker alive
    notes: list[str] = field(default_factory=list)


def _log_text(queue, rev: str) -> str:
    try:
        return Path(queue.proc[rev].stdout).read_text(errors="replace")
    except (KeyError, OSError):
        return ""


def _proc_info(queue, rev: str) -> dict:
    """The experiment process of a queue entry: `{"pid", "returncode"}`, or {} before it starts."""
    try:
        return queue.proc[rev].asdict()
    except (KeyError, OSError, ValueError):
        return {}


def _read_json(path: Path | str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def _alive(proc: Mapping[str, Any]) -> bool:
    if not proc or proc.get("returncode") is not None:
        return False
    try:
        os.kill(proc["pid"], 0)
    except (OSError, KeyError, TypeError):
        return False
    return True


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
    """Queue the points, run them on `jobs` workers, watch until each has an outcome."""

    def __init__(
        self, root: Path, tasks: list[Task], jobs: int, retries: int, timeout: float | None
    ):
        self.root, self.tasks, self.jobs = root, tasks, jobs
        self.retries, self.timeout = retries, timeout
        self.workers_started = 0.0
        self.abandoned: list[str] = []  # queue entries of attempts that were retried

    def start_workers(self, queue) -> int:
        self.workers_started = time.monotonic()
        return queue.start_workers(self.jobs)

    def _repo(self):
        from dvc.repo import Repo

        return Repo(str(self.root))

    def _queue(self, repo, task: Task) -> None:
        params = [override(k, v) for k, v in task.point.items()]
        entry = repo.experiments.queue_one(
            repo.experiments.celery_queue, params={PARAMS_FILE: params}, name=task.name
        )
        task.rev, task.status, task.started, task.orphaned = entry.stash_rev, "Queued", None, None

    def queue_all(self) -> None:
        with self._repo() as repo:
            for task in self.tasks:
                self._queue(repo, task)

    def poll(self, say: Callable[[str], None]) -> bool:
        """Update every task; True while any is unfinished."""
        with self._repo() as repo:
            queue = repo.experiments.celery_queue
            status = {s["rev"]: s["status"] for s in queue.status()}
            workers = self.live_workers()
            settled = time.monotonic() - self.workers_started > WORKER_START_SECONDS
            for task in self.tasks:
                if task.status in ("Success", "Failed"):
                    continue
                task.status = status.get(task.rev, task.status)
                if task.status == "Running":
                    self._check_running(repo, queue, task, not workers and settled, say)
                elif task.status == "Failed":
                    self._retry_or_fail(
                        repo, queue, task, *failure_reason(_log_text(queue, task.rev)), say
                    )
            pending = [t for t in self.tasks if t.status in ("Queued", "Running")]
            # Workers exit when they see an empty queue; one that exits early (a known DVC
            # issue) or a retry queued after they left would otherwise leave work waiting.
            waiting = [t for t in pending if t.status == "Queued"]
            if waiting and workers < self.jobs and settled and self.start_workers(queue):
                say(f"restarted queue workers ({len(waiting)} experiment(s) waiting)")
        return bool(pending)

    def live_workers(self) -> int:
        """Queue worker processes alive, from their pid files (celery's own view can lag)."""
        infos = (self.root / ".dvc/tmp/exps/celery").glob("dvc-exp-worker-*.json")
        return sum(_alive(_read_json(info)) for info in infos)

    def _check_running(self, repo, queue, task: Task, no_worker: bool, say) -> None:
        now = time.monotonic()
        task.started = task.started or now
        # DVC can report a task as running after its worker has gone (the worker exited
        # early or was killed): nothing would ever finish or collect it. It is an orphan only
        # if no worker is alive and its own experiment process is not running either.
        no_worker = no_worker and not _alive(_proc_info(queue, task.rev))
        task.orphaned = (task.orphaned or now) if no_worker else None
        if task.orphaned and now - task.orphaned > ORPHAN_SECONDS:
            reason = "stuck: the queue reports it running but no worker is running it"
            self._retry_or_fail(repo, queue, task, reason, True, say)
        elif self.timeout is not None and now - task.started > self.timeout:
            with contextlib.suppress(Exception):
                queue.kill([task.rev], force=True)
            reason = f"killed: still running after {self.timeout:g}s (--timeout)"
            self._retry_or_fail(repo, queue, task, reason, True, say)

    def _retry_or_fail(self, repo, queue, task: Task, reason: str, transient: bool, say) -> None:
        if transient and task.attempts <= self.retries:
            say(f"{task.name}: {reason}; queueing it again")
            task.notes.append(reason)
            task.attempts += 1
            self.abandoned.append(task.rev)
            with contextlib.suppress(Exception):  # an orphan's process may still be running
                queue.proc.kill(task.rev)
            self._queue(repo, task)
            self.start_workers(queue)
            return
        task.status, task.error = "Failed", reason
        say(f"{task.name}: failed: {reason} (full log: dvc queue logs {task.name})")

    def forget_abandoned(self) -> None:
        """Drop the retried attempts from the queue, once nothing runs.

        Otherwise `dvc exp show` lists a second, failed (or forever running) row under the
        same name; the reason each attempt failed is kept in the sweep's results instead.
        An attempt whose worker died also leaves its temporary workspace behind.
        """
        if not self.abandoned:
            return
        with self._repo() as repo:
            queue = repo.experiments.celery_queue
            active = {e.stash_rev: e for e in queue.iter_active()}
            for rev in self.abandoned:
                if rev in active:
                    with contextlib.suppress(Exception):
                        queue._mark_inactive_tasks_failure({active[rev]: rev})
                with contextlib.suppress(Exception):
                    queue.remove([rev])
                workspace = Path(_read_json(queue.get_infofile_path(rev)).get("root_dir", "/"))
                if workspace.parent == self.root / ".dvc/tmp/exps":
                    shutil.rmtree(workspace, ignore_errors=True)


def run_sweep(
    preset: str | None = None,
    params: Mapping[str, Sequence[Any]] | None = None,
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
    from dvc.repo import Repo

    if jobs < 1:
        raise UserError(f"jobs: must be at least 1 (got {jobs})")
    if retries < 0:
        raise UserError(f"retries: must be 0 or more (got {retries})")
    root = Path(Repo.find_root(str(repo)))
    base = _read_params(root)
    if preset is not None:
        presets = load_presets(root)
        if preset not in presets:
            valid = ", ".join(presets) or "none defined"
            raise UserError(f"unknown preset '{preset}' (valid: {valid})")
        grids = [{**g, **(params or {})} for g in presets[preset].grids]
        where = f"{PRESETS_FILE}: {preset}"
    elif params:
        grids, where = [dict(params)], "-S"
    else:
        raise UserError("nothing to sweep: name a preset or give -S key=value[,value...]")
    for grid in grids:
        for key, values in grid.items():
            if not values:
                raise UserError(f"{where}: {key}: no values to sweep")
    points, dropped = expand(grids, base, where)

    say = _printer(progress)
    if dropped:
        say(f"skipping {dropped} grid point(s) that train the same model as an earlier one")
    names = names_for(root, len(points), name)
    tasks = [Task(n, p) for n, p in zip(names, points, strict=True)]
    sweep = Sweep(root, tasks, jobs, retries, timeout)
    # DVC resolves the params file of `-S` against the working directory, not the repo.
    with contextlib.chdir(root), thread_budget(jobs):
        sweep.queue_all()
        with sweep._repo() as r:
            sweep.start_workers(r.experiments.celery_queue)
        _wait(sweep, say, progress, poll_seconds, on_poll)
        sweep.forget_abandoned()
        return results(root, tasks, base)


@contextlib.contextmanager
def thread_budget(jobs: int):
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


def _printer(progress: bool) -> Callable[[str], None]:
    if not progress:
        return lambda message: None
    from tqdm.auto import tqdm

    return lambda message: tqdm.write(f"sweep: {message}", file=sys.stderr)


def _wait(sweep: Sweep, say, progress: bool, poll_seconds: float, on_poll) -> None:
    from tqdm.auto import tqdm

    tasks = sweep.tasks
    with tqdm(
        total=len(tasks), desc="sweep", unit="exp", file=sys.stderr, disable=not progress
    ) as bar:
        while True:
            busy = sweep.poll(say)
            done = sum(t.status in ("Success", "Failed") for t in tasks)
            bar.update(done - bar.n)
            running = [t.name for t in tasks if t.status == "Running"]
            failed = sum(t.status == "Failed" for t in tasks)
            bar.set_postfix_str(f"running: {' '.join(running) or '-'}, failed: {failed}")
            if on_poll is not None:
                on_poll(tasks)
            if not busy:
                return
            time.sleep(poll_seconds)


# --------------------------------------------------------------------------- results


def results(root: Path, tasks: list[Task], base: Mapping[str, Any]) -> pd.DataFrame:
    """One row per task; metrics from `dvc exp show` for the experiments that succeeded."""
    import dvc.api
    import pandas as pd

    from ml_project.metrics import METRICS
    from ml_project.params import flatten

    names = {t.name for t in tasks}
    param_keys = set(flatten(base))
    rows = {
        r["Experiment"]: r for r in dvc.api.exp_show(repo=str(root)) if r["Experiment"] in names
    }
    hidden = {"Experiment", "rev", "typ", "Created", "parent", "State", "Executor"}
    swept = list(dict.fromkeys(k for t in tasks for k in t.point))
    records = []
    for task in tasks:
        record: dict[str, Any] = {
            "experiment": task.name,
            "status": "success" if task.status == "Success" else "failed",
            "attempts": task.attempts,
            "error": task.error,
            "retried_after": "; ".join(task.notes),
        }
        record.update({k: task.point.get(k) for k in swept})
        shown = rows.get(task.name) if task.status == "Success" else None
        if shown:
            record.update(
                {k: v for k, v in shown.items() if k not in hidden and k not in param_keys}
            )
        records.append(record)
    frame = pd.DataFrame.from_records(records).set_index("experiment")

    metric = str(flatten(base).get("train.metric", ""))
    if metric == "auto":  # the data's task decides: its standard metric, whichever was logged
        from ml_project.params import STANDARD_METRIC

        metric = next((m for m in STANDARD_METRIC.values() if f"val.{m}" in frame), "")
    column = f"val.{metric}"
    higher = METRICS[metric].greater_is_better if metric in METRICS else True
    frame["best"] = False
    ok = frame[frame["status"] == "success"]
    if column in frame and ok[column].notna().any():
        best = ok[column].astype(float).idxmax() if higher else ok[column].astype(float).idxmin()
        frame.loc[best, "best"] = True
        frame = frame.sort_values(column, ascending=not higher, na_position="last", kind="stable")
    frame.attrs.update(
        metric=column,
        params=swept,
        best=frame.index[frame["best"]].tolist()[0] if frame["best"].any() else None,
        failed={t.name: t.error for t in tasks if t.status != "Success"},
    )
    return frame


def table(frame: pd.DataFrame) -> str:
    """The comparison: name (best starred), the params that vary, selection and test metric."""
    metric = frame.attrs.get("metric", "")
    metrics = [c for c in (metric, metric.replace("val.", "test.", 1)) if c in frame]
    swept = frame.attrs.get("params", [])
    varied = [c for c in swept if frame[c].astype(str).nunique() > 1] or swept
    shown = frame[[*varied, *metrics]].copy()
    shown.insert(0, "best", ["*" if b else "" for b in frame["best"]])
    status = [
        "success" if s == "success" else f"FAILED: {e}"
        for s, e in zip(frame["status"], frame["error"], strict=True)
    ]
    shown["status"] = [
        f"{s} (attempts: {n})" if n > 1 else s
        for s, n in zip(status, frame["attempts"], strict=True)
    ]
    return shown.to_string(float_format=lambda v: f"{v:.4f}", na_rep="-")


# --------------------------------------------------------------------------- CLI


class _Parser(argparse.ArgumentParser):
    """Bad arguments are a one-line `error:` like every other input error."""

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message}")


@exits_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m ml_project.sweeps", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="{list,run,next-name}")
    commands.add_parser("list", help="the presets of sweeps.yaml")
    commands.add_parser(
        "next-name", help="print the next free t<n>, e.g. dvc exp run -n $(... next-name)"
    )
    run = commands.add_parser("run", help="run a preset or a -S grid through the queue")
    run.add_argument("preset", nargs="?", help="a preset of sweeps.yaml")
    run.add_argument(
        "-S",
        "--set-param",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="sweep a param over comma-separated values (adds to or replaces the preset's)",
    )
    run.add_argument("-j", "--jobs", type=int, default=2, help="parallel workers (default 2)")
    run.add_argument("-n", "--name", help="name prefix (default: t1, t2, ...)")
    run.add_argument("--retries", type=int, default=1, help="re-queues of a transient failure")
    run.add_argument("--timeout", type=float, help="seconds before a running experiment is killed")
    args = parser.parse_args(argv)

    if args.command == "next-name":
        from dvc.repo import Repo

        root = Path(Repo.find_root())
        print(next_names(existing_names(root), 1)[0])
        return 0
    if args.command == "list":
        from dvc.repo import Repo

        for preset in load_presets(Repo.find_root()).values():
            size = sum(len(list(itertools.product(*g.values()))) for g in preset.grids)
            print(f"{preset.name:<16} {size:>3} experiment(s)  {preset.description}")
        return 0

    frame = run_sweep(
        args.preset,
        parse_set_flags(args.set_param) or None,
        jobs=args.jobs,
        name=args.name,
        retries=args.retries,
        timeout=args.timeout,
    )
    print(table(frame))
    failed = frame.attrs["failed"]
    best = frame.attrs["best"]
    succeeded = len(frame) - len(failed)
    print(
        f"\n{succeeded} of {len(frame)} succeeded; best by {frame.attrs['metric']}: {best or '-'}"
    )
    for task_name, reason in failed.items():
        print(f"failed: {task_name}: {reason}")
    if best:
        print(f"replay the best: dvc exp apply {best} && dvc repro")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
