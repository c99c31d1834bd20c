"""`python -m ml_project.search PRESET --trials N -j J`: see the package's docstring."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ml_project.errors import UserError, exits_on_user_error


class _Parser(argparse.ArgumentParser):
    """Bad arguments are a one-line `error:` like every other input error (exit status 2)."""

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message}")


@exits_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    from ml_project.search.presets import PRUNERS, SAMPLERS

    parser = _Parser(
        prog="python -m ml_project.search",
        description="Run (or join) an Optuna study whose trials are DVC experiments.",
    )
    parser.add_argument(
        "preset", help="a search of sweeps.yaml (searches:), a grid preset, or 'list'"
    )
    parser.add_argument("--trials", type=int, help="the study's budget, all machines together")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="trials at once here (default 2)")
    parser.add_argument("--study", help="study name (default: the preset's); trials: <study>-t<k>")
    parser.add_argument(
        "--storage",
        help="database URL shared by many machines, or a journal file "
        "(default: $ML_PROJECT_SEARCH_STORAGE, else optuna.journal at the repo root)",
    )
    parser.add_argument("--sampler", choices=SAMPLERS, help="default: the preset's (tpe)")
    parser.add_argument("--pruner", choices=PRUNERS, help="default: the preset's (median)")
    parser.add_argument(
        "--push", help="git remote to dvc exp push each trial to (default: origin with a server)"
    )
    parser.add_argument("--seed", type=int, help="the sampler's seed")
    args = parser.parse_args(argv)

    if args.preset == "list":
        from ml_project.search.presets import list_searches
        from ml_project.sweeps.dvc_queue import find_root

        for name, budget, description in list_searches(find_root()):
            print(f"{name:<16} {budget:<22} {description}")
        return 0

    from ml_project.search import run_search, table

    frame = run_search(
        args.preset,
        trials=args.trials,
        jobs=args.jobs,
        study=args.study,
        storage=args.storage,
        sampler=args.sampler,
        pruner=args.pruner,
        push=args.push,
        seed=args.seed,
    )
    print(table(frame))
    states = frame["state"].value_counts().to_dict() if "state" in frame else {}
    counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no trials"
    best = frame.attrs["best"]
    print(
        f"\nstudy {frame.attrs['study']} ({frame.attrs['storage']}): {counts} here; "
        f"best by {frame.attrs['metric']}: {best or '-'}"
    )
    for name, reason in frame.attrs["failed"].items():
        print(f"failed: {name}: {reason}")
    if best:
        print(f"replay the best: {frame.attrs['replay']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
