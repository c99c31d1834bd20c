"""The `optuna` tracker: inside a search trial, report the validation metric to the trial and
stop a trial the pruner gives up on.

It is active only in the train stage of an experiment that `python -m ml_project.search` queued:
the experiment's name `<study>-t<k>` says which study and trial it is, and the study's storage
is `ML_PROJECT_OPTUNA_STORAGE` (set by the search for the queue workers it starts), else
`$ML_PROJECT_SEARCH_STORAGE`, else the search's default journal file at the repository root.
Everything else the search decided (the metric, the pruner) is read from the study itself (its
user attrs `metric` and `pruner`), never from the environment: DVC's queue workers outlive a
search, and one started by an earlier search would otherwise run the next search's trials with
the earlier search's settings. Anywhere else (no such study) `from_params` returns None and the
tracker does nothing, so a normal run is unchanged.

Per step it reports `val/<metric>` with `trial.report`; when `trial.should_prune()` it raises
`StopFit`, which ends a torch model's training after the epoch with its best weights kept
(`models/base.py`); the run then finishes normally, with `train/stopped` in its metrics, and
the search marks the trial PRUNED. Models fitted in one call (boosting: its per-iteration curve
is logged after the fit) are reported but never stopped: the fit is already done, and stopping
the curve would only throw the finished model's score away.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV_STORAGE = "ML_PROJECT_OPTUNA_STORAGE"
# The search's own defaults for its storage (search/study.py), for workers it did not start.
ENV_SEARCH_STORAGE = "ML_PROJECT_SEARCH_STORAGE"
DEFAULT_FILE = "optuna.journal"
# Study user attrs the search records: what this tracker reports and how it prunes.
ATTR_METRIC = "metric"  # "val.<metric>"
ATTR_PRUNER = "pruner"  # make_pruner's settings
TRIAL_NAME = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]*)-t(\d+)")
# DVC's tags worth keeping on the trial, so the study leads to the exact experiment commit.
KEPT_TAGS = ("dvc.baseline_rev", "data_label", "data_version", "model")


def trial_of(environ: Mapping[str, str]) -> tuple[str, int] | None:
    """(study name, trial number) of the trial this process may serve, from `DVC_EXP_NAME` =
    `<study>-t<k>`; None for any other experiment name (or none)."""
    match = TRIAL_NAME.fullmatch(environ.get("DVC_EXP_NAME", ""))
    return (match.group(1), int(match.group(2))) if match else None


def storage_url(environ: Mapping[str, str]) -> str | None:
    """The storage of the search that queued this trial: the one it set for its workers, else
    the search's default (`$ML_PROJECT_SEARCH_STORAGE`, else the journal file at the root of
    the repository DVC runs the experiment for); None when there is none."""
    url = environ.get(ENV_STORAGE) or environ.get(ENV_SEARCH_STORAGE)
    root = environ.get("DVC_ROOT")
    if not url:
        journal = Path(root or ".") / DEFAULT_FILE
        return str(journal.resolve()) if root and journal.is_file() else None
    if "://" in url or Path(url).is_absolute():
        return url
    return str((Path(root or ".") / url).resolve())


def make_pruner(settings: Mapping[str, Any]):
    """`{"name": "median", **MedianPruner kwargs}` or `{"name": "none"}` -> an Optuna pruner
    (the search and every trial's tracker build the same one from the same settings)."""
    import optuna

    settings = dict(settings)
    if settings.pop("name", "median") == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(**settings)


def _storage(url: str):
    """The study's storage: a database URL, or the absolute path of a journal file."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if "://" in url:
        return optuna.storages.RDBStorage(url)
    return JournalStorage(JournalFileBackend(url))


def _per_epoch() -> bool:
    """Whether the model being trained fits epoch by epoch (and so can stop early)."""
    from ml_project.models import get_spec
    from ml_project.params import read_params

    with contextlib.suppress(Exception):
        return get_spec(str(read_params(Path("params.yaml")).get("model"))).per_epoch
    return False


class OptunaTracker:
    name = "optuna"
    # Required trackers start inline and take their calls on the stage's own thread (optional
    # ones run in the background), so `should_prune` is answered, and `StopFit` raised, before
    # the next epoch starts. Its own failures (the study's storage unreachable) are caught
    # here, warned about once, and never fail the run.
    required = True

    def __init__(self, trial, metric: str, prune: bool):
        self.trial, self.metric, self.prune = trial, metric, prune
        self.active = True
        self.pruned = False

    @classmethod
    def from_params(cls, params, run) -> OptunaTracker | None:
        trial_at, url = trial_of(os.environ), storage_url(os.environ)
        if trial_at is None or url is None or run.stage != "train":
            return None
        study_name, number = trial_at
        try:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            storage = _storage(url)
            try:
                study_id = storage.get_study_id_from_name(study_name)
                trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
            except KeyError:  # no such study or trial there: not a search trial
                return None
            if storage.get_trial(trial_id).state != optuna.trial.TrialState.RUNNING:
                return None  # a finished trial's experiment run again by hand
            attrs = storage.get_study_user_attrs(study_id)
            settings = dict(attrs.get(ATTR_PRUNER) or {"name": "median"})
            metric = str(attrs.get(ATTR_METRIC, "")).removeprefix("val.")
            study = optuna.load_study(
                study_name=study_name, storage=storage, pruner=make_pruner(settings)
            )
            trial = optuna.trial.Trial(study, trial_id)
        except Exception as exc:  # noqa: BLE001 - pruning is an optimisation, never a failure
            _warn(f"cannot reach trial {number} of the study, so it will not be pruned: {exc}")
            return None
        prune = settings.get("name") != "none" and _per_epoch()
        return cls(trial, metric, prune)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        value = metrics.get(f"val/{self.metric}")
        final = "train/stopped" in metrics or "train/best_epoch" in metrics  # not an epoch
        if not self.active or value is None or final:
            return
        try:
            self.trial.report(float(value), step)
            stop = self.prune and self.trial.should_prune()
        except Exception as exc:  # noqa: BLE001
            self.active = False
            _warn(f"reporting to the study failed; this trial will not be pruned: {exc}")
            return
        if stop:
            from ml_project.models.base import StopFit

            self.pruned = True
            raise StopFit(f"pruned by Optuna at step {step} (val/{self.metric} {value:.4g})")

    def set_tags(self, tags: Mapping[str, str]) -> None:
        with contextlib.suppress(Exception):
            for key in KEPT_TAGS:
                if tags.get(key):
                    self.trial.set_user_attr(key, str(tags[key]))

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        pass

    def log_artifact(self, path: Path, kind: str = "file") -> None:
        pass

    def log_model(self, model: Any, path: Path, input_example: Any) -> None:
        pass

    def close(self, status: str) -> None:
        pass  # the search tells the trial's outcome once the whole experiment has finished


def _warn(message: str) -> None:
    from ml_project.tracking import redact

    print(f"warning: tracker 'optuna': {redact(message)}", file=sys.stderr)
