"""Search spaces: what a trial may set, parsed from `sweeps.yaml` and checked before anything runs.

A space maps params.yaml keys to one of

- a fixed value: `model: hgb`;
- a list, a categorical choice: `models.hgb.max_depth: [null, 4, 8]`;
- a range: `{low: 0.01, high: 0.3, log: true}` (floats), `{low: 8, high: 64}` (ints, because
  both ends are), optionally `step:`;
- a mapping of choices to the sub-space each one opens (a conditional space), e.g. the
  hyperparameters of the model that was picked:

      model:
        mlp: {models.mlp.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}
        resnet: {models.resnet.n_blocks: {low: 1, high: 4}}

Sampling is define-by-run: `sample(space, trial)` asks the trial for each value in turn, so a
branch's parameters exist only in the trials that took the branch.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ml_project.errors import UserError

RANGE_KEYS = frozenset({"low", "high", "log", "step"})
# Optuna's categorical choices must be one of these; other values (lists) go through JSON.
PRIMITIVE = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class Fixed:
    value: Any


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False
    step: float | None = None
    integer: bool = False


@dataclass(frozen=True)
class Choice:
    choices: tuple[Any, ...]
    branches: tuple[tuple[Any, Space], ...] = ()  # (choice, the sub-space it opens)


Space = tuple[tuple[str, Fixed | Range | Choice], ...]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _range(raw: Mapping[str, Any], where: str) -> Range:
    unknown = sorted(set(raw) - RANGE_KEYS)
    if unknown:
        raise UserError(f"{where}: unknown key '{unknown[0]}' (valid: high, log, low, step)")
    if "low" not in raw or "high" not in raw:
        raise UserError(f"{where}: a range needs both low and high")
    low, high, log, step = raw["low"], raw["high"], raw.get("log", False), raw.get("step")
    if not (_number(low) and _number(high)):
        raise UserError(f"{where}: low and high must be numbers (got {low!r}, {high!r})")
    if not math.isfinite(low) or not math.isfinite(high):
        raise UserError(f"{where}: low and high must be finite")
    if low >= high:
        raise UserError(f"{where}: low ({low}) must be below high ({high})")
    if not isinstance(log, bool):
        raise UserError(f"{where}: log must be true or false")
    if log and low <= 0:
        raise UserError(f"{where}: a log range needs low > 0 (got {low})")
    if step is not None and (not _number(step) or step <= 0):
        raise UserError(f"{where}: step must be a positive number (got {step!r})")
    if step is not None and log:
        raise UserError(f"{where}: step and log cannot be combined")
    integer = isinstance(low, int) and isinstance(high, int) and isinstance(step or 1, int)
    return Range(float(low), float(high), log, step, integer)


def parse_space(raw: Any, where: str) -> Space:
    """The space of a `space:` mapping, or a one-line error naming the key at fault."""
    if not isinstance(raw, Mapping) or not raw:
        raise UserError(f"{where}: a space is a mapping of param -> values, range or choices")
    dims: list[tuple[str, Fixed | Range | Choice]] = []
    for key, value in raw.items():
        at = f"{where}: {key}"
        if isinstance(value, list):
            if not value:
                raise UserError(f"{at}: no values to choose from")
            dims.append((str(key), Choice(tuple(value))))
        elif isinstance(value, Mapping) and set(value) & {"low", "high"}:  # a range, or a typo
            dims.append((str(key), _range(value, at)))
        elif isinstance(value, Mapping) and value:
            branches = tuple(
                (choice, parse_space(sub, f"{at}: {choice}") if sub else ())
                for choice, sub in value.items()
            )
            dims.append((str(key), Choice(tuple(value), branches)))
        elif isinstance(value, Mapping):
            raise UserError(f"{at}: an empty mapping is neither a range nor a set of choices")
        else:
            dims.append((str(key), Fixed(value)))
    return tuple(dims)


def keys(space: Space) -> list[str]:
    """Every key the space may set, branches included, in order."""
    found: list[str] = []
    for key, dim in space:
        found.append(key)
        for _, sub in getattr(dim, "branches", ()):
            found += keys(sub)
    return list(dict.fromkeys(found))


def check(space: Space, params: Mapping[str, Any], where: str) -> None:
    """Every key must be a param of params.yaml; a `model` branch may only set its own model's
    hyperparameters (another model's would never be trained)."""
    from ml_project.sweeps import check_keys

    check_keys(dict.fromkeys(keys(space)), params, where)
    for key, dim in space:
        for choice, sub in getattr(dim, "branches", ()):
            if key != "model":
                continue
            for inner in keys(sub):
                if inner.startswith("models.") and inner.split(".")[1] != str(choice):
                    raise UserError(
                        f"{where}: model: {choice}: {inner} is another model's "
                        f"hyperparameter (only models.{choice}.* apply)"
                    )
        if key == "model":
            models = set(params.get("models") or {})
            for choice in (
                dim.choices if isinstance(dim, Choice) else (getattr(dim, "value", None),)
            ):
                if str(choice) not in models:
                    raise UserError(
                        f"{where}: model: unknown model '{choice}' "
                        f"(valid: {', '.join(sorted(models))})"
                    )


def _encoded(choices: tuple[Any, ...]) -> tuple[list[Any], bool]:
    if all(isinstance(c, PRIMITIVE) for c in choices):
        return list(choices), False
    return [json.dumps(c) for c in choices], True


def sample(space: Space, trial) -> dict[str, Any]:
    """One point of the space, each value asked of the Optuna `trial` (define-by-run)."""
    point: dict[str, Any] = {}
    for key, dim in space:
        if isinstance(dim, Fixed):
            point[key] = dim.value
        elif isinstance(dim, Range) and dim.integer:
            point[key] = trial.suggest_int(
                key, int(dim.low), int(dim.high), step=int(dim.step or 1), log=dim.log
            )
        elif isinstance(dim, Range):
            value = trial.suggest_float(key, dim.low, dim.high, step=dim.step, log=dim.log)
            # Six significant digits: `-S` and DVC's params.yaml writer round-trip these
            # exactly (a full-precision float's last digit did not, and the train stage's
            # params check then failed the trial).
            point[key] = float(f"{value:.6g}")
        else:
            options, encoded = _encoded(dim.choices)
            picked = trial.suggest_categorical(key, options)
            value = json.loads(picked) if encoded else picked
            point[key] = value
            for choice, sub in dim.branches:
                if choice == value:
                    point.update(sample(sub, trial))
    return point


def grid_points(space: Space, where: str) -> list[dict[str, Any]]:
    """Every point of a space made of fixed values, choices and stepped int ranges (for the grid
    sampler); a float range has no finite grid."""
    points: list[dict[str, Any]] = [{}]
    for key, dim in space:
        if isinstance(dim, Fixed):
            options: list[list[dict[str, Any]]] = [[{key: dim.value}]]
        elif isinstance(dim, Range):
            if not dim.integer:
                raise UserError(
                    f"{where}: {key}: the grid sampler needs values to list, not a float range"
                )
            step = int(dim.step or 1)
            values = range(int(dim.low), int(dim.high) + 1, step)
            options = [[{key: v}] for v in values]
        else:
            branches = dict(dim.branches)
            options = [
                [{key: c, **sub} for sub in grid_points(branches.get(c, ()), where)]
                for c in dim.choices
            ]
        points = [{**p, **o} for p in points for o in itertools.chain.from_iterable(options)]
    return points
