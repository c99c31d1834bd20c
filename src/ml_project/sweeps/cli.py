"""`python -m ml_project.sweeps {list,run,next-name}`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from ml_project.errors import UserError, exits_on_user_error
from ml_project.sweeps import dvc_queue
from ml_project.sweeps.grid import load_presets, parse_set_flags
from ml_project.sweeps.names import existing_names, next_names
from ml_project.sweeps.report import table
from ml_project.sweeps.run import run_sweep

DESCRIPTION = "Sweeps: grids of params run through DVC's experiment queue, with readable names."


class _Parser(argparse.ArgumentParser):
    """Bad arguments are a one-line `error:` like every other input error."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m ml_project.sweeps", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{list,run,next-name}")
    commands.add_parser("list", help="the presets of sweeps.yaml")
    commands.add_parser(
        "next-name", help="print the next free t<n>, e.g. dvc exp run -n $(... next-name)"
    )
    run = commands.add_parser("run", help="run a preset or a -S grid through the queue")
    run.add_argument("preset", nargs="?", help="a preset of sweeps.yaml")
    run.add_argument(
        "-S",
        "--set-param",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="sweep a param over comma-separated values (adds to or replaces the preset's)",
    )
    run.add_argument("-j", "--jobs", type=int, default=2, help="parallel workers (default 2)")
    run.add_argument("-n", "--name", help="name prefix (default: t1, t2, ...)")
    run.add_argument("--retries", type=int, default=1, help="re-queues of a transient failure")
    run.add_argument("--timeout", type=float, help="seconds before a running experiment is killed")
    return parser


@exits_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "next-name":
        print(next_names(existing_names(dvc_queue.find_root()), 1)[0])
        return 0
    if args.command == "list":
        for preset in load_presets(dvc_queue.find_root()).values():
            print(f"{preset.name:<16} {preset.size:>3} experiment(s)  {preset.description}")
        return 0

    frame = run_sweep(
        args.preset,
        parse_set_flags(args.set_param) or None,
        jobs=args.jobs,
        name=args.name,
        retries=args.retries,
        timeout=args.timeout,
    )
    print(table(frame))
    failed, best = frame.attrs["failed"], frame.attrs["best"]
    succeeded = len(frame) - len(failed)
    print(
        f"\n{succeeded} of {len(frame)} succeeded; best by {frame.attrs['metric']}: {best or '-'}"
    )
    for task_name, reason in failed.items():
        print(f"failed: {task_name}: {reason}")
    if best:
        print(f"replay the best: dvc exp apply {best} && dvc repro")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
