"""Hold a queued experiment at the start of a stage until a test lets it go (tests only).

A stage whose cmd starts with `python tests/helpers/gate.py && ...` goes on at once, unless
`SWEEP_GATES` names a directory holding `<experiment>.hold` (the name is `DVC_EXP_NAME`).
Then it takes the hold (renames it to `<experiment>.held`: one attempt of the experiment
only, so a retry runs through) and waits for `<experiment>.open`. A test thus injects its
fault while that attempt is certainly running, instead of racing it. It gives up (exit 1)
when the process that started it is gone or after `SWEEP_GATE_SECONDS` (600), so an
experiment killed under it never goes on. Standard library only: it runs in DVC's workspace.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def main() -> int:
    gates, name = os.environ.get("SWEEP_GATES"), os.environ.get("DVC_EXP_NAME")
    if not gates or not name:
        return 0
    try:  # atomic: of two attempts racing here, one takes the hold
        os.rename(Path(gates) / f"{name}.hold", Path(gates) / f"{name}.held")
    except FileNotFoundError:
        return 0
    parent = os.getppid()
    deadline = time.monotonic() + float(os.environ.get("SWEEP_GATE_SECONDS", "600"))
    while not (Path(gates) / f"{name}.open").exists():
        if os.getppid() != parent or time.monotonic() > deadline:
            return 1
        time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
