"""Put this checkout's `src/` first on sys.path, hand the stage to the fork server, size the
thread pools.

A queued `dvc exp run` executes in a temporary copy of the repository; the code that runs must
be that copy's, not whatever checkout the virtual environment's editable install points to.

With a fork server running (`ml_project/forkserver.py`), this process only forwards the stage
to a child of the server, which has the heavy libraries imported already, and exits with the
child's status; the child imports this checkout's code and runs the stage script.

The pools (OpenMP, BLAS, torch) read their size when numpy, scikit-learn or torch first loads,
which is after this module runs: see `ml_project/threads.py`. In a fork server's child they are
loaded already, so they are resized at run time instead.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ml_project import forkserver, threads  # noqa: E402  (from the src/ just put first)

forkserver.delegate(getattr(sys.modules["__main__"], "__file__", None))  # returns to run here
threads.apply(loaded=forkserver.is_child())
