"""Where the project lives: every relative path in the config resolves against the project root,
never against the working directory (Hydra may run jobs from elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PROJECT_ROOT", "CONFIG_DIR", "resolve"]

PROJECT_ROOT = Path(os.environ.get("CALO_ROOT", Path(__file__).resolve().parents[1]))
CONFIG_DIR = PROJECT_ROOT / "conf"


def resolve(path: str | os.PathLike[str]) -> Path:
    """``path`` itself if absolute (after ``~`` expansion), else under the project root."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else PROJECT_ROOT / candidate
