"""The one exception type a user sees: what was wrong and what to do, in one line."""

from __future__ import annotations

__all__ = ["CaloError", "one_line"]


class CaloError(Exception):
    """Bad input (file, override, model, topology). Entry points print it as one line and exit 2."""


def one_line(error: BaseException, limit: int | None = None) -> str:
    """The first non-blank line of ``error``'s message (its type's name when it has none), cut
    to ``limit`` characters: a library's multi-line message, fit for a one-line error or tag."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:limit]
