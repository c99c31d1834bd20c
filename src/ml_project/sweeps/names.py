"""Experiment names: `t1`, `t2`, ... (the next free numbers), or a prefix the user gives."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from ml_project.errors import UserError

AUTO_NAME = re.compile(r"t(\d+)")


def existing_names(root: Path) -> set[str]:
    """Names of every experiment in the repository, finished, queued, running or failed, and
    on its git remote when that is reachable (so two clones do not both make `t5`)."""
    from ml_project.sweeps.dvc_queue import experiment_names
    from ml_project.versions import remote_experiment_names  # the git remote's, if reachable

    return experiment_names(root) | set(remote_experiment_names(root))


def next_names(taken: Iterable[str], count: int) -> list[str]:
    """`count` fresh `t<n>` names above the highest one taken."""
    numbers = [int(m.group(1)) for n in taken if (m := AUTO_NAME.fullmatch(n))]
    start = max(numbers, default=0) + 1
    return [f"t{i}" for i in range(start, start + count)]


def prefixed_names(name: str, count: int, taken: Iterable[str]) -> list[str]:
    """`name` alone for one experiment, else `name-1`, `name-2`, ...; none may be taken."""
    names = [name] if count == 1 else [f"{name}-{i}" for i in range(1, count + 1)]
    clash = sorted(set(names) & set(taken))
    if clash:
        raise UserError(f"--name: experiment '{clash[0]}' already exists; choose another name")
    return names


def names_for(root: Path, count: int, name: str | None) -> list[str]:
    """`count` names for new experiments in the repository at `root` (see `prefixed_names`)."""
    taken = existing_names(root)
    return next_names(taken, count) if name is None else prefixed_names(name, count, taken)
