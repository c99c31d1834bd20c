"""The real pipeline: `dvc repro` and `dvc exp run` in temporary git repos."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from tests.helpers.data import messy_frame
from tests.helpers.project import read_json, set_params, sh

pytestmark = pytest.mark.slow
STAGES = ("etl", "train", "evaluate", "export")


def ran(output: str) -> set[str]:
    return {s for s in STAGES if f"Running stage '{s}'" in output}


def test_default_pipeline_produces_finite_metrics(built):
    test = read_json(built / "evaluation/metrics.json")["test"]
    assert set(test) == {"accuracy", "f1", "roc_auc", "log_loss"}
    assert all(math.isfinite(v) for v in test.values())
    assert test["accuracy"] > 0.9
    curve = read_json(built / "dvclive/train/metrics.json")
    assert curve["step"] == 99 and curve["val"]["f1"] > 0.9
    assert "loss" in curve["val"] and "log_loss" not in curve["val"]  # one name for one number
    steps = (built / "dvclive/train/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert len(steps) == 101  # header + one row per boosting iteration
    parity = read_json(built / "export/parity.json")
    assert parity["onnx"]["max_abs_diff"] <= parity["onnx"]["atol"]
    assert parity["onnx"]["label_agreement"] == 1.0
    info = read_json(built / "models/train_info.json")
    manifest = read_json(built / "data/processed/manifest.json")
    assert info["data_version"] == manifest["data_version"] and info["model"] == "hgb"


def test_metrics_and_plots_commands_work(built, tmp_path):
    shown = sh("dvc metrics show", built).stdout
    assert "test.accuracy" in shown and "val.f1" in shown
    sh(f"dvc plots show -o {tmp_path / 'plots'}", built)
    html = (tmp_path / "plots/index.html").read_text()
    assert "confusion_matrix.json" in html and "val/f1" in html.replace("\\/", "/")


def test_second_repro_skips_every_stage(built):
    out = sh("dvc repro", built).stdout
    assert ran(out) == set()
    assert all(f"Stage '{s}' didn't change, skipping" in out for s in STAGES)


def test_etl_code_change_reruns_etl_and_model_param_change_does_not(untracked_repo):
    with open(untracked_repo / "src/ml_project/data.py", "a") as f:
        f.write("\n# a change to ETL code\n")
    assert "etl" in ran(sh("dvc repro", untracked_repo).stdout)

    set_params(untracked_repo, {"models.hgb.learning_rate": 0.2})
    out = sh("dvc repro", untracked_repo).stdout
    assert "etl" not in ran(out) and "train" in ran(out)

    # models.rf is not the active model's block: nothing to do.
    set_params(untracked_repo, {"models.rf.n_estimators": 50})
    assert ran(sh("dvc repro", untracked_repo).stdout) == set()


def test_exp_run_switches_model(untracked_repo):
    import dvc.api

    sh("dvc exp run -S model=rf", untracked_repo)
    assert read_json(untracked_repo / "models/train_info.json")["model"] == "rf"
    curve = read_json(untracked_repo / "dvclive/train/metrics.json")
    assert curve["step"] == 199  # one step per tree
    # The one experiment DVC recorded trained rf, with the metrics the workspace now holds;
    # the baseline commit still trains hgb.
    (exp,) = [r for r in dvc.api.exp_show(repo=str(untracked_repo)) if r["Experiment"]]
    assert exp["model"] == "rf"
    assert yaml.safe_load(sh("git show HEAD:params.yaml", untracked_repo).stdout)["model"] == "hgb"
    test = read_json(untracked_repo / "evaluation/metrics.json")["test"]
    assert exp["test.f1"] == pytest.approx(test["f1"], rel=1e-12)
    assert exp["step"] == curve["step"]
    # dvc.yaml declares every file dvclive writes, so nothing is left for `git add` (the
    # dvclive tracker skips dvclive's own end-of-run `git add` of undeclared files).
    status = sh("git status --porcelain --untracked-files=all", untracked_repo).stdout
    assert [line for line in status.splitlines() if line.startswith("??")] == []


def test_regression_on_bundled_diabetes(untracked_repo):
    sh(
        "dvc exp run -S data.source=diabetes -S data.task=regression -S train.metric=rmse",
        untracked_repo,
    )
    test = read_json(untracked_repo / "evaluation/metrics.json")["test"]
    assert set(test) == {"rmse", "mae", "r2"} and test["r2"] > 0.2
    assert sorted(p.name for p in (untracked_repo / "evaluation/plots").iterdir()) == [
        "predicted_vs_actual.json",
        "residuals.json",
    ]


def test_messy_csv_through_pipeline_and_predict(untracked_repo):
    frame = messy_frame(300)
    frame.to_csv(untracked_repo / "data/raw/messy.csv", index=False)
    sh("git add data/raw/messy.csv", untracked_repo)
    sh("dvc exp run -S data.source=data/raw/messy.csv -S data.target=churn", untracked_repo)
    test = read_json(untracked_repo / "evaluation/metrics.json")["test"]
    assert all(math.isfinite(v) for v in test.values()) and test["accuracy"] > 0.6
    manifest = read_json(untracked_repo / "data/processed/manifest.json")
    assert {f["name"]: f["kind"] for f in manifest["features"]}["city"] == "categorical"

    new = messy_frame(40, seed=9).drop(columns="churn")
    new.loc[0, "city"] = "unseen-city"
    new.to_csv(untracked_repo / "new.csv", index=False)
    sh("python -m ml_project.predict new.csv --output preds.csv", untracked_repo)
    lines = (untracked_repo / "preds.csv").read_text().splitlines()
    assert lines[0] == "prediction,proba_no,proba_yes" and len(lines) == 41
    assert {line.split(",")[0] for line in lines[1:]} <= {"yes", "no"}

    new.drop(columns=["city", "age"]).to_csv(untracked_repo / "bad.csv", index=False)
    proc = sh("python -m ml_project.predict bad.csv --output out.csv", untracked_repo, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: input is missing 2 required column(s): age, city "
        "(the model expects: age, income, city, member)"
    )
    assert not (untracked_repo / "out.csv").exists()


@pytest.mark.parametrize(
    ("param", "value", "stage", "message"),
    [
        (
            "data.source",
            "data/raw/none.csv",
            "etl",
            "error: data.source: file not found: data/raw/none.csv",
        ),
        (
            "data.target",
            "nope",
            "etl",
            "error: data.target: column 'nope' not found; columns are: mean_radius",
        ),
        (
            "model",
            "xgb",
            "train",
            "error: params.yaml: model: unknown model 'xgb' (valid: linear, rf, hgb, svm, knn, mlp, "
            "resnet, voting, stacking)",
        ),
        (
            "models.knn.weights",
            "far",
            "train",
            "error: params.yaml: models.knn.weights: Input should be 'uniform' or 'distance' (got 'far')",
        ),
        (
            "export.atol",
            -1,
            "export",
            "error: params.yaml: export.atol: Input should be greater than or equal to 0 (got -1)",
        ),
    ],
)
def test_bad_input_fails_with_one_line_and_keeps_outputs(repo, param, value, stage, message):
    before = {p: p.read_bytes() for p in (repo / "data/processed").iterdir()}
    set_params(repo, {param: value})
    proc = sh(f"python stages/{stage}.py", repo, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(message) and len(proc.stderr.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in (repo / "data/processed").iterdir()} == before


def test_missing_target_column_in_csv(repo):
    messy_frame(60).to_csv(repo / "data/raw/m.csv", index=False)
    set_params(repo, {"data.source": "data/raw/m.csv", "data.target": "label"})
    proc = sh("dvc repro etl", repo, check=False)
    assert proc.returncode != 0
    assert (
        "error: data.target: column 'label' not found; columns are: age, income, city"
        in proc.stderr
    )


def test_same_params_give_identical_metrics(untracked_repo):
    first = (untracked_repo / "dvclive/train/metrics.json").read_text()
    sh("dvc repro -f train evaluate", untracked_repo)
    assert (untracked_repo / "dvclive/train/metrics.json").read_text() == first


def _stage_modules(repo: Path, stage: str, heavy: list[str]) -> set[str]:
    """Project modules a stage really loads, traced while it runs: in the stage process and in
    any child it forks with multiprocessing (the tracker processes), each dumping its own."""
    tracer = (
        "import atexit, json, os, runpy, sys\n"
        # Traced in this process: the fork server would run the stage in a child of its own,
        # with every heavy library preloaded (what it is for; not what a stage imports).
        "os.environ['ML_PROJECT_FORKSERVER'] = '0'\n"
        "import multiprocessing.process as mpp\n"
        "sys.path.insert(0, 'stages')\n"
        "def dump():\n"
        "    files = sorted(m.__file__ for n, m in list(sys.modules.items())\n"
        "                   if n.split('.')[0] == 'ml_project' and getattr(m, '__file__', None))\n"
        "    heavy = [m for m in ('torch', 'mlflow', 'wandb') if m in sys.modules]\n"
        "    json.dump({'files': files, 'heavy': heavy}, open(f'modules-{os.getpid()}.json', 'w'))\n"
        "boot = mpp.BaseProcess._bootstrap\n"
        "def traced_bootstrap(self, *args, **kwargs):\n"  # a forked child exits via os._exit
        "    try:\n"
        "        return boot(self, *args, **kwargs)\n"
        "    finally:\n"
        "        dump()\n"
        "mpp.BaseProcess._bootstrap = traced_bootstrap\n"
        "atexit.register(dump)\n"
        f"runpy.run_path('stages/{stage}.py', run_name='__main__')\n"
    )
    for old in repo.glob("modules-*.json"):
        old.unlink()
    sh(["python", "-c", tracer], repo)
    traces = [json.loads(p.read_text()) for p in repo.glob("modules-*.json")]
    loaded_heavy = {m for t in traces for m in t["heavy"]}
    traced_heavy = [m for m in ("torch", "mlflow", "wandb") if m in loaded_heavy]
    assert traced_heavy == heavy, f"stage {stage} imports {traced_heavy}"
    files = {f for t in traces for f in t["files"]}
    return {
        str(Path(f).resolve().relative_to(Path(repo).resolve()))
        for f in files
        if Path(f).resolve().is_relative_to(Path(repo).resolve())
    }


def test_stage_deps_list_exactly_the_code_each_stage_runs(repo):
    dvc_yaml = yaml.safe_load((repo / "dvc.yaml").read_text())
    declared_by_stage = {}
    for stage in STAGES:
        declared = set()
        for dep in dvc_yaml["stages"][stage]["deps"]:
            path = repo / dep
            if dep.startswith(("src/", "stages/")):
                declared |= (
                    {str(p.relative_to(repo)) for p in path.rglob("*.py")}
                    if path.is_dir()
                    else {dep}
                )
        # The union over configurations: a scikit-learn model (only the stages that log to
        # MLflow and W&B import them; none imports torch), then a torch model with CV
        # (torch loads lazily, in the stages that train, score or export it; never in etl).
        loaded = {f"stages/{stage}.py", "stages/_bootstrap.py"}
        loaded |= _stage_modules(repo, stage, LOGS.get(stage, []))
        declared_by_stage[stage] = (declared, loaded)
    set_params(repo, {"model": "mlp", "models.mlp.max_epochs": 2, "train.cv_folds": 2})
    for stage in STAGES:
        torch_heavy = ["torch", *LOGS.get(stage, [])] if stage != "etl" else []
        declared, loaded = declared_by_stage[stage]
        loaded |= _stage_modules(repo, stage, torch_heavy)
        assert loaded == declared, stage


LOGS = {"train": ["mlflow", "wandb"], "evaluate": ["mlflow", "wandb"]}
