"""Every shell command in README.md's ```bash blocks, checked by running it.

Each line runs with bash in one copy of the project after `dvc repro` (the `built` fixture),
in README order, and must exit 0. A line that cannot run here is listed in NOT_RUN with the
reason; `dvc exp run` lines train a model each (30-60 s), so their `-S` keys are checked
against params.yaml instead. A new README command is run unless it is listed: the list can only
hide what someone justified.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers.project import ROOT, project_env

pytestmark = pytest.mark.slow

# Matched on the start of the line: why it is not run here.
NOT_RUN = {
    "cookiecutter <": "a placeholder URL; tests/template generates projects with the real CLI",
    "cd <": "a placeholder directory",
    "make run": "install + pipeline; tests/template/test_generated_projects.py runs it",
    "make test": "the whole suite, this test included",
    "torchrun": "several processes or machines (and GPUs), out of a test's reach",
    "export MLFLOW_TRACKING_URI": "points MLflow at a server that does not exist here",
    "export WANDB_MODE=online": "needs a W&B account and the network",
    "mlflow ui": "a server that runs until stopped; test_tracking_real.py starts mlflow server",
    "wandb sync": "uploads to W&B: needs an account and the network",
    "dvc queue start": "starts queue workers; tests/test_sweeps.py runs queued sweeps",
    "dvc plots diff t1 t2 t3": "names experiments (t1-t3) this copy does not have",
    "dvc exp apply t5": "names an experiment (t5) this copy does not have",
    "dvc repro -f": "retrains every stage (a minute); test_pipeline.py re-runs stages",
    "dvc exp pull": "needs a git remote and a DVC remote",
    "dvc exp push": "needs a git remote and a DVC remote",
    "dvc pull": "needs a DVC remote",
    "pip install": "downloads from PyPI",
    "dvc remote add": "configures cloud storage (not reachable here)",
    'git commit -m "DVC remote': "commits the remote configured on the line before",
    "git push": "needs a git remote",
    "make show": "its recipe, `python -m ml_project.show`, runs instead (make would install)",
    "make promote": "needs an experiment t5; tests/test_promote.py promotes real experiments",
}
INSTEAD = {"make show": "python -m ml_project.show"}


def readme_commands(text: str) -> list[str]:
    lines = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        lines += [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return lines


COMMANDS = readme_commands((ROOT / "README.md").read_text())


def skipped(line: str) -> str | None:
    return next((why for start, why in NOT_RUN.items() if line.startswith(start)), None)


def params_keys(path: Path) -> set[str]:
    def walk(node, prefix=""):
        for key, value in node.items():
            yield f"{prefix}{key}"
            if isinstance(value, dict):
                yield from walk(value, f"{prefix}{key}.")

    return set(walk(yaml.safe_load(path.read_text())))


@pytest.fixture(scope="module")
def project(built, tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("readme") / "project"
    shutil.copytree(built, copy, symlinks=True)
    rows = pd.read_parquet(copy / "data/processed/test.parquet").drop(columns=["target"])
    rows.head(5).to_csv(copy / "new_rows.csv", index=False)  # for the predict example
    return copy


def test_the_readme_has_commands_and_every_skip_matches_one():
    assert len(COMMANDS) > 30
    unused = [start for start in NOT_RUN if not any(c.startswith(start) for c in COMMANDS)]
    assert not unused, f"NOT_RUN entries that match no README command: {unused}"


@pytest.mark.parametrize("line", COMMANDS, ids=[c[:60] for c in COMMANDS])
def test_readme_command(project, line):
    if line.startswith("dvc exp run"):
        keys = params_keys(project / "params.yaml")
        words = shlex.split(line, comments=True)
        sets = [words[i + 1] for i, w in enumerate(words) if w == "-S"]
        assert sets, line
        for assignment in sets:
            assert assignment.split("=")[0] in keys, f"{line}: no such param"
        return
    if (why := skipped(line)) is not None:
        if line.split("#")[0].strip() not in INSTEAD:
            pytest.skip(why)
        line = INSTEAD[line.split("#")[0].strip()]
    env = {**project_env(), "PYTHONPATH": str(project / "src")}
    proc = subprocess.run(
        ["bash", "-c", line],
        cwd=project,
        env=env,
        text=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert proc.returncode == 0, f"{line}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def test_show_is_the_real_dvc_exp_show_narrowed(project):
    """`make show`: experiment, the selection metric and model first, no unused params."""
    env = {**project_env(), "PYTHONPATH": str(project / "src"), "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "ml_project.show", "--no-pager"],
        cwd=project,
        env=env,
        text=True,
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("$ dvc exp show --drop '.*' --keep '^Experiment$|^val\\.f1$")
    header = next(line for line in proc.stdout.splitlines() if "Experiment" in line)
    assert header.split() == ["Experiment", "val.f1", "test.f1", "model"]
    assert max(len(line.rstrip()) for line in proc.stdout.splitlines()) < 80
