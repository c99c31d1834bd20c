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


def exits_on_user_error(func: F) -> F:
    """Turn a `UserError` raised by a stage's `main()` into one stderr line and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            message = " ".join(str(exc).split())
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None

    return wrapper  # type: ignore[return-value]
