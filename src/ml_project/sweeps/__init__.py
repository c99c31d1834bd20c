"""Sweeps: grids of params run through DVC's experiment queue, with readable names.

A sweep queues one DVC experiment per grid point (`dvc exp run --queue`), starts the queue's
workers, waits with a progress bar, and returns one row per experiment: its name, status,
the swept params and its metrics, the best one marked. Presets live in `sweeps.yaml`.

Experiments are named `t1`, `t2`, ... (the next free numbers across all experiments of the
repository) unless a name is given. DVC's parallel workers are not fully reliable, so the
waiting loop checks what it is told: workers that exit with work left are restarted, a task
that fails without a project `error:` line (a DVC or infrastructure failure, a killed
process) is queued again up to `retries` times, and the result always says which experiments
failed and why.

    python -m ml_project.sweeps list
    python -m ml_project.sweeps run hgb-lr -j 2
    python -m ml_project.sweeps run -S 'model=rf,hgb' -S 'models.hgb.learning_rate=0.05,0.1'
    dvc exp run -n $(python -m ml_project.sweeps next-name) -S model=rf   # one, named t<n>

The parts, in the order of dependence:
    grid.py        presets, `-S` flags, key checks, expansion (pure: no DVC)
    names.py       `t<n>` names and name prefixes
    dvc_queue.py   the only code that touches DVC's queue internals; checks DVC's version
    supervisor.py  queue, watch, restart workers, retry transient failures
    report.py      the results frame and the printed table
    run.py         `run_sweep`, the orchestration; cli.py the command line
"""

from ml_project.sweeps.cli import main
from ml_project.sweeps.grid import (
    PARAMS_FILE,
    PRESETS_FILE,
    Preset,
    check_keys,
    expand,
    grids_for,
    load_presets,
    override,
    parse_set_flags,
)
from ml_project.sweeps.names import existing_names, names_for, next_names
from ml_project.sweeps.report import results, table
from ml_project.sweeps.run import run_sweep, thread_budget
from ml_project.sweeps.supervisor import Sweep, Task, failure_reason

__all__ = [
    "PARAMS_FILE",
    "PRESETS_FILE",
    "Preset",
    "Sweep",
    "Task",
    "check_keys",
    "existing_names",
    "expand",
    "failure_reason",
    "grids_for",
    "load_presets",
    "main",
    "names_for",
    "next_names",
    "override",
    "parse_set_flags",
    "results",
    "run_sweep",
    "table",
    "thread_budget",
]
