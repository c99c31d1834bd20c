"""Search presets: the `searches:` section of `sweeps.yaml`, and today's grid presets as grids.

    searches:
      hgb-tpe:
        description: boosting, learning rate x tree size x regularization
        trials: 12              # the study's budget, all machines together
        sampler: tpe            # tpe (default) | random | grid
        pruner: median          # median (default) | none
        direction: auto         # auto: what train.metric implies | maximize | minimize
        space: {...}            # see space.py

A grid preset (`hgb-lr: {grid: ...}`) is also a search: its grid points, run by Optuna's grid
sampler, so one engine runs both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ml_project.errors import UserError
from ml_project.search import space as S

PRESETS_FILE = "sweeps.yaml"
SEARCHES_KEY = "searches"
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "none")
DIRECTIONS = ("auto", "maximize", "minimize")
SEARCH_KEYS = ("description", "direction", "pruner", "sampler", "space", "trials")


@dataclass(frozen=True)
class SearchPreset:
    name: str
    description: str
    space: S.Space
    trials: int | None = None  # None: the grid's size (grid sampler), else required
    sampler: str = "tpe"
    pruner: str = "median"
    direction: str = "auto"
    grid: tuple[dict[str, Any], ...] = ()  # the points, for the grid sampler


def _read(root: Path) -> dict[str, Any]:
    path = root / PRESETS_FILE
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise UserError(f"{PRESETS_FILE}: file not found in {root.resolve()}") from None
    except yaml.YAMLError:
        raise UserError(f"{PRESETS_FILE}: not valid YAML") from None
    if not isinstance(raw, Mapping):
        raise UserError(f"{PRESETS_FILE}: expected a mapping of preset names")
    return dict(raw)


def _choice(body: Mapping[str, Any], key: str, valid: tuple[str, ...], where: str) -> str:
    value = body.get(key, valid[0])
    if value not in valid:
        raise UserError(f"{where}: {key}: '{value}' is not one of {', '.join(valid)}")
    return value


def _trials(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{where}: trials: must be a positive whole number (got {value!r})")
    return value


def _search(name: str, body: Any) -> SearchPreset:
    where = f"{PRESETS_FILE}: {SEARCHES_KEY}: {name}"
    if not isinstance(body, Mapping) or "space" not in body:
        raise UserError(f"{where}: needs a 'space' (see the comment at the top of {PRESETS_FILE})")
    unknown = sorted(set(body) - set(SEARCH_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown key '{unknown[0]}' (valid: {', '.join(SEARCH_KEYS)})")
    space = S.parse_space(body["space"], f"{where}: space")
    sampler = _choice(body, "sampler", SAMPLERS, where)
    return SearchPreset(
        name=name,
        description=str(body.get("description", "")),
        space=space,
        trials=_trials(body.get("trials"), where),
        sampler=sampler,
        pruner=_choice(body, "pruner", PRUNERS, where),
        direction=_choice(body, "direction", DIRECTIONS, where),
    )


def _grid(name: str, body: Any, params: Mapping[str, Any]) -> SearchPreset:
    """A grid preset of `sweeps.yaml` as the grid sampler's points (the grid command's own
    expansion: duplicates that train the same model dropped)."""
    from ml_project.sweeps import expand

    where = f"{PRESETS_FILE}: {name}"
    if not isinstance(body, Mapping) or "grid" not in body:
        raise UserError(f"{where}: needs a 'grid' or a 'space' under {SEARCHES_KEY}:")
    raw = body["grid"] if isinstance(body["grid"], list) else [body["grid"]]
    grids = []
    for grid in raw:
        if not isinstance(grid, Mapping) or not grid:
            raise UserError(f"{where}: grid: a grid is a mapping of param -> list of values")
        grids.append({str(k): v if isinstance(v, list) else [v] for k, v in grid.items()})
    points, _ = expand(grids, params, where)
    description = str(body.get("description", ""))
    return SearchPreset(name, description, (), None, "grid", "none", "auto", tuple(points))


def load_search(root: Path, name: str, params: Mapping[str, Any]) -> SearchPreset:
    """The search preset `name` (from `searches:`), or the grid preset `name` as a grid search;
    every key checked against params.yaml."""
    raw = _read(root)
    searches = raw.pop(SEARCHES_KEY, None) or {}
    if not isinstance(searches, Mapping):
        raise UserError(f"{PRESETS_FILE}: {SEARCHES_KEY}: expected a mapping of search names")
    if name in searches:
        preset = _search(name, searches[name])
        S.check(preset.space, params, f"{PRESETS_FILE}: {SEARCHES_KEY}: {name}")
        if preset.sampler == "grid":
            where = f"{PRESETS_FILE}: {SEARCHES_KEY}: {name}"
            points = S.grid_points(preset.space, where)
            return SearchPreset(**{**preset.__dict__, "grid": tuple(points)})
        if preset.trials is None:
            raise UserError(f"{PRESETS_FILE}: {SEARCHES_KEY}: {name}: trials: a budget is needed")
        return preset
    if name in raw:
        return _grid(name, raw[name], params)
    valid = sorted(searches) + sorted(raw)
    raise UserError(f"unknown search '{name}' (valid: {', '.join(valid) or 'none defined'})")


def list_searches(root: Path) -> list[tuple[str, str, str]]:
    """(name, budget, description) of every search and grid preset."""
    raw = _read(root)
    searches = raw.pop(SEARCHES_KEY, None) or {}
    rows = []
    for name, body in searches.items():
        body = body if isinstance(body, Mapping) else {}
        budget = f"{body.get('trials', '?')} trial(s), {body.get('sampler', 'tpe')}"
        rows.append((str(name), budget, str(body.get("description", ""))))
    for name, body in raw.items():
        body = body if isinstance(body, Mapping) else {}
        rows.append((str(name), "grid", str(body.get("description", ""))))
    return rows
