"""Checks on the answers to the template's prompts, as Jinja filters cookiecutter calls.

cookiecutter has no validation step of its own, and a failing `pre_gen_project` hook prints a
traceback after the project directory was already created. These filters run while the
answers are rendered (`__checked` and the template directory's name in cookiecutter.json), so
a bad answer stops generation before anything is written, with one line that names the field.
"""

from __future__ import annotations

import atexit
import keyword
import re
import shutil
import sys
from pathlib import Path

from cookiecutter.exceptions import FailedHookException, OutputDirExistsException
from jinja2 import pass_context
from jinja2.ext import Extension

from .pre_prompt import TEMPLATE_DIR, TEMPORARY_COPY_MARK

HOOKS = Path(__file__).resolve().parent
ROOT = HOOKS.parent


class InvalidAnswer(FailedHookException):
    """An answer the template cannot use.

    A FailedHookException because cookiecutter's CLI prints those as one line and exits 1.
    """


def package_name(project_name: str) -> str:
    """The default package name: the project name, lowercased, runs of other characters as `_`."""
    return re.sub(r"[^a-z0-9]+", "_", project_name.lower()).strip("_")


def project_slug(project_name: str) -> str:
    """The directory to create: the project name, lowercased, spaces and such as `-`."""
    return re.sub(r"[^a-z0-9_.]+", "-", project_name.lower()).strip("-.")


def dependency_modules(lock: Path) -> set[str]:
    """Top-level modules of the pinned dependencies, lowercased.

    A distribution's own name covers most (`dvc`, `torch`); dependency_modules.txt lists the
    import names that differ from it (`sklearn`, `yaml`), checked against an installed
    environment by tests/template.
    """
    names = set()
    for line in lock.read_text().splitlines():
        dist = line.split("==")[0].strip()
        if dist and not dist.startswith("#"):
            names.add(re.sub(r"[-.]+", "_", dist).lower())
    for line in (HOOKS / "dependency_modules.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            names.add(line.strip().lower())
    return names


def stdlib_modules() -> set[str]:
    return set(getattr(sys, "stdlib_module_names", ())) | set(sys.builtin_module_names)


def own_modules(project: Path) -> set[str]:
    """Names the project's own code imports besides its package: its top-level folders
    (`tests`, `stages`) and the stage scripts, whose folder is first on their sys.path."""
    folders = {p.name for p in project.iterdir() if p.is_dir()}
    return folders | {p.stem for p in (project / "stages").glob("*.py")}


def check_package_name(name: str, project: Path) -> None:
    """Raise InvalidAnswer unless `name` can be the import package of `project` (the files the
    project is made from: requirements.lock, stages/)."""
    derived = package_name(name)
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        example = derived if re.fullmatch(r"[a-z_][a-z0-9_]*", derived) else "my_project"
        raise InvalidAnswer(
            f"error: package_name: {name!r} is not a lowercase Python identifier; use lowercase"
            f" letters, digits and '_', not starting with a digit (e.g. {example!r})"
        )
    suggestion = f"{name}_project"
    if keyword.iskeyword(name):
        raise InvalidAnswer(
            f"error: package_name: {name!r} is a Python keyword; choose another name"
            f" (e.g. {suggestion!r})"
        )
    if name in stdlib_modules():
        raise InvalidAnswer(
            f"error: package_name: {name!r} would shadow the standard library module {name!r};"
            f" choose another name (e.g. {suggestion!r})"
        )
    if name in own_modules(project):
        raise InvalidAnswer(
            f"error: package_name: {name!r} would clash with the project's own {name!r} (a"
            f" folder or stage script); choose another name (e.g. {suggestion!r})"
        )
    if name in dependency_modules(project / "requirements.lock"):
        raise InvalidAnswer(
            f"error: package_name: {name!r} would shadow the dependency module {name!r}"
            f" (requirements.lock); choose another name (e.g. {suggestion!r})"
        )


def checked_answers(answers: dict) -> str:
    """Check the free-text answers; rendered into `__checked`, after every prompt."""
    name = answers["project_name"].strip()
    if not name:
        raise InvalidAnswer(
            "error: project_name: it is empty; give the project a name (e.g. 'churn-model')"
        )
    if not project_slug(name):
        raise InvalidAnswer(
            f"error: project_name: {name!r} gives an empty directory name; use letters or digits"
        )
    check_package_name(answers["package_name"], ROOT / TEMPLATE_DIR)
    return "ok"


@pass_context
def new_project_dir(context, slug: str) -> str:
    """The project directory's name, refused if it exists: nothing is merged into old files."""
    target = Path(context["cookiecutter"]["_output_dir"], slug)
    if target.exists():
        raise OutputDirExistsException(
            f"error: project_name: the directory {str(target)!r} already exists; choose another"
            " project name, another output directory (-o), or remove it"
        )
    return slug


_REMOVED_AT_EXIT: set[Path] = set()  # temporary copies already registered for removal


def remove_temporary_copy_at_exit(root: Path = ROOT) -> None:
    """When cookiecutter exits, remove the temporary copy it runs the template from (made for
    pre_prompt.py) and the folder around it.

    cookiecutter 2.7 removes the copy only when generation succeeds, and never the folder it
    made for it, so every refused answer would leave a copy of the template in the temporary
    directory. Only a copy that pre_prompt.py marked with its own path is removed.
    """
    try:
        marked = (root / TEMPORARY_COPY_MARK).read_text() == str(root)
    except OSError:
        return  # not cookiecutter's copy: a checkout, or the tests importing the hooks
    folder = root.parent
    # cookiecutter makes several Jinja environments per run: register the removal once.
    if marked and folder.name.startswith("cookiecutter") and folder not in _REMOVED_AT_EXIT:
        _REMOVED_AT_EXIT.add(folder)
        atexit.register(shutil.rmtree, folder, ignore_errors=True)


class AnswerChecks(Extension):
    """Registers the filters cookiecutter.json uses."""

    def __init__(self, environment):
        super().__init__(environment)
        remove_temporary_copy_at_exit()
        environment.filters.update(
            package_name=package_name,
            project_slug=project_slug,
            checked_answers=checked_answers,
            new_project_dir=new_project_dir,
        )
