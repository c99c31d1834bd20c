"""Write outputs so that they appear whole or not at all, and leave no debris when killed.

A stage that fails halfway must not leave a file or directory that looks valid, so everything
is written under a staging name beside its target and renamed into place on success.

A SIGKILL skips every `finally:`, so a killed stage can still leave its staging behind. Staging
names therefore share one pattern, `.staging-<target>-<pid>-<random>`, which `.gitignore` and
`.dvcignore` ignore (so `git add -A` never commits half-written data), and the next write beside
the same target removes the staging of processes that are no longer alive.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STAGING_PREFIX = ".staging-"


def _prefix(target: Path) -> str:
    return f"{STAGING_PREFIX}{target.name}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_stale(target: Path) -> list[Path]:
    """Remove the staging left beside `target` by processes that died; return what went."""
    target = Path(target)
    removed: list[Path] = []
    if not target.parent.is_dir():
        return removed
    prefix = _prefix(target)
    for path in target.parent.glob(f"{prefix}*"):
        pid = path.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _staging_prefix(target: Path) -> str:
    return f"{_prefix(target)}{os.getpid()}-"


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces `target` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(target)
    staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(target), dir=target.parent))
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(target)
    fd, tmp = tempfile.mkstemp(prefix=_staging_prefix(target), dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
