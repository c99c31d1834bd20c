"""The search's parts without running experiments: spaces, presets and their one-line errors
through the real command (exit 2, nothing queued, no study made), the storage checks, the
budget lock under racing processes, and the optuna tracker against a real study."""

from __future__ import annotations

import multiprocessing
import re
import subprocess
from pathlib import Path

import optuna
import pytest
import yaml

from ml_project.errors import UserError
from ml_project.params import read_params
from ml_project.search import space as S
from ml_project.search import study as St
from ml_project.search.presets import load_search
from ml_project.tracking.optuna_tracker import (
    ATTR_PRUNER,
    ENV_SEARCH_STORAGE,
    ENV_STORAGE,
    OptunaTracker,
    make_pruner,
    trial_of,
)
from tests.helpers.project import ROOT, make_project

PARAMS = read_params(ROOT / "params.yaml")
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _space(raw):
    space = S.parse_space(raw, "s")
    S.check(space, PARAMS, "s")
    return space


# --------------------------------------------------------------------------- spaces


def test_conditional_space_samples_only_the_chosen_models_hyperparameters():
    space = _space(
        {
            "model": {
                "mlp": {"models.mlp.lr": {"low": 1e-4, "high": 1e-2, "log": True}},
                "hgb": {"models.hgb.max_leaf_nodes": {"low": 4, "high": 64}},
                "linear": None,
            },
            "models.mlp.hidden_sizes": [[64], [128, 64]],
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        point = S.sample(space, trial)
        study.tell(trial, 0.0)
        seen.add(point["model"])
        own = {k for k in point if k.startswith("models.") and k != "models.mlp.hidden_sizes"}
        assert own <= {f"models.{point['model']}.lr", f"models.{point['model']}.max_leaf_nodes"}
        assert point["models.mlp.hidden_sizes"] in ([64], [128, 64])  # lists pass through JSON
        if point["model"] == "hgb":
            assert isinstance(point["models.hgb.max_leaf_nodes"], int)
            assert 4 <= point["models.hgb.max_leaf_nodes"] <= 64
        if point["model"] == "mlp":
            assert 1e-4 <= point["models.mlp.lr"] <= 1e-2
    assert seen == {"mlp", "hgb", "linear"}


def test_grid_points_expand_choices_branches_and_int_ranges():
    space = _space(
        {
            "model": {"hgb": {"models.hgb.max_leaf_nodes": {"low": 8, "high": 24, "step": 8}}},
            "train.seed": [1, 2],
        }
    )
    points = S.grid_points(space, "s")
    assert len(points) == 6
    assert {p["models.hgb.max_leaf_nodes"] for p in points} == {8, 16, 24}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"models.hgb.learning_rate": {"low": 0.5, "high": 0.1}}, "low (0.5) must be below high"),
        ({"models.hgb.learning_rate": {"low": 0, "high": 1, "log": True}}, "needs low > 0"),
        ({"models.hgb.learning_rate": {"low": 0.1, "high": 1, "lg": True}}, "unknown key 'lg'"),
        ({"models.hgb.learning_rate": {"low": "a", "high": 1}}, "must be numbers"),
        ({"models.hgb.learning_rate": []}, "no values to choose from"),
        ({"models.hgb.learing_rate": [0.1]}, "not a param in params.yaml"),
        ({"model": {"mlp": {"models.hgb.max_iter": [5]}}}, "another model's hyperparameter"),
        ({"model": ["hgb", "xgb"]}, "unknown model 'xgb'"),
    ],
)
def test_unsampleable_spaces_are_one_line_errors(raw, message):
    with pytest.raises(UserError, match=re.escape(message)) as info:
        _space(raw)
    assert "\n" not in str(info.value)


def test_grid_presets_run_as_grid_searches():
    preset = load_search(ROOT, "hgb-lr", PARAMS)
    assert preset.sampler == "grid" and len(preset.grid) == 6


# --------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project copy with a few searches (no pipeline run: these fail before any)."""
    repo = make_project(tmp_path_factory.mktemp("search"))
    presets = yaml.safe_load((repo / "sweeps.yaml").read_text())
    presets["searches"] = {
        "ok": {"trials": 2, "space": {"models.hgb.learning_rate": {"low": 0.01, "high": 0.3}}},
        "typo": {"trials": 2, "space": {"models.hgb.max_leafs": {"low": 2, "high": 8}}},
        "flat": {"trials": 2, "space": {"models.hgb.learning_rate": {"low": 0.3, "high": 0.3}}},
        "floats": {
            "sampler": "grid",
            "space": {"models.hgb.learning_rate": {"low": 0.01, "high": 0.3}},
        },
    }
    (repo / "sweeps.yaml").write_text(yaml.safe_dump(presets, sort_keys=False))
    return repo


def _search(repo: Path, *args: str, capsys, monkeypatch) -> tuple[int, str]:
    """The real command, in this process (imports paid once): (exit status, stderr)."""
    from ml_project.search.__main__ import main

    monkeypatch.chdir(repo)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    return exited.value.code, capsys.readouterr().err


def _nothing_queued(repo: Path) -> None:
    refs = subprocess.run(
        ["git", "for-each-ref", "refs/exps/"], cwd=repo, capture_output=True, text=True
    ).stdout
    assert refs == ""
    assert not (repo / ".dvc/tmp/exps/celery").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "error: unknown search 'nope' (valid: "),
        (
            ["typo"],
            "error: sweeps.yaml: searches: typo: models.hgb.max_leafs: not a param in params.yaml",
        ),
        (["flat"], "error: sweeps.yaml: searches: flat: space: models.hgb.learning_rate: low"),
        (
            ["floats"],
            "error: sweeps.yaml: searches: floats: models.hgb.learning_rate: the grid sampler "
            "needs values to list, not a float range",
        ),
        (["ok", "--trials", "0"], "error: trials: must be at least 1 (got 0)"),
        (["ok", "--study", "a b"], "error: --study 'a b': use letters, digits"),
        (
            ["ok", "--storage", "postgresql://search:s3cret@127.0.0.1:1/optuna"],
            "error: --storage postgresql://search:***@127.0.0.1:1/optuna: cannot open the study",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_queued(
    project, args, message, capsys, monkeypatch
):
    status, err = _search(project, *args, capsys=capsys, monkeypatch=monkeypatch)
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), err
    assert "s3cret" not in err
    _nothing_queued(project)
    assert not (project / St.DEFAULT_FILE).exists()


def test_list_shows_searches_and_grid_presets(project, capsys, monkeypatch):
    from ml_project.search.__main__ import main

    monkeypatch.chdir(project)
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["ok", "2", "trial(s),", "tpe"]
    assert any(line.split()[:2] == ["hgb-lr", "grid"] for line in lines)


def test_a_study_made_for_the_other_direction_is_refused(project, capsys, monkeypatch):
    import yaml

    from ml_project.search.runner import selection

    # The project's own direction (a generated regression project minimizes rmse).
    base = yaml.safe_load((project / "params.yaml").read_text())
    metric, ours = selection(project, base, (), "auto")
    other = "minimize" if ours == "maximize" else "maximize"
    storage = project / "other.journal"
    optuna.create_study(storage=St.open_storage(str(storage)), study_name="ok", direction=other)
    status, err = _search(
        project, "ok", "--storage", str(storage), capsys=capsys, monkeypatch=monkeypatch
    )
    assert status == 2
    assert err.strip() == (
        f"error: study 'ok' was created to {other} but this search would {ours} val.{metric}; "
        "use another --study name"
    )
    _nothing_queued(project)
    reloaded = optuna.load_study(study_name="ok", storage=St.open_storage(str(storage)))
    assert reloaded.trials == []


# --------------------------------------------------------------------------- the budget


def _ask_until_budget(url: str, budget: int, barrier, made) -> None:
    storage = St.open_storage(url)
    study = optuna.load_study(study_name="race", storage=storage)
    barrier.wait()
    while True:
        with St.budget_lock(storage, url, "race"):
            if len(study.get_trials(deepcopy=False)) >= budget:
                return
            study.ask()
            with made.get_lock():
                made.value += 1


def test_racing_processes_make_exactly_the_budget(tmp_path):
    url = str(tmp_path / "race.journal")
    optuna.create_study(storage=St.open_storage(url), study_name="race")
    ctx = multiprocessing.get_context("fork")
    barrier, made = ctx.Barrier(4), ctx.Value("i", 0)
    procs = [ctx.Process(target=_ask_until_budget, args=(url, 12, barrier, made)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    study = optuna.load_study(study_name="race", storage=St.open_storage(url))
    assert made.value == 12 and len(study.trials) == 12
    assert sorted(t.number for t in study.trials) == list(range(12))


# --------------------------------------------------------------------------- the tracker


def test_tracker_is_inert_outside_a_trial(tmp_path, monkeypatch):
    from ml_project.tracking import RunInfo

    for var in (ENV_STORAGE, ENV_SEARCH_STORAGE, "DVC_EXP_NAME", "DVC_ROOT"):
        monkeypatch.delenv(var, raising=False)
    assert OptunaTracker.from_params(None, RunInfo(stage="train", root=ROOT)) is None
    assert trial_of({"DVC_EXP_NAME": "s-t7"}) == ("s", 7)
    assert trial_of({"DVC_EXP_NAME": "my-study-t2-t7"}) == ("my-study-t2", 7)
    assert trial_of({"DVC_EXP_NAME": "t7"}) is None  # a normal experiment
    assert trial_of({"DVC_EXP_NAME": "s-t"}) is None
    # A `<name>-t<k>` experiment whose study the storage does not hold is no trial: no warning.
    url = str(tmp_path / "other.journal")
    study = optuna.create_study(storage=St.open_storage(url), study_name="s")
    study.tell(study.ask(), 1.0)
    monkeypatch.setenv(ENV_STORAGE, url)
    for name in ("other-t7", "s-t1", "s-t0"):  # no such study, no such trial, a finished one
        monkeypatch.setenv("DVC_EXP_NAME", name)
        assert OptunaTracker.from_params(None, RunInfo(stage="train", root=tmp_path)) is None


def _study_with_a_trial_to_serve(url: str, name: str, pruner: dict):
    """A study as the search leaves it (metric and pruner recorded), with two finished trials
    that scored 0.9 at every epoch and trial 2 asked: the one the train stage serves."""
    study = optuna.create_study(storage=St.open_storage(url), study_name=name, direction="maximize")
    study.set_user_attr("metric", "val.f1")
    study.set_user_attr(ATTR_PRUNER, pruner)
    for _ in range(2):
        trial = study.ask()
        for step in range(6):
            trial.report(0.9, step)
        study.tell(trial, 0.9)
    study.ask()
    return study


def _serve(tmp_path, name: str):
    from ml_project.tracking import RunInfo

    (tmp_path / "params.yaml").write_text("model: mlp\n")  # a per-epoch model
    return OptunaTracker.from_params(None, RunInfo(stage="train", root=tmp_path))


MEDIAN = {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 2}


def test_tracker_reports_each_step_and_stops_a_trial_the_pruner_gives_up_on(tmp_path, monkeypatch):
    from ml_project.models.base import StopFit

    url = str(tmp_path / "prune.journal")
    _study_with_a_trial_to_serve(url, "p", MEDIAN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_STORAGE, url)
    monkeypatch.setenv("DVC_EXP_NAME", "p-t2")
    tracker = _serve(tmp_path, "p")
    assert tracker is not None and tracker.prune
    tracker.log_metrics({"val/f1": 0.5, "train/loss": 1.0}, 0)  # warm-up: never pruned
    tracker.log_metrics({"val/f1": 0.5}, 1)
    with pytest.raises(StopFit, match="pruned by Optuna at step 2"):
        tracker.log_metrics({"val/f1": 0.5}, 2)
    reported = optuna.load_study(study_name="p", storage=St.open_storage(url)).trials[2]
    assert reported.intermediate_values == {0: 0.5, 1: 0.5, 2: 0.5}


def test_tracker_prunes_as_its_trials_study_says_not_as_an_earlier_searchs_worker_env(
    tmp_path, monkeypatch
):
    """DVC's queue workers outlive a search: one started by a search of study `pruned` (median
    pruner) runs the next search's trials with that search's environment. A trial of study
    `unpruned` (no pruner) must still report every epoch and never be stopped, and the first
    study's trials still be pruned however the worker's environment came to be."""
    from ml_project.models.base import StopFit

    url = str(tmp_path / "optuna.journal")
    _study_with_a_trial_to_serve(url, "pruned", MEDIAN)
    _study_with_a_trial_to_serve(url, "unpruned", {"name": "none"})
    monkeypatch.chdir(tmp_path)
    # What a worker started by the search of `pruned` carried before this fix.
    monkeypatch.setenv(ENV_STORAGE, url)
    monkeypatch.setenv("ML_PROJECT_OPTUNA_STUDY", "pruned")
    monkeypatch.setenv("ML_PROJECT_OPTUNA_METRIC", "f1")
    monkeypatch.setenv("ML_PROJECT_OPTUNA_PRUNER", '{"name": "median", "n_startup_trials": 1}')
    monkeypatch.setenv("DVC_EXP_NAME", "unpruned-t2")
    tracker = _serve(tmp_path, "unpruned")
    assert tracker is not None and not tracker.prune
    for step in range(6):
        tracker.log_metrics({"val/f1": 0.1}, step)  # far below the others: never stopped
    served = optuna.load_study(study_name="unpruned", storage=St.open_storage(url)).trials[2]
    assert served.intermediate_values == dict.fromkeys(range(6), 0.1)

    # A worker started by no search (`dvc queue start`): the default journal at DVC's root.
    for var in (ENV_STORAGE, ENV_SEARCH_STORAGE, "ML_PROJECT_OPTUNA_STUDY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ML_PROJECT_OPTUNA_PRUNER", '{"name": "none"}')
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DVC_EXP_NAME", "pruned-t2")
    tracker = _serve(tmp_path, "pruned")
    assert tracker is not None and tracker.prune
    tracker.log_metrics({"val/f1": 0.5}, 0)
    tracker.log_metrics({"val/f1": 0.5}, 1)
    with pytest.raises(StopFit):
        tracker.log_metrics({"val/f1": 0.5}, 2)


def test_search_records_its_pruner_in_the_study_and_queues_trials_without_the_run_cache(
    tmp_path,
):
    """The tracker reads the pruner from the study (each search's own, the latest winning); and
    a trial is trained for real, never restored from DVC's run cache (another study's run of
    the same point would hand it that run's `train/stopped`, nothing reported to this trial)."""
    from types import SimpleNamespace

    from ml_project.search import queue as Q

    storage = St.open_storage(str(tmp_path / "s.journal"))
    for settings in (MEDIAN, {"name": "none"}):
        study = St.open_study(storage, "s", "maximize", "val.f1", None, settings)
        assert isinstance(study.pruner, type(make_pruner(settings)))
    assert optuna.load_study(study_name="s", storage=storage).user_attrs == {
        "metric": "val.f1",
        ATTR_PRUNER: {"name": "none"},
    }
    seen = {}

    def queue_one(queue, **kwargs):
        seen.update(kwargs, queue=queue)
        return SimpleNamespace(stash_rev="abc")

    from ml_project.sweeps.dvc_queue import Queue

    repo = SimpleNamespace(experiments=SimpleNamespace(queue_one=queue_one, celery_queue="q"))
    assert Q.queue_trial(Queue(repo, tmp_path), "s-t0", {"models.mlp.lr": 0.01}) == "abc"
    assert seen["run_cache"] is False and seen["name"] == "s-t0" and seen["queue"] == "q"
    assert seen["params"] == {"params.yaml": ["models.mlp.lr=0.01"]}
