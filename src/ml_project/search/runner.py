"""The search loop: ask Optuna for a trial, run it as a DVC experiment, tell Optuna the result.

Each trial is one queued `dvc exp run -S ...` named `<study>-t<k>`, k being the trial's number
in the study (unique across every machine sharing it). The trial records its experiment name
(user attr `dvc_exp`) and the experiment's name records the study and the trial. While a torch
trial trains, the `optuna` tracker of its train stage reports the validation metric per epoch
and ends training early (`StopFit`) when the pruner says so; the experiment still finishes,
its metrics then hold `train/stopped`, and the trial is told PRUNED here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_project.errors import UserError
from ml_project.search import queue as Q
from ml_project.search import space as S
from ml_project.search import study as St
from ml_project.search.presets import PRUNERS, SAMPLERS, SearchPreset, load_search
from ml_project.sweeps import dvc_queue
from ml_project.tracking.optuna_tracker import ENV_STORAGE

if TYPE_CHECKING:
    import pandas as pd

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
GRID_PARAM = "grid_point"
# A queue entry "Running" while no worker is alive this long is lost (the worker died).
ORPHAN_SECONDS = 60.0


@dataclass
class Running:
    number: int
    trial_id: int
    name: str
    point: dict[str, Any]
    rev: str
    started: float = field(default_factory=time.monotonic)
    orphaned: float | None = None
    attempt: int = 1


@dataclass
class Outcome:
    number: int
    name: str
    point: dict[str, Any]
    state: str  # complete | pruned | failed
    value: float | None = None
    error: str = ""
    seconds: float = 0.0


def pruner_settings(name: str, trials: int) -> dict[str, Any]:
    """The median pruner, started after a few complete trials (5 by default, fewer for a small
    budget so it acts at all) and a few epochs (a first epoch says little)."""
    if name == "none":
        return {"name": "none"}
    return {
        "name": "median",
        "n_startup_trials": max(1, min(5, trials // 4)),
        "n_warmup_steps": 3,
    }


def _sampler(name: str, seed: int | None, grid_size: int):
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":

        class AskTellGrid(optuna.samplers.GridSampler):
            """Optuna's grid sampler (trial k gets grid point k), minus its `study.stop()`
            once the grid is done, which Optuna allows only inside `optimize`: the budget (the
            grid's size) ends an ask-and-tell search."""

            def after_trial(self, study, trial, state, values) -> None:
                pass

        return AskTellGrid({GRID_PARAM: list(range(grid_size))}, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def selection(root: Path, base: Mapping[str, Any], space: S.Space, direction: str):
    """(metric name, direction): `train.metric` (its task's standard one when `auto`) and the
    direction it implies, unless the preset says otherwise."""
    from ml_project.metrics import METRICS
    from ml_project.params import STANDARD_METRIC

    if "train.metric" in S.keys(space) or "data.task" in S.keys(space):
        raise UserError("train.metric and data.task cannot be searched: they define the score")
    metric = str((base.get("train") or {}).get("metric", "auto"))
    if metric == "auto":
        metric = STANDARD_METRIC[_task(root, base)]
    if metric not in METRICS:
        raise UserError(f"train.metric: unknown metric '{metric}' (valid: {', '.join(METRICS)})")
    if direction == "auto":
        direction = "maximize" if METRICS[metric].greater_is_better else "minimize"
    return metric, direction


def _task(root: Path, base: Mapping[str, Any]) -> str:
    """The data's task: `data.task`, else the processed data's, else inferred from the source."""
    from ml_project.params import DataParams, section

    data = section(base, "data", DataParams)
    if data.task != "auto":
        return data.task
    with contextlib.suppress(Exception):
        from ml_project.data import read_manifest

        return read_manifest(root / "data/processed").task
    from ml_project.data import infer_task, load_source

    with contextlib.chdir(root):
        frame, target = load_source(data)
        return infer_task(frame, target, data)[0]


@contextlib.contextmanager
def _trial_env(values: Mapping[str, str]):
    """The study's storage for the trials' `optuna` tracker: the queue workers started
    meanwhile inherit it (and keep it after the search: the tracker reads everything else from
    the study its trial names)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Search:
    """One machine's share of a study: up to `jobs` trials at once until the budget is used."""

    def __init__(self, root, preset, study, storage, url, budget, jobs, metric, push, say):
        self.root, self.preset, self.study, self.storage = root, preset, study, storage
        self.url, self.budget, self.jobs, self.metric = url, budget, jobs, metric
        self.push, self.say = push, say
        self.active: dict[str, Running] = {}
        # The train stage's dvclive metrics: `val/<metric>` and, when pruned, `train/stopped`.
        self.metrics_file = "dvclive/train/metrics.json"
        self.done: list[Outcome] = []
        self.exhausted = False

    # ------------------------------------------------------------------ asking
    def _ask(self):
        """A new trial while the study holds fewer than the budget (all machines), else None."""
        with St.budget_lock(self.storage, self.url, self.study.study_name):
            stale = St.fail_stale(self.study, self.storage, self.url)
            if stale:
                self.say(f"failed {len(stale)} stale trial(s) no machine runs any more: {stale}")
            if len(self.study.get_trials(deepcopy=False)) >= self.budget:
                return None
            return self.study.ask()

    def _point(self, trial) -> dict[str, Any]:
        if self.preset.grid:
            return dict(
                self.preset.grid[
                    trial.suggest_categorical(GRID_PARAM, list(range(len(self.preset.grid))))
                ]
            )
        return S.sample(self.preset.space, trial)

    def launch(self, queue) -> bool:
        trial = self._ask()
        if trial is None:
            self.exhausted = True
            return False
        name = f"{self.study.study_name}-t{trial.number}"
        try:
            point = self._point(trial)
            for key, value in {"dvc_exp": name, "params": json.dumps(point), **St.owner()}.items():
                trial.set_user_attr(key, value)
            rev = Q.queue_trial(queue, name, point)
        except Exception as exc:
            from ml_project.tracking import describe

            reason = f"could not queue: {describe(exc)}"
            self._tell(trial.number, trial._trial_id, "failed", None, reason)
            self.done.append(Outcome(trial.number, name, {}, "failed", error=reason))
            self.say(f"{name}: {reason}")
            return True
        self.active[rev] = Running(trial.number, trial._trial_id, name, point, rev)
        return True

    # ------------------------------------------------------------------ telling
    def _tell(self, number: int, trial_id: int, state: str, value, error: str = "") -> None:
        from optuna.trial import TrialState

        if error:
            self.storage.set_trial_user_attr(trial_id, "error", error)
        if state == "complete":
            self.study.tell(number, value, skip_if_finished=True)
        else:
            kind = TrialState.PRUNED if state == "pruned" else TrialState.FAIL
            self.study.tell(number, state=kind, skip_if_finished=True)

    def finish(self, queue, run: Running, status: str) -> None:
        from ml_project.sweeps import failure_reason

        seconds = time.monotonic() - run.started
        value, state, error = None, "failed", ""
        if status == "Success":
            commit = Q.experiment_commit(self.root, run.name)
            shown = Q.metrics(self.root, commit, self.metrics_file) if commit else {}
            value = shown.get(f"val.{self.metric}")
            if shown.get("train.stopped"):
                state = "pruned"
                self.storage.set_trial_user_attr(run.trial_id, "stopped_value", value)
            elif value is None:
                error = f"error: its metrics hold no val.{self.metric}"
            else:
                state = "complete"
        else:
            error = failure_reason(queue.log(run.rev))[0]
        self._tell(run.number, run.trial_id, state, value, error)
        self.done.append(Outcome(run.number, run.name, run.point, state, value, error, seconds))
        shown_value = "-" if value is None else f"{value:.4f}"
        self.say(f"{run.name}: {state}, val.{self.metric} {shown_value} ({seconds:.0f}s)")
        if self.push and status == "Success":
            problem = Q.push(self.root, self.push, run.name)
            if problem:
                self.storage.set_trial_user_attr(run.trial_id, "push_error", problem)
                self.say(f"{run.name}: dvc exp push {self.push} failed: {problem}")

    # ------------------------------------------------------------------ the loop
    def poll(self) -> bool:
        """Fill free slots, collect finished trials; True while anything is left to do."""
        from ml_project.sweeps.dvc_queue import open_queue

        with contextlib.chdir(self.root), open_queue(self.root) as queue:
            while len(self.active) < self.jobs and not self.exhausted and self.launch(queue):
                pass
            if self.active:
                Q.ensure_workers(queue, self.root, self.jobs)
            status = queue.status(self.active)
            now = time.monotonic()
            for rev, run in list(self.active.items()):
                state = status.get(rev, "Queued")
                if state in ("Success", "Failed"):
                    del self.active[rev]
                    self.finish(queue, run, state)
                    continue
                # DVC can report a task running after the worker that took it died (or exited
                # as the queue looked empty): nothing would ever run or end it, and the workers
                # started meanwhile never get it. Lost once its own process has been missing
                # for ORPHAN_SECONDS, whatever other workers do; queued again once.
                lost = state == "Running" and not queue.running(rev)
                run.orphaned = (run.orphaned or now) if lost else None
                if run.orphaned and now - run.orphaned > ORPHAN_SECONDS:
                    del self.active[rev]
                    self._requeue_or_fail(queue, run)
            if St.is_server(self.url):
                for run in self.active.values():
                    self.storage.record_heartbeat(run.trial_id)
        return bool(self.active) or not self.exhausted

    def _requeue_or_fail(self, queue, run: Running) -> None:
        reason = "lost: the queue reports it running but nothing is running it"
        queue.discard([run.rev], timeout=30.0)
        if run.attempt == 1:
            try:
                rev = Q.queue_trial(queue, run.name, run.point)
            except Exception as exc:  # noqa: BLE001 - reported as the trial's failure
                from ml_project.tracking import describe

                reason = f"{reason}; could not queue it again: {describe(exc)}"
            else:
                self.active[rev] = Running(
                    run.number, run.trial_id, run.name, run.point, rev, attempt=2
                )
                self.say(f"{run.name}: {reason}; queued again")
                return
        self._tell(run.number, run.trial_id, "failed", None, reason)
        self.done.append(Outcome(run.number, run.name, run.point, "failed", None, reason))
        self.say(f"{run.name}: {reason}")


def _printer(progress: bool) -> Callable[[str], None]:
    if not progress:
        return lambda message: None
    from tqdm.auto import tqdm

    return lambda message: tqdm.write(f"search: {message}", file=sys.stderr)


def run_search(
    preset: str,
    *,
    trials: int | None = None,
    jobs: int = 2,
    study: str | None = None,
    storage: str | None = None,
    sampler: str | None = None,
    pruner: str | None = None,
    push: str | None = None,
    seed: int | None = None,
    repo: Path | str = ".",
    progress: bool = True,
    poll_seconds: float = 2.0,
) -> pd.DataFrame:
    """Run (or join) the Optuna study of a `sweeps.yaml` preset; every trial a DVC experiment.

    Args:
        preset: a search of `sweeps.yaml`'s `searches:`, or a grid preset (grid sampler).
        trials: the study's budget, all machines together (default: the preset's; a grid's size).
        jobs: trials run at once on this machine (DVC queue workers).
        study: the study's name (default: the preset's); trials are `<study>-t<k>`.
        storage: a database URL shared by many machines, or a journal file path; default
            `$ML_PROJECT_SEARCH_STORAGE`, else `optuna.journal` at the repository root.
        sampler: tpe | random | grid (default: the preset's).
        pruner: median | none (default: the preset's).
        push: a git remote to `dvc exp push` each finished trial to (default: `origin` when the
            storage is a database server, so other machines can pull the trials; else none).
        seed: the sampler's seed.
        repo: any directory inside the project.
        progress: progress bar and event lines on stderr.
        poll_seconds: how often the queue is checked.

    Returns:
        One row per trial this machine ran, best first, like the grid command's results plus
        `trial` and `state` (complete, pruned, failed); `df.attrs` holds `metric`, `params`,
        `best` (the study's best trial, maybe another machine's), `replay`, `study`,
        `storage` and `failed`.
    """
    from ml_project.params import read_params
    from ml_project.sweeps import PARAMS_FILE, thread_budget
    from ml_project.sweeps.dvc_queue import find_root

    if jobs < 1:
        raise UserError(f"jobs: must be at least 1 (got {jobs})")
    if trials is not None and trials < 1:
        raise UserError(f"trials: must be at least 1 (got {trials})")
    for value, valid, what in ((sampler, SAMPLERS, "sampler"), (pruner, PRUNERS, "pruner")):
        if value is not None and value not in valid:
            raise UserError(f"{what}: '{value}' is not one of {', '.join(valid)}")
    root = find_root(repo)
    base = read_params(root / PARAMS_FILE)
    spec = load_search(root, preset, base)
    if sampler == "grid" and not spec.grid:
        where = f"sweeps.yaml: searches: {preset}"
        spec = SearchPreset(**{**spec.__dict__, "grid": tuple(S.grid_points(spec.space, where))})
    elif sampler not in (None, "grid") and not spec.space:
        raise UserError(f"{preset}: a grid preset runs with the grid sampler only")
    kind = "grid" if spec.grid and sampler in (None, "grid") else (sampler or spec.sampler)
    if kind != "grid":
        spec = SearchPreset(**{**spec.__dict__, "grid": ()})
    budget = trials or spec.trials or len(spec.grid)
    if spec.grid and budget > len(spec.grid):
        budget = len(spec.grid)
    study_name = study or preset
    if not NAME.fullmatch(study_name):
        raise UserError(f"--study '{study_name}': use letters, digits, '.', '_' and '-'")
    metric, direction = selection(root, base, spec.space, spec.direction)
    url = St.resolve_url(storage, root)
    store = St.open_storage(url)
    prune = pruner_settings(pruner or spec.pruner, budget)
    opened = St.open_study(
        store,
        study_name,
        direction,
        f"val.{metric}",
        _sampler(kind, seed, len(spec.grid)),
        prune,  # recorded on the study: the trials' tracker prunes as it says
    )
    if push is None and St.is_server(url) and _has_remote(root, "origin"):
        push = "origin"

    say = _printer(progress)
    stale = St.fail_stale(opened, store, url)
    if stale:
        say(f"failed {len(stale)} stale trial(s) no machine runs any more: {stale}")
    search = Search(root, spec, opened, store, url, budget, jobs, metric, push, say)
    env = {ENV_STORAGE: url}
    say(
        f"study '{study_name}' in {St.shown(url)}: {direction} val.{metric}, {kind} sampler, "
        f"budget {budget} trial(s), {jobs} at a time here"
    )
    with contextlib.chdir(root), thread_budget(jobs), _trial_env(env), dvc_queue.held(root):
        _wait(search, progress, poll_seconds)
    return results(root, base, search)


def _has_remote(root: Path, name: str) -> bool:
    import subprocess

    remotes = subprocess.run(["git", "remote"], cwd=root, capture_output=True, text=True).stdout
    return name in remotes.split()


def _wait(search: Search, progress: bool, poll_seconds: float) -> None:
    from tqdm.auto import tqdm

    with tqdm(
        total=search.budget, desc="search", unit="trial", file=sys.stderr, disable=not progress
    ) as bar:
        while True:
            busy = search.poll()
            total = len(search.study.get_trials(deepcopy=False, states=_finished()))
            bar.update(min(total, search.budget) - bar.n)
            running = " ".join(r.name for r in search.active.values()) or "-"
            pruned = sum(o.state == "pruned" for o in search.done)
            failed = sum(o.state == "failed" for o in search.done)
            bar.set_postfix_str(f"running: {running}, pruned: {pruned}, failed: {failed}")
            if not busy:
                return
            dvc_queue.wait_for_change(search.root, poll_seconds)  # early when a trial ends


def _finished():
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def results(root: Path, base: Mapping[str, Any], search: Search) -> pd.DataFrame:
    """The grid command's results table for this machine's trials, plus `trial` and `state`;
    `best` is the study's best complete trial (possibly run by another machine)."""
    from ml_project.sweeps import Task
    from ml_project.sweeps import results as sweep_results

    outcomes = sorted(search.done, key=lambda o: o.number)
    tasks = [
        Task(o.name, o.point, status="Failed" if o.state == "failed" else "Success", error=o.error)
        for o in outcomes
    ]
    frame = sweep_results(root, tasks, base) if tasks else _empty()
    if tasks:
        by_name = {o.name: o for o in outcomes}
        frame.insert(0, "trial", [by_name[n].number for n in frame.index])
        frame.insert(1, "state", [by_name[n].state for n in frame.index])
        frame.loc[frame["state"] == "pruned", "status"] = "pruned"
        frame["best"] = False
    best = None
    with contextlib.suppress(ValueError):  # no complete trial yet
        best = search.study.best_trial.user_attrs.get("dvc_exp")
    if best in frame.index:
        frame.loc[best, "best"] = True
    frame.attrs.update(
        metric=f"val.{search.metric}",
        best=best,
        replay=_replay(best, best in frame.index, search.push),
        study=search.study.study_name,
        storage=St.shown(search.url),
        failed={o.name: o.error for o in outcomes if o.state == "failed"},
        budget=search.budget,
    )
    frame.attrs.setdefault("params", [])
    return frame


def _replay(best: str | None, local: bool, push: str | None) -> str:
    if not best:
        return ""
    pull = "" if local else f"dvc exp pull {push or 'origin'} {best} && "
    return f"{pull}dvc exp apply {best} && dvc repro"


def _empty():
    import pandas as pd

    frame = pd.DataFrame(columns=["trial", "state", "status", "error", "best"])
    frame.index.name = "experiment"
    return frame


def table(frame: pd.DataFrame) -> str:
    """The grid command's comparison (best starred, the params that vary, selection and test
    metric, status) with the trial number; a pruned trial shows its early-stopped model's."""
    if frame.empty:
        return "(no trial ran on this machine)"
    metric = frame.attrs.get("metric", "")
    metrics = [c for c in (metric, metric.replace("val.", "test.", 1)) if c in frame]
    swept = frame.attrs.get("params", [])
    varied = [c for c in swept if c in frame and frame[c].astype(str).nunique() > 1] or [
        c for c in swept if c in frame
    ]
    shown = frame[["trial", *varied, *metrics]].copy()
    shown.insert(0, "best", ["*" if b else "" for b in frame["best"]])
    shown["status"] = [
        s if s in ("success", "pruned") else f"FAILED: {e}"[:120]
        for s, e in zip(frame["status"], frame["error"], strict=True)
    ]
    return shown.to_string(float_format=lambda v: f"{v:.4f}", na_rep="-")
