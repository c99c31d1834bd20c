"""`dvc exp show`, narrowed to what tells experiments apart, best first.

    python -m ml_project.show            # or: make show
    python -m ml_project.show -A         # extra arguments go to dvc exp show

The full table has a column per file hash, per param of every model (active or not) and per
tracking setting: over 100 columns. This runs the real `dvc exp show` with `--drop '.*'` and
a `--keep` of the experiment name, the selection metric (`train.metric`: val, test and the
cross-validation mean), `model`, and the params whose values differ between the experiments
shown, sorted by the selection metric. It prints the command it runs, so it can be copied
and changed.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from ml_project.errors import UserError, exits_on_user_error

INFO_PATH = Path("models/train_info.json")
# Columns of `dvc exp show` that are not params: its own, and the metrics files' keys.
NOT_PARAMS = {"Experiment", "rev", "typ", "Created", "parent", "State", "Executor"}


def selection_metric() -> str:
    """The metric the last train run selected on (`auto` resolved), else params.yaml's."""
    if INFO_PATH.is_file():
        return json.loads(INFO_PATH.read_text())["metric"]
    import yaml

    metric = (yaml.safe_load(Path("params.yaml").read_text()).get("train") or {}).get("metric")
    return metric if metric and metric != "auto" else "f1"


def varying_params(rows: list[dict], params: set[str]) -> list[str]:
    """The param columns with more than one distinct value among `rows`."""
    varying = []
    for column in sorted(params):
        values = {json.dumps(row.get(column), sort_keys=True, default=str) for row in rows}
        if len(values) > 1:
            varying.append(column)
    return varying


def param_columns() -> set[str]:
    import yaml

    def flatten(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from flatten(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"

    return set(flatten(yaml.safe_load(Path("params.yaml").read_text()) or {}))


def command(extra: list[str]) -> list[str]:
    """The `dvc exp show` command line for this repository's experiments."""
    from dvc.api import exp_show

    from ml_project import metrics as M

    metric = selection_metric()
    if metric not in M.METRICS:
        raise UserError(f"train.metric: unknown metric '{metric}' (valid: {', '.join(M.METRICS)})")
    try:
        rows = exp_show()
    except Exception as exc:  # noqa: BLE001 - DVC's own errors: one line
        raise UserError(f"dvc exp show: {str(exc).splitlines()[0]}") from None
    varying = varying_params(rows, param_columns() - NOT_PARAMS)
    keep = ["Experiment", f"val.{metric}", f"test.{metric}", f"cv.{metric}_mean", "model"]
    keep += [c for c in varying if c not in keep]
    pattern = "|".join(f"^{re.escape(c)}$" for c in keep)
    order = "desc" if M.METRICS[metric].greater_is_better else "asc"
    sort = ["--sort-by", f"val.{metric}", "--sort-order", order]
    if not any(f"val.{metric}" in row for row in rows):
        sort = []  # nothing trained yet: dvc would refuse an unknown sort column
    return ["dvc", "exp", "show", "--drop", ".*", "--keep", pattern, *sort, *extra]


@exits_on_user_error
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    cmd = command(argv)
    print("$ " + shlex.join(cmd), file=sys.stderr)
    sys.exit(subprocess.call(cmd))


if __name__ == "__main__":
    main()
