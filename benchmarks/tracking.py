"""Per-step cost of each tracker and of the full fan-out, against a no-tracker baseline.

Each configuration logs 4 metrics per step through `Trackers.log_metrics` for N steps into
a fresh temporary directory (local SQLite MLflow store, offline W&B). Two loops:

- tight: nothing but logging. Reports the training thread's cost per call (mean, steps
  10-100, last 1,000: flatness) and the close, which waits for the background writers.
- with work: each step also does --work-ms of numpy work (like a training step). Reports the
  end-to-end overhead per step, close included, against the same loop without trackers.

    python benchmarks/tracking.py [--steps 100 5000] [--work-ms 5] [--work-steps 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ml_project.params import TrackingParams  # noqa: E402
from ml_project.tracking import RunInfo, Trackers, open_trackers  # noqa: E402

OFF = {"enabled": False}
CONFIGS = {
    "none (baseline)": dict(dvclive=OFF, mlflow=OFF, wandb=OFF),
    "dvclive": dict(mlflow=OFF, wandb=OFF),
    "mlflow": dict(dvclive=OFF, wandb=OFF),
    "wandb": dict(dvclive=OFF, mlflow=OFF),
    "all three (fan-out)": dict(),
}


def make_work(ms: float):
    """A numpy step that takes about `ms` milliseconds here (BLAS releases the GIL)."""
    import numpy as np

    a = np.random.default_rng(0).random((256, 256))
    start, reps = time.perf_counter(), 0
    while time.perf_counter() - start < 0.2:
        a @ a
        reps += 1
    per_call = 0.2 / reps
    n = max(1, round(ms / 1000 / per_call))
    return lambda: [a @ a for _ in range(n)]


def measure(name: str, steps: int, work=None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        start = time.perf_counter()
        fan: Trackers = open_trackers(TrackingParams(**CONFIGS[name]), RunInfo(stage="train"))
        started = time.perf_counter()
        per_step = []
        loop = time.perf_counter()
        for step in range(steps):
            if work is not None:
                work()
            metrics = {"train/loss": 1 / (step + 1), "val/loss": 0.5, "val/f1": 0.9, "val/acc": 0.8}
            t = time.perf_counter()
            fan.log_metrics(metrics, step)
            per_step.append(time.perf_counter() - t)
        t = time.perf_counter()
        fan.close()
        closed = time.perf_counter() - t
        total = time.perf_counter() - loop
    tail = per_step[-1000:]
    return {
        "start_s": started - start,
        "mean_ms": 1000 * sum(per_step) / steps,
        "early_ms": 1000 * sum(per_step[10:100]) / len(per_step[10:100]),
        "late_ms": 1000 * sum(tail) / len(tail),
        "close_s": closed,
        "total_ms": 1000 * total / steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 5000])
    parser.add_argument("--work-ms", type=float, default=5.0)
    parser.add_argument("--work-steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("WANDB_MODE", None)
    cwd = os.getcwd()
    print("Tight loop: cost on the training thread, per log_metrics call (4 metrics)\n")
    print(
        "| tracker | steps | mean (ms) | over baseline (ms) | steps 10-100 (ms) "
        "| last 1,000 (ms) | start (s) | close (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for steps in args.steps:
        base = None
        for name in CONFIGS:
            r = measure(name, steps)
            os.chdir(cwd)
            base = r["mean_ms"] if base is None else base
            print(
                f"| {name} | {steps} | {r['mean_ms']:.3f} | {r['mean_ms'] - base:+.3f} | "
                f"{r['early_ms']:.3f} | {r['late_ms']:.3f} | {r['start_s']:.2f} | "
                f"{r['close_s']:.2f} |"
            )
    work = make_work(args.work_ms)
    print(
        f"\nWith {args.work_ms:g} ms of numpy work per step, {args.work_steps} steps: "
        f"end-to-end time per step, close included (median of {args.repeat}, interleaved)\n"
    )
    print("| tracker | per step (ms) | overhead per step (ms) | ratio |")
    print("|---|---:|---:|---:|")
    totals: dict[str, list[float]] = {name: [] for name in CONFIGS}
    for _ in range(args.repeat):
        for name in CONFIGS:
            totals[name].append(measure(name, args.work_steps, work)["total_ms"])
            os.chdir(cwd)
    base = statistics.median(totals["none (baseline)"])
    for name, values in totals.items():
        t = statistics.median(values)
        print(f"| {name} | {t:.3f} | {t - base:+.3f} | {t / base:.3f}x |")


if __name__ == "__main__":
    main()
