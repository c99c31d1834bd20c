"""Run the real cookiecutter CLI on a clean git copy of this repository, and what to expect.

What is template-only (never in a created project) is listed once, in hooks/pre_prompt.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.helpers.project import BIN, ROOT, project_env

sys.path.append(str(ROOT))  # the hooks, as cookiecutter runs them from the template's root
from hooks.pre_prompt import TEMPLATE_ONLY_BLOCK, is_template_only  # noqa: E402, F401

TEMPLATE_PACKAGE = "ml_project"


def cookiecutter(template: str | Path, out: Path, home: Path, *answers: str):
    """`cookiecutter TEMPLATE --no-input -o OUT key=value...`, with its own HOME (config,
    replay files, clones, and no global git identity) and temporary directory (`temporary`)."""
    env = project_env()
    env.pop("XDG_CONFIG_HOME", None)
    env["HOME"] = str(home)
    env["TMPDIR"] = str(temporary(home))
    cmd = [str(BIN / "cookiecutter"), str(template), "--no-input", "-o", str(out), *answers]
    return subprocess.run(cmd, env=env, text=True, capture_output=True, timeout=120)


def temporary(home: Path) -> Path:
    """The temporary directory of the cookiecutter runs with this HOME."""
    path = home / "tmp"
    path.mkdir(exist_ok=True)
    return path


def generate(template: Path, out: Path, home: Path, *answers: str) -> Path:
    proc = cookiecutter(template, out, home, *answers)
    assert proc.returncode == 0, f"cookiecutter failed\n{proc.stdout}\n{proc.stderr}"
    assert list(temporary(home).iterdir()) == []  # no template copy, no rendered hook left
    (project,) = [p for p in out.iterdir() if p.is_dir()]
    return project


def git_files(repo: Path) -> set[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, text=True)
    return {path for path in out.stdout.split("\0") if path}


def disk_files(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def expected_files(
    template: Path, package: str = TEMPLATE_PACKAGE, ci=True, license=True, lock=True
):
    """The template's tracked files, less the template-only ones and those the answers drop,
    with the package directory renamed. `lock=False`: answers that change the package or the
    params drop dvc.lock, which describes the template's own code and params."""
    expected = set()
    for path in git_files(template):
        if is_template_only(path) or (not ci and path.startswith(".github/")):
            continue
        if (not license and path == "LICENSE") or (not lock and path == "dvc.lock"):
            continue
        expected.add(re.sub(rf"(?<![A-Za-z0-9]){TEMPLATE_PACKAGE}(?![A-Za-z0-9])", package, path))
    return expected
