"""User-facing errors: one line, non-zero exit, no traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with params, data or arguments that the user must fix.

    The message is a single line that names the offending key, column or file and, where
    there is a closed set, the valid choices.
    """


class ParamsError(UserError):
    """params.yaml holds an unknown key, a wrong type or an out-of-range value."""


class DataError(UserError):
    """The input table cannot be used as it is."""


# Checks that must still hold when a stage has done its work (see `params.read_params`),
# registered during one `main()` call and run after it succeeds.
_FINAL_CHECKS: dict[str, Callable[[], None]] = {}


def check_at_exit(key: str, check: Callable[[], None]) -> None:
    """Run `check` after the stage's `main()` succeeds; a `UserError` it raises fails the stage.

    The first check registered under `key` in a call wins.
    """
    _FINAL_CHECKS.setdefault(key, check)


def exits_on_user_error(func: F) -> F:
    """Turn a `UserError` raised by a stage's `main()` into one stderr line and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        _FINAL_CHECKS.clear()
        try:
            result = func(*args, **kwargs)
            for check in list(_FINAL_CHECKS.values()):
                check()
            return result
        except UserError as exc:
            message = " ".join(str(exc).split())
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None
        finally:
            _FINAL_CHECKS.clear()

    return wrapper  # type: ignore[return-value]
