"""Created projects work with their own commands: lint, tests, `dvc repro`, the CI metrics diff.

The root .venv runs them (no new virtualenv per project): the created package is importable
through PYTHONPATH, and the stages put the project's own `src/` first anyway.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from generation import generate

from tests.helpers.project import make_project, project_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("template"))


def run_in(project: Path, cmd: str, timeout: int = 600) -> str:
    env = {**project_env(), "PYTHONPATH": str(project / "src"), "WANDB_MODE": "offline"}
    proc = subprocess.run(
        cmd, shell=True, cwd=project, env=env, text=True, capture_output=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{cmd} failed in {project}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def metrics(project: Path) -> dict:
    return json.loads((project / "evaluation" / "metrics.json").read_text())["test"]


def test_regression_project_passes_its_own_lint_tests_and_pipeline(template, tmp_path):
    """A non-default answer set: renamed package, regression, W&B and MLflow off."""
    home, out = tmp_path / "home", tmp_path / "out"
    home.mkdir(), out.mkdir()
    project = generate(
        template, out, home,
        "project_name=Demand Forecast", "task=regression", "wandb=no", "mlflow=no", "ci=no",
    )  # fmt: skip
    assert (project / "src" / "demand_forecast" / "__init__.py").is_file()

    run_in(project, "ruff check .")
    # The non-slow part of its suite: its slow tests copy and re-run whole pipelines, which
    # the template's own suite already covers for the identical code. In one process: the
    # outer suite keeps both cores busy, and each xdist worker would collect it again (~13 s
    # of CPU importing the whole stack).
    summary = run_in(project, "python -m pytest -m 'not slow' -q -p no:cacheprovider -n 0")
    assert re.search(r"^\d+ passed", summary.splitlines()[-1]), summary[-2000:]
    run_in(project, "dvc repro")

    scores = metrics(project)
    assert set(scores) >= {"rmse", "mae", "r2"} and scores["r2"] > 0.2, scores
    assert not (project / "wandb").exists() and not (project / "mlflow.db").exists()
    # the template's dvc.lock does not fit a renamed package: the first run writes (stages) one
    assert run_in(project, "git status --porcelain --untracked-files=no") == "A  dvc.lock\n"


def test_default_project_runs_its_pipeline_and_ci_metrics_diff(template, tmp_path):
    """The defaults create this repository (checked byte for byte by test_template.py), whose
    own suite is `make test` itself; here its pipeline runs, and the CI's metrics diff of a
    change against its base commit."""
    home, out = tmp_path / "home", tmp_path / "out"
    home.mkdir(), out.mkdir()
    project = generate(template, out, home)

    run_in(project, "ruff check .")
    run_in(project, "dvc repro")
    assert set(metrics(project)) >= {"accuracy", "f1", "roc_auc", "log_loss"}
    assert (project / "mlflow.db").is_file() and (project / "wandb").is_dir()

    run_in(project, "git add -A && git commit -q -m 'pipeline outputs'")
    # A change that re-runs only the export stage keeps this test short.
    params = (project / "params.yaml").read_text()
    assert params.count("\n  rtol: 1.0e-5\n") == 1
    (project / "params.yaml").write_text(params.replace("\n  rtol: 1.0e-5\n", "\n  rtol: 1.0e-3\n"))
    run_in(project, "git commit -q -am 'looser export tolerance'")

    report = run_in(project, "bash .github/metrics-diff.sh HEAD~1")

    assert "## Metrics and params: this change against" in report
    rows = {line.split("|")[2].strip(): line for line in report.splitlines() if line.count("|") > 4}
    assert {"onnx.rtol", "export.rtol"} <= set(rows), report
    assert "| 1e-05 " in rows["export.rtol"] and "| 0.001 " in rows["export.rtol"], report
    assert run_in(project, "git rev-parse HEAD") == run_in(project, "git rev-parse main")
    assert os.access(project / ".github" / "metrics-diff.sh", os.X_OK)
