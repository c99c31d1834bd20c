"""Put this checkout's `src/` first on sys.path, and size the thread pools.

A queued `dvc exp run` executes in a temporary copy of the repository; the code that runs must
be that copy's, not whatever checkout the virtual environment's editable install points to.

The pools (OpenMP, BLAS, torch) read their size when numpy, scikit-learn or torch first loads,
which is after this module runs: see `ml_project/threads.py`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ml_project import threads  # noqa: E402  (from the src/ just put first)

threads.apply()
