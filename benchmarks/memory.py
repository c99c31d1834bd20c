"""Peak memory of the etl, train and export stages on wide-cardinality and long inputs.

Two generated files, in a temporary copy of the project (a fresh git repo):
- `ids.csv`: 50,000 rows with a unique string ID per row, a 5,000-value `zip`, a 4-value
  `plan` and three numbers. Run with `data.id_columns` at `error` (etl refuses), `drop`, and
  `keep` (the ID is one-hot encoded within `data.max_categories`).
- `numeric.csv`: 1,000,000 rows x 20 numeric features.

Each stage runs as its own process (`python stages/<stage>.py`, `model=linear`, the default
trackers); a launcher reads its peak resident set size with `getrusage(RUSAGE_CHILDREN)`.
The floor, measured in the same run, is a process that imports pandas and reads the same file.

    python benchmarks/memory.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.project import make_project, project_env  # noqa: E402

STAGES = ("etl", "train", "export")
FLOOR = "import sys, pandas; pandas.read_csv(sys.argv[1])"
LAUNCHER = (
    "import resource, subprocess, sys; "
    "code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)"
)


def ids_table(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3)).round(4)
    plan = rng.choice(["basic", "plus", "pro", "team"], rows)
    score = x[:, 0] + (plan == "pro") - 0.5 * x[:, 1]
    return pd.DataFrame(
        {
            "customer_id": [f"cust-{i:08d}" for i in rng.permutation(rows)],
            "zip": [f"{z:05d}" for z in rng.integers(0, 5000, rows)],
            "plan": plan,
            "x0": x[:, 0],
            "x1": x[:, 1],
            "x2": x[:, 2],
            "y": (score + rng.normal(0, 0.5, rows) > 0).astype(int),
        }
    )


def numeric_table(rows: int, cols: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, cols)).astype(np.float32)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(cols)])
    frame["y"] = (x[:, :3].sum(axis=1) + rng.normal(0, 1, rows) > 0).astype(int)
    return frame


def set_params(repo: Path, **data) -> None:
    path = repo / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["data"].update(data)
    raw["model"], raw["train"]["metric"], raw["train"]["cv_folds"] = "linear", "f1", 0
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def peak_mb(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    """Peak RSS in MB of `cmd` (and the children it waited for), and its exit status.

    A small launcher process runs `cmd`: Linux carries a process's peak RSS across fork and
    exec, so a child started directly from this (large) process would report at least its size.
    """
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *cmd], cwd=cwd, env=env, capture_output=True, text=True
    )
    *_, last = proc.stdout.strip().splitlines() or ["? ?"]
    peak, code = last.split()
    if code not in ("0", "2"):
        raise SystemExit(f"{' '.join(cmd)} exited {code}:\n{proc.stderr[-2000:]}")
    return int(peak) / 1024, int(code)  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--id-rows", type=int, default=50_000)
    parser.add_argument("--numeric-rows", type=int, default=1_000_000)
    parser.add_argument("--numeric-cols", type=int, default=20)
    args = parser.parse_args()
    env = {**project_env(), "OMP_NUM_THREADS": "1"}  # memory, not speed: don't hog the cores
    cases = [
        ("ids.csv", {"id_columns": "error"}, ("etl",)),
        ("ids.csv", {"id_columns": "drop"}, STAGES),
        ("ids.csv", {"id_columns": "keep"}, STAGES),
        ("numeric.csv", {}, STAGES),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_project(Path(tmp) / "repo")
        raw = repo / "data" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        ids_table(args.id_rows).to_csv(raw / "ids.csv", index=False)
        numeric_table(args.numeric_rows, args.numeric_cols).to_csv(
            raw / "numeric.csv", index=False, float_format="%.5g"
        )
        sizes = {
            "ids.csv": f"{args.id_rows:,} rows, unique string ID",
            "numeric.csv": f"{args.numeric_rows:,} x {args.numeric_cols} numeric",
        }
        for name in sizes:
            floor, _ = peak_mb([sys.executable, "-c", FLOOR, f"data/raw/{name}"], repo, env)
            rows.append(("floor: import pandas + read_csv", name, floor, ""))
        for name, data, stages in cases:
            set_params(repo, source=f"data/raw/{name}", target="y", task="classification", **data)
            for stage in stages:
                mb, code = peak_mb([sys.executable, f"stages/{stage}.py"], repo, env)
                setting = ", ".join(f"{k}={v}" for k, v in data.items())
                note = f"{setting}{' (refused, exit 2)' if code == 2 else ''}"
                rows.append((stage, name, mb, note))
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    for name, size in sizes.items():
        print(f"{name}: {size}")
    print("\n| stage | file | peak MB | setting |")
    print("|---|---|---:|---|")
    for stage, name, mb, note in rows:
        print(f"| {stage} | {name} | {mb:,.0f} | {note} |")


if __name__ == "__main__":
    main()
