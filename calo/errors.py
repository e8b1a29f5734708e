"""The one exception type a user sees: what was wrong and what to do, in one line."""

from __future__ import annotations

__all__ = ["CaloError"]


class CaloError(Exception):
    """Bad input (file, override, model, topology). Entry points print it as one line and exit 2."""
