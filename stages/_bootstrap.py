"""Put this checkout's `src/` first on sys.path.

A queued `dvc exp run` executes in a temporary copy of the repository; the code that runs must
be that copy's, not whatever checkout the virtual environment's editable install points to.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
