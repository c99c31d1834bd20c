"""Search beyond grids: Optuna studies whose trials are DVC experiments.

    python -m ml_project.search list
    python -m ml_project.search hgb-tpe --trials 40 -j 2
    python -m ml_project.search hgb-tpe --storage postgresql://user:pw@db/optuna  # many machines

`run_search(...)` is the same from Python and returns the results as a DataFrame. Search
spaces live under `searches:` in `sweeps.yaml` (see `space.py`); a grid preset runs too, with
Optuna's grid sampler. Storage, budget and heartbeats: `study.py`; the queue: `queue.py`.
"""

from ml_project.search.runner import run_search, table

__all__ = ["run_search", "table"]
