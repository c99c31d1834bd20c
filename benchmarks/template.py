"""Template generation speed: `cookiecutter` against a plain copy of the same files.

Runs on a fresh git copy of this repository, what a user's clone holds. Baselines, measured
in the same run: copying the tracked files (what any generator must at least do), the same
plus `git init` and a commit (what a created project gets), and the cookiecutter CLI's own
start-up. Generation itself should stay under 2 s; installs (`make`) are not part of it.

    python benchmarks/template.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The root (for tests.helpers) and tests/template/ (generation.py).
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "template")]

from generation import cookiecutter, git_files  # noqa: E402

from tests.helpers.project import BIN, make_project, project_env  # noqa: E402

NON_DEFAULT = (
    "project_name=Demand Forecast",
    "task=regression",
    "wandb=no",
    "license=Apache-2.0",
    "ci=no",
)


def median_seconds(action, repeat: int) -> float:
    """Median wall time of `action(workdir)`, each run in a new empty directory."""
    times = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            action(Path(tmp))
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    env = project_env()

    with tempfile.TemporaryDirectory() as tmp:
        template = make_project(Path(tmp) / "template")
        files = sorted(git_files(template))

        def copy(dest: Path) -> None:
            for rel in files:
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(template / rel, dest / rel)

        def copy_and_commit(dest: Path) -> None:
            copy(dest)
            for cmd in ("git init -q -b main", "git add -A", "git commit -q -m init"):
                git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.com"]
                subprocess.run(git + cmd.split()[1:], cwd=dest, env=env, check=True)

        def cli_start(dest: Path) -> None:
            cmd = [str(BIN / "cookiecutter"), "--version"]
            subprocess.run(cmd, env=env, check=True, capture_output=True)

        def generate(*answers: str):
            def action(dest: Path) -> None:
                (dest / "home").mkdir()
                proc = cookiecutter(template, dest, dest / "home", *answers)
                assert proc.returncode == 0, proc.stdout + proc.stderr

            return action

        copy_s = median_seconds(copy, args.repeat)
        rows = [
            (f"plain copy of the {len(files)} tracked files (baseline)", copy_s),
            ("plain copy + git init + commit", median_seconds(copy_and_commit, args.repeat)),
            ("cookiecutter --version (CLI start-up)", median_seconds(cli_start, args.repeat)),
            ("cookiecutter, default answers", median_seconds(generate(), args.repeat)),
            (
                "cookiecutter, renamed package, regression, no W&B, Apache, no CI",
                median_seconds(generate(*NON_DEFAULT), args.repeat),
            ),
        ]

    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, "
          f"median of {args.repeat}\n")  # fmt: skip
    print("| measurement | seconds | ratio to plain copy |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} | {seconds / copy_s:.1f}x |")


if __name__ == "__main__":
    main()
