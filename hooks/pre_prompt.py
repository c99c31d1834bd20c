"""cookiecutter pre_prompt hook: assemble the template directory from the git-tracked files.

The repository root is the project itself; there is no second copy of it to render. cookiecutter
(2.4+) runs this hook in a temporary full copy of the repository, before the prompts. It moves
every git-tracked file, except the template-only ones, into the one template directory; files
git ignores (.venv, caches, mlflow.db, wandb/, pipeline outputs) are never tracked, so they
never get there. cookiecutter then copies the files without rendering them
(`_copy_without_render`), since dvc.yaml and the workflows hold `${...}` and `${{ }}` of their
own, and post_gen_project.py applies the answers.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

# The one template directory; cookiecutter renders its name into the project's directory.
TEMPLATE_DIR = "{{cookiecutter.__project_slug|new_project_dir}}"
# What belongs to the template, not to a created project: the one list, also read by
# post_gen_project.py (the README blocks) and tests/template/generation.py.
TEMPLATE_ONLY_FILES = {"cookiecutter.json", "benchmarks/template.py"}
TEMPLATE_ONLY_DIRS = ("hooks/", "tests/template/")
# Written into cookiecutter's temporary copy, holding its path: answers.py removes a copy that
# carries it when cookiecutter exits (cookiecutter 2.7 leaves the copy behind when generation
# stops on an answer, and the folder it made for the copy every time).
TEMPORARY_COPY_MARK = ".template-copy"
# Markdown blocks only the template's own README shows, removed from a created project's.
TEMPLATE_ONLY_BLOCK = re.compile(
    r"\n<!-- template-only -->\n.*?<!-- /template-only -->\n(?=\n|\Z)", re.S
)


def is_template_only(path: str) -> bool:
    return path in TEMPLATE_ONLY_FILES or path.startswith(TEMPLATE_ONLY_DIRS)


def tracked_files(root: Path) -> list[str]:
    proc = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(
            "error: the template must be a git checkout (pass its git URL, or the path of a"
            f" clone): git ls-files: {proc.stderr.strip()}"
        )
    return [path for path in proc.stdout.split("\0") if path]


def main() -> None:
    root = Path.cwd()
    template = root / TEMPLATE_DIR
    template.mkdir()
    (root / TEMPORARY_COPY_MARK).write_text(str(root))
    for rel in tracked_files(root):
        source = root / rel
        # A tracked file deleted in a working checkout is not part of it.
        if is_template_only(rel) or not (source.is_file() or source.is_symlink()):
            continue
        target = template / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        source.rename(target)  # the copy is cookiecutter's and temporary: move, do not copy


if __name__ == "__main__":
    main()
