"""What every entry point shares: bad input ends as one line on stderr and exit status 2, and
SIGTERM (kill, a scheduler's stop) ends the work as Ctrl-C does."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from calo.errors import CaloError

__all__ = ["exit_on_user_error", "terminate_as_interrupt"]

T = TypeVar("T")


def exit_on_user_error(function: Callable[..., T], *args: object) -> T:
    try:
        return function(*args)
    except CaloError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as interrupt:  # Ctrl-C or SIGTERM: the run is already KILLED
        print(f"interrupted ({interrupt or 'Ctrl-C'}): what was logged and saved so far is "
              "kept; the MLflow run, if any, is marked KILLED", file=sys.stderr)
        sys.exit(130)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt in the main thread, so the work ends
    as after Ctrl-C (the MLflow run KILLED, files closed, checkpoints kept). Elsewhere than the
    main thread (where Python cannot install handlers) the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
