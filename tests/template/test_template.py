"""The cookiecutter template: real cookiecutter, real git, on a clean git copy of this repo."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from generation import (
    TEMPLATE_ONLY_BLOCK,
    cookiecutter,
    disk_files,
    expected_files,
    generate,
    git_files,
    temporary,
)

from tests.helpers.project import ROOT, make_project, project_env

sys.path.append(str(ROOT))  # import the template's answer checks as cookiecutter does
from hooks import answers  # noqa: E402


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """This repository (with the uncommitted change) as a git repo, plus the local outputs and
    stray files of a working checkout, which no created project may get."""
    repo = make_project(tmp_path_factory.mktemp("template"))
    for junk in LOCAL_OUTPUTS + ["scratch/untracked.py"]:
        (repo / junk).parent.mkdir(parents=True, exist_ok=True)
        (repo / junk).write_text("not part of the template\n")
    return repo


LOCAL_OUTPUTS = [
    ".venv/bin/python",
    ".pytest_cache/v/cache/lastfailed",
    "src/ml_project/__pycache__/data.cpython-311.pyc",
    "mlflow.db",
    "mlartifacts/1/model.pkl",
    "wandb/offline-run-1/run.wandb",
    "dvclive/train/metrics.json",
    "data/processed/train.parquet",
    "models/model.skops",
    "evaluation/metrics.json",
]


@pytest.fixture
def home(tmp_path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def out(tmp_path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


def count_braces(text: str) -> tuple[int, int, int]:
    return text.count("{{"), text.count("}}"), text.count("{%")


def assert_nothing_unrendered(template: Path, project: Path, package: str) -> None:
    """No `{{`, `}}` or `{%` that the template file did not already have (the workflow's
    `${{ }}` is copied verbatim; a template-only README block may take some away)."""
    for rel in disk_files(project):
        text = (project / rel).read_text(encoding="utf-8")
        source = template / re.sub(rf"(?<![A-Za-z0-9]){package}(?![A-Za-z0-9])", "ml_project", rel)
        before = count_braces(source.read_text(encoding="utf-8"))
        assert all(n <= m for n, m in zip(count_braces(text), before, strict=True)), rel
        assert "cookiecutter." not in text, rel


def test_defaults_reproduce_the_template_repository(template, out, home):
    project = generate(template, out, home)

    assert project.name == "ml_project"
    assert disk_files(project) == git_files(project) == expected_files(template)
    assert not [junk for junk in LOCAL_OUTPUTS if (project / junk).exists()]
    for rel in git_files(project):
        made, source = project / rel, template / rel
        assert os.access(made, os.X_OK) == os.access(source, os.X_OK), rel
        if rel == "README.md":
            # Only the template-only block goes; the rest is byte for byte the template's.
            readme = source.read_text()
            assert "<!-- template-only -->" in readme
            assert made.read_text() == TEMPLATE_ONLY_BLOCK.sub("", readme)
        elif rel == "LICENSE":
            year = datetime.date.today().year
            assert made.read_text() == re.sub(r"\(c\) \d{4}", f"(c) {year}", source.read_text())
        else:
            assert made.read_bytes() == source.read_bytes(), rel
    assert "make run" in (project / "README.md").read_text()
    assert "cookiecutter" not in (project / "README.md").read_text().split("## ")[0]


def test_created_project_is_a_committed_git_and_dvc_repository(template, out, home):
    project = generate(template, out, home, "project_name=Churn Model", "author=Ada Lovelace")

    assert project.name == "churn-model"
    git = lambda *a: subprocess.run(["git", *a], cwd=project, capture_output=True, text=True)  # noqa: E731
    assert git("rev-parse", "--abbrev-ref", "HEAD").stdout.strip() == "main"
    assert git("rev-list", "--count", "HEAD").stdout.strip() == "1"
    assert git("status", "--porcelain").stdout == ""
    # No global identity in this HOME: the hook set one in the repository only.
    assert git("config", "--local", "user.name").stdout.strip() == "Ada Lovelace"
    assert git("log", "-1", "--format=%an").stdout.strip() == "Ada Lovelace"
    assert {".dvc/config", ".dvc/.gitignore", ".dvcignore"} <= git_files(project)
    dvc = subprocess.run(
        ["dvc", "config", "core.autostage"], cwd=project, env=project_env(), capture_output=True
    )
    assert dvc.returncode == 0 and dvc.stdout.strip() == b"true"


OPTIONS = {
    "no CI, no license": (["ci=no", "license=none"], {"ci": False, "license": False}),
    "renamed, Apache": (
        ["project_name=Churn Model", "license=Apache-2.0"], {"package": "churn_model", "lock": False}
    ),
    "regression, trackers off, BSD": (
        ["project_name=demand", "package_name=demand_fc", "task=regression", "mlflow=no",
         "wandb=no", "license=BSD-3-Clause"],
        {"package": "demand_fc", "lock": False},
    ),
}  # fmt: skip


@pytest.mark.parametrize("answers_, expect", OPTIONS.values(), ids=OPTIONS.keys())
def test_exact_file_set_and_nothing_unrendered(template, out, home, answers_, expect):
    project = generate(template, out, home, *answers_)
    package = expect.get("package", "ml_project")

    assert disk_files(project) == git_files(project) == expected_files(template, **expect)
    assert_nothing_unrendered(template, project, package)
    if package != "ml_project":
        leftovers = subprocess.run(
            ["git", "grep", "-n", "-i", "-E", "ml[-_]project"], cwd=project, capture_output=True
        )
        assert leftovers.stdout == b"", leftovers.stdout.decode()
        # The rename's longer lines are re-wrapped, never silenced.
        noqa = subprocess.run(["git", "grep", "-n", "noqa: E501"], cwd=project, capture_output=True)
        assert noqa.stdout == b"", noqa.stdout.decode()


def test_answers_reach_params_readme_pyproject_and_license(template, out, home):
    project = generate(
        template, out, home,
        "project_name=Demand Forecast", "package_name=demand", "author=Grace Hopper",
        "description=Weekly demand: \"units\" per store", "task=regression", "wandb=no",
        "mlflow=no", "wandb_project=forecasts", "wandb_entity=ops-team", "license=BSD-3-Clause",
    )  # fmt: skip

    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["data"]["source"] == "diabetes"
    assert params["data"]["task"] == "regression"
    assert params["train"]["metric"] == "rmse"
    assert params["model"] == "hgb"
    assert params["tracking"]["mlflow"]["enabled"] is False
    assert params["tracking"]["wandb"] == {
        **yaml.safe_load((template / "params.yaml").read_text())["tracking"]["wandb"],
        "enabled": False, "project": "forecasts", "entity": "ops-team",
    }  # fmt: skip
    assert params["tracking"]["experiment"] == "demand"
    # Targeted edits: every other line, comments included, is the template's.
    made = (project / "params.yaml").read_text().splitlines()
    source = (template / "params.yaml").read_text().replace("ml_project", "demand").splitlines()
    changed = [(a, b) for a, b in zip(source, made, strict=True) if a != b]
    assert len(changed) == 7, changed
    assert all(a.split("#")[1:] == b.split("#")[1:] for a, b in changed), changed

    readme = (project / "README.md").read_text()
    assert readme.startswith('# Demand Forecast\n\nWeekly demand: "units" per store\n\n')
    # The README names the project's own default data, not the template's.
    assert "The default is scikit-learn's bundled `diabetes` (regression)" in readme
    assert "(diabetes, the default `hgb` model)" in readme
    assert "bundled `breast_cancer` (classification)" not in readme
    pyproject = (project / "pyproject.toml").read_text()
    assert 'name = "demand"' in pyproject
    assert 'description = "Weekly demand: \\"units\\" per store"' in pyproject
    license_ = (project / "LICENSE").read_text()
    assert license_.startswith("BSD 3-Clause License\n\nCopyright (c) ")
    assert f"{datetime.date.today().year} Grace Hopper\n" in license_

    # The package imports under its new name, and its typed params accept the edited file.
    check = subprocess.run(
        [sys.executable, "-c", "import demand, demand.training as t; print(demand.__file__);"
         " c = t.load_train_config(); print(c.data.task, c.train.metric)"],
        cwd=project, env={**project_env(), "PYTHONPATH": str(project / "src")},
        capture_output=True, text=True,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert check.stdout.splitlines() == [
        str(project / "src" / "demand" / "__init__.py"),
        "regression rmse",
    ]


BAD = {
    "package not an identifier": (["package_name=my-model"], "package_name", "'my_model'"),
    "package starts with a digit": (["package_name=2model"], "package_name", "letters"),
    "package is a keyword": (["package_name=class"], "package_name", "keyword"),
    "package shadows stdlib": (["package_name=json"], "package_name", "standard library"),
    "package shadows a dependency": (["package_name=sklearn"], "package_name", "dependency"),
    "package shadows torch": (["package_name=torch"], "package_name", "dependency"),
    "package clashes with tests/": (["package_name=tests"], "package_name", "project's own"),
    "package clashes with a stage": (["package_name=train"], "package_name", "stage script"),
    "empty project name": (["project_name="], "project_name", "give the project a name"),
    "blank project name": (["project_name=  "], "project_name", "give the project a name"),
    "project name without letters": (["project_name=!!!"], "project_name", "letters or digits"),
}


@pytest.mark.parametrize("answers_, field, advice", BAD.values(), ids=BAD.keys())
def test_bad_answers_fail_before_anything_is_written(template, out, home, answers_, field, advice):
    proc = cookiecutter(template, out, home, *answers_)

    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode != 0
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {field}: ") and advice in lines[0], lines[0]
    assert list(out.iterdir()) == []
    assert list(temporary(home).iterdir()) == []  # nor cookiecutter's copy of the template


def test_existing_target_directory_is_refused_untouched(template, out, home):
    existing = out / "ml_project"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")

    proc = cookiecutter(template, out, home)

    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode != 0
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: project_name: ") and str(existing) in lines[0]
    assert "choose another project name" in lines[0]
    assert [p.name for p in out.iterdir()] == ["ml_project"]
    assert [p.name for p in existing.iterdir()] == ["notes.txt"]
    assert list(temporary(home).iterdir()) == []


def test_generates_from_a_git_url(template, out, home):
    project = generate(f"git+file://{template}", out, home, "ci=no")

    assert disk_files(project) == expected_files(template, ci=False)
    assert (home / ".cookiecutters" / template.name / ".git").is_dir()  # really cloned


def lock_distributions() -> set[str]:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    return {
        re.sub(r"[-_.]+", "_", line.split("==")[0]).lower()
        for line in lines
        if "==" in line and not line.startswith("#")
    }


def test_every_dependency_import_name_is_refused():
    """dependency_modules.txt is complete for the installed pins (the ones that differ from
    their distribution's name; an installed environment is the only place they show)."""
    lock = lock_distributions()
    imported = {
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if module.isidentifier() and any(re.sub(r"[-_.]+", "_", d).lower() in lock for d in dists)
    }
    assert {"sklearn", "yaml", "torch", "dvc", "mlflow"} <= {m.lower() for m in imported}
    accepted = []
    for module in sorted(imported):
        if module.lower() != module:
            continue  # not a valid answer anyway
        try:
            answers.check_package_name(module, ROOT)
        except answers.InvalidAnswer:
            continue
        accepted.append(module)
    assert accepted == [], f"add to hooks/dependency_modules.txt: {accepted}"
