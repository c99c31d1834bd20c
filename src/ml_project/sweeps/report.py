"""A sweep's results: one row per experiment (status, params, metrics), and the table printed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ml_project.sweeps.supervisor import Task

# `dvc exp show` columns that describe the row rather than the experiment's results.
SHOW_COLUMNS = {"Experiment", "rev", "typ", "Created", "parent", "State", "Executor"}


def preload() -> None:
    """Import what `results` needs (~1 s of CPU) while the experiments run, not after the last."""
    import dvc.api  # noqa: F401
    import pandas  # noqa: F401


def results(root: Path, tasks: Sequence[Task], base: Mapping[str, object]) -> pd.DataFrame:
    """One row per task; metrics from `dvc exp show` for the experiments that succeeded.

    Args:
        root: the DVC project.
        tasks: the sweep's tasks, with their outcome.
        base: params.yaml as read (its keys are params, not metrics, in `dvc exp show`).

    Returns:
        A DataFrame indexed by experiment name with `status`, `attempts`, `error`,
        `retried_after`, the swept params and every metric, best first; `best` marks the best
        success by `train.metric` on the validation split. `df.attrs` holds `metric`,
        `params`, `best`, `failed`.
    """
    import dvc.api
    import pandas as pd

    from ml_project.metrics import METRICS
    from ml_project.params import flatten

    names = {t.name for t in tasks}
    param_keys = set(flatten(base))
    rows = {
        r["Experiment"]: r for r in dvc.api.exp_show(repo=str(root)) if r["Experiment"] in names
    }
    swept = list(dict.fromkeys(k for t in tasks for k in t.point))
    records = []
    for task in tasks:
        record: dict[str, Any] = {
            "experiment": task.name,
            "status": "success" if task.status == "Success" else "failed",
            "attempts": task.attempts,
            "error": task.error,
            "retried_after": "; ".join(task.notes),
        }
        record.update({k: task.point.get(k) for k in swept})
        shown = rows.get(task.name) if task.status == "Success" else None
        if shown:
            record.update(
                {k: v for k, v in shown.items() if k not in SHOW_COLUMNS and k not in param_keys}
            )
        records.append(record)
    frame = pd.DataFrame.from_records(records).set_index("experiment")

    metric = str(flatten(base).get("train.metric", ""))
    if metric == "auto":  # the data's task decides: its standard metric, whichever was logged
        from ml_project.params import STANDARD_METRIC

        metric = next((m for m in STANDARD_METRIC.values() if f"val.{m}" in frame), "")
    column = f"val.{metric}"
    higher = METRICS[metric].greater_is_better if metric in METRICS else True
    frame["best"] = False
    ok = frame[frame["status"] == "success"]
    if column in frame and ok[column].notna().any():
        best = ok[column].astype(float).idxmax() if higher else ok[column].astype(float).idxmin()
        frame.loc[best, "best"] = True
        frame = frame.sort_values(column, ascending=not higher, na_position="last", kind="stable")
    frame.attrs.update(
        metric=column,
        params=swept,
        best=frame.index[frame["best"]].tolist()[0] if frame["best"].any() else None,
        failed={t.name: t.error for t in tasks if t.status != "Success"},
    )
    return frame


def table(frame: pd.DataFrame) -> str:
    """The comparison: name (best starred), the params that vary, selection and test metric."""
    metric = frame.attrs.get("metric", "")
    metrics = [c for c in (metric, metric.replace("val.", "test.", 1)) if c in frame]
    swept = frame.attrs.get("params", [])
    varied = [c for c in swept if frame[c].astype(str).nunique() > 1] or swept
    shown = frame[[*varied, *metrics]].copy()
    shown.insert(0, "best", ["*" if b else "" for b in frame["best"]])
    status = [
        "success" if s == "success" else f"FAILED: {e}"
        for s, e in zip(frame["status"], frame["error"], strict=True)
    ]
    shown["status"] = [
        f"{s} (attempts: {n})" if n > 1 else s
        for s, n in zip(status, frame["attempts"], strict=True)
    ]
    return shown.to_string(float_format=lambda v: f"{v:.4f}", na_rep="-")
