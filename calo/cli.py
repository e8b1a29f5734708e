"""What every entry point shares: bad input ends as one line on stderr and exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from calo.errors import CaloError

__all__ = ["exit_on_user_error"]

T = TypeVar("T")


def exit_on_user_error(function: Callable[..., T], *args: object) -> T:
    try:
        return function(*args)
    except CaloError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
