"""Pipeline speed: each stage's start-up, the full default pipeline, and a no-op `dvc repro`.

Runs in a temporary copy of the project (a fresh git repo), so the numbers include nothing
cached from this checkout. Each measurement is compared with a baseline taken in the same run:
stage start-up against a bare `python -c pass`, `dvc repro` against a bare `dvc --version`.

    python benchmarks/pipeline.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.project import make_project, project_env  # noqa: E402

STAGES = ("etl", "train", "evaluate", "export")
IMPORT_STAGE = (
    "import sys, importlib.util; sys.path.insert(0, 'stages'); "
    "spec = importlib.util.spec_from_file_location('s', 'stages/{}.py'); "
    "spec.loader.exec_module(importlib.util.module_from_spec(spec))"
)


def timed(cmd: list[str], cwd: Path, repeat: int = 1) -> float:
    """Median wall time of `cmd` in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=project_env(), check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_project(Path(tmp))
        python = timed([sys.executable, "-c", "pass"], repo, args.repeat)
        rows.append(("python -c pass (baseline)", python, 1.0))
        for stage in STAGES:
            t = timed([sys.executable, "-c", IMPORT_STAGE.format(stage)], repo, args.repeat)
            rows.append((f"start-up: stages/{stage}.py (imports)", t, t / python))
        dvc = timed(["dvc", "--version"], repo, args.repeat)
        rows.append(("dvc --version (baseline)", dvc, 1.0))
        full = timed(["dvc", "repro"], repo)
        rows.append(("full default pipeline: dvc repro, cold", full, full / dvc))
        noop = timed(["dvc", "repro"], repo, args.repeat)
        rows.append(("no-op dvc repro", noop, noop / dvc))
        for stage in STAGES:
            t = timed([sys.executable, f"stages/{stage}.py"], repo)
            rows.append((f"stage run, whole: {stage}", t, t / python))
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}\n")
    print("| measurement | seconds | ratio to baseline |")
    print("|---|---:|---:|")
    for name, seconds, ratio in rows:
        print(f"| {name} | {seconds:.2f} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
