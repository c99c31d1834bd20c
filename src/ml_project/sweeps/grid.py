"""The grid of a sweep: presets, `-S` flags, key checks against params.yaml, expansion.

Pure: nothing here runs DVC, so it is tested on its own (tests/test_sweep_grid.py).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from ml_project.errors import UserError

PRESETS_FILE = "sweeps.yaml"
PARAMS_FILE = "params.yaml"

# Values are whatever params.yaml holds (YAML scalars, lists, mappings).
Grid = dict[str, list[object]]
Point = dict[str, object]


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    grids: tuple[Grid, ...]  # the union of these grids' Cartesian products

    @property
    def size(self) -> int:
        """Grid points before duplicates are dropped."""
        return sum(len(list(itertools.product(*g.values()))) for g in self.grids)


def _as_grid(raw: object, where: str) -> Grid:
    if not isinstance(raw, Mapping) or not raw:
        raise UserError(f"{where}: a grid is a mapping of param -> list of values")
    return {str(k): list(v) if isinstance(v, list) else [v] for k, v in raw.items()}


SEARCHES_KEY = "searches"


def load_presets(root: Path | str = ".") -> dict[str, Preset]:
    """Read `sweeps.yaml`: `name: {description: ..., grid: {param: [values]} | [grids]}`."""
    path = Path(root) / PRESETS_FILE
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise UserError(f"{PRESETS_FILE}: file not found in {Path(root).resolve()}") from None
    except yaml.YAMLError:
        raise UserError(f"{PRESETS_FILE}: not valid YAML") from None
    if not isinstance(raw, Mapping):
        raise UserError(f"{PRESETS_FILE}: expected a mapping of preset names")
    presets = {}
    for name, body in raw.items():
        if name == SEARCHES_KEY:  # Optuna search spaces: read by ml_project.search
            continue
        where = f"{PRESETS_FILE}: {name}"
        if not isinstance(body, Mapping) or "grid" not in body:
            raise UserError(f"{where}: needs a 'grid' (and optionally a 'description')")
        unknown = sorted(set(body) - {"grid", "description"})
        if unknown:
            raise UserError(f"{where}: unknown key '{unknown[0]}' (valid keys: description, grid)")
        grids = body["grid"] if isinstance(body["grid"], list) else [body["grid"]]
        presets[str(name)] = Preset(
            str(name),
            str(body.get("description", "")),
            tuple(_as_grid(g, f"{where}: grid") for g in grids),
        )
    return presets


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and quotes: `a,[1, 2],'x,y'` -> 3 items."""
    items: list[str] = []
    depth, quote, start = 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items]


def parse_set_flags(flags: Iterable[str]) -> Grid:
    """`["model=rf,hgb", "models.hgb.max_iter=50"]` -> `{"model": ["rf", "hgb"], ...}`."""
    grid: Grid = {}
    for flag in flags:
        key, sep, values = flag.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise UserError(f"-S {flag!r}: expected key=value[,value...], e.g. -S 'model=rf,hgb'")
        grid[key.strip()] = [yaml.safe_load(v) for v in _split_top_level(values)]
    return grid


def grids_for(
    preset: str | None,
    params: Mapping[str, Sequence[object]] | None,
    presets: Mapping[str, Preset],
) -> tuple[list[Grid], str]:
    """The grids to sweep and where they came from (for error messages).

    A preset's grids, with `params` adding or replacing keys; or `params` alone.
    """
    if preset is not None:
        if preset not in presets:
            valid = ", ".join(presets) or "none defined"
            raise UserError(f"unknown preset '{preset}' (valid: {valid})")
        extra = {k: list(v) for k, v in (params or {}).items()}
        grids, where = [{**g, **extra} for g in presets[preset].grids], f"{PRESETS_FILE}: {preset}"
    elif params:
        grids, where = [{k: list(v) for k, v in params.items()}], "-S"
    else:
        raise UserError("nothing to sweep: name a preset or give -S key=value[,value...]")
    for grid in grids:
        for key, values in grid.items():
            if not values:
                raise UserError(f"{where}: {key}: no values to sweep")
    return grids, where


def check_keys(grid: Mapping[str, object], params: Mapping[str, object], where: str) -> None:
    """Every grid key must name one value in params.yaml; the error lists its siblings."""
    from ml_project.params import flatten

    flat = flatten(params)
    for key in grid:
        if key in flat:
            continue
        parent = key.rpartition(".")[0]
        siblings = sorted(
            {k[len(parent) + 1 :].split(".")[0] for k in flat if k.startswith(f"{parent}.")}
        )
        if not parent or not siblings:
            scope, siblings = "top-level keys", list(params)
        else:
            scope = f"keys under {parent}"
        raise UserError(
            f"{where}: {key}: not a param in {PARAMS_FILE} (valid {scope}: {', '.join(siblings)})"
        )


def _effective(point: Mapping[str, object], params: Mapping[str, object]) -> str:
    """What the pipeline really trains: `models.<m>.*` only matters when `model` is `m`."""
    model = point.get("model", params.get("model"))
    kept = {
        k: v for k, v in point.items() if not (k.startswith("models.") and k.split(".")[1] != model)
    }
    return json.dumps(kept, sort_keys=True, default=str)


def expand(
    grids: Sequence[Mapping[str, list[object]]], params: Mapping[str, object], where: str
) -> tuple[list[Point], int]:
    """The grid points, in order, and how many were dropped as duplicates of an earlier one.

    A point that only differs in the hyperparameters of a model it does not train is the
    same experiment: DVC would restore it from the run-cache and no tracker would see a run.
    """
    points: list[Point] = []
    seen: set[str] = set()
    dropped = 0
    for grid in grids:
        check_keys(grid, params, where)
        for values in itertools.product(*grid.values()):
            point = dict(zip(grid, values, strict=True))
            key = _effective(point, params)
            if key in seen:
                dropped += 1
                continue
            seen.add(key)
            points.append(point)
    return points, dropped


def override(key: str, value: object) -> str:
    """One `-S key=value` for DVC (Hydra override syntax)."""
    if isinstance(value, str) and not re.fullmatch(r"[\w./-]+", value):
        return f"{key}='{value}'"
    return f"{key}={json.dumps(value) if not isinstance(value, str) else value}"
