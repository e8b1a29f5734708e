"""Where the project lives: every relative path in the config resolves against the project root,
never against the working directory (Hydra may run jobs from elsewhere)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["PROJECT_ROOT", "CONFIG_DIR", "atomic_path", "file_sha256", "resolve"]

PROJECT_ROOT = Path(os.environ.get("CALO_ROOT", Path(__file__).resolve().parents[1]))
CONFIG_DIR = PROJECT_ROOT / "conf"


def resolve(path: str | os.PathLike[str]) -> Path:
    """``path`` itself if absolute (after ``~`` expansion), else under the project root."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else PROJECT_ROOT / candidate


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` only when the block
    completes, and removed when it fails, so an interrupted write never leaves a file that looks
    whole. The temporary name ends with ``path``'s name (Keras checks a weights file's suffix)
    and the file gets the permissions of a newly created one (``mkstemp`` makes it private)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=".part-", suffix=f"-{path.name}", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        umask = os.umask(0)
        os.umask(umask)
        temporary.chmod(0o666 & ~umask)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
