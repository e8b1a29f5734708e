"""Training checkpoints: both networks, both optimizers and the loop's position, in one file
written atomically (a temporary file renamed when complete), so a killed training never leaves
a half-written checkpoint that a resume would trust.

Each checkpoint carries its training's ``training_id``; pruning removes only older files of the
same training, so the files of another training in the folder are never deleted."""

from __future__ import annotations

import json
import secrets
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from calo.errors import CaloError, one_line
from calo.paths import atomic_path

__all__ = ["TrainState", "UnreadableCheckpoint", "checkpoints", "is_checkpoint",
           "latest_checkpoint", "load_checkpoint", "load_network_weights", "new_training_id",
           "read_state", "save_checkpoint"]

PREFIX = "step-"
SUFFIX = ".ckpt.npz"
KEEP = 2  # older checkpoints of the same training are removed

# What reading a damaged or foreign checkpoint file raises (np.load, zipfile, json, TrainState).
_UNREADABLE = (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile)


class UnreadableCheckpoint(CaloError):
    """A checkpoint file that cannot be read (truncated, damaged, not a checkpoint)."""


@dataclass
class TrainState:
    """Where the loop stands: the next global step, the best validation so far, the run, and
    which training this is (``training_id``: made at a fresh start, kept on resume; None in
    checkpoints written before it existed)."""

    step: int = 0
    best_score: float = float("inf")
    best_epoch: int = -1
    mlflow_run_id: str | None = None
    fingerprint: str = ""
    training_id: str | None = None

    @classmethod
    def from_json(cls, text: str) -> TrainState:
        """The stored state; keys this version does not know are ignored."""
        stored = json.loads(text)
        if not isinstance(stored, dict):
            raise ValueError(f"the training state is a {type(stored).__name__}, not an object")
        known = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in stored.items() if key in known})


def new_training_id() -> str:
    return secrets.token_hex(8)


def _groups(models_and_optimizers: dict) -> dict[str, list]:
    return {name: list(obj.variables) for name, obj in models_and_optimizers.items()}


def is_checkpoint(location: str) -> bool:
    """Whether a path names a checkpoint file (by its name, as the loop writes them)."""
    return location.endswith(SUFFIX)


def checkpoints(folder: Path) -> list[Path]:
    """The folder's checkpoint files, oldest step first."""
    return sorted(folder.glob(f"{PREFIX}*{SUFFIX}"))


def save_checkpoint(folder: Path, models_and_optimizers: dict, state: TrainState) -> Path:
    """Write ``step-<n>.ckpt.npz`` into ``folder`` and prune all but the newest ones of the
    same training."""
    arrays = {"state": np.frombuffer(json.dumps(asdict(state)).encode(), dtype=np.uint8)}
    for group, variables in _groups(models_and_optimizers).items():
        for index, variable in enumerate(variables):
            arrays[f"{group}/{index:04d}"] = np.asarray(variable)
    path = folder / f"{PREFIX}{state.step:08d}{SUFFIX}"
    with atomic_path(path) as temporary, open(temporary, "wb") as stream:
        np.savez(stream, **arrays)
    _prune(folder, state.training_id, keep=path)
    return path


def _prune(folder: Path, training_id: str | None, keep: Path) -> None:
    """Remove all but the newest KEEP checkpoints of ``training_id``. A file of another training,
    of none (written before training ids) or that cannot be read is never removed."""
    if training_id is None:
        return
    ours = [path for path in checkpoints(folder) if _training_id(path) == training_id]
    for old in ours[:-KEEP]:
        if old != keep:
            old.unlink(missing_ok=True)


def _training_id(path: Path) -> str | None:
    try:
        return read_state(path).training_id
    except UnreadableCheckpoint:
        return None


@contextmanager
def _opened(path: Path) -> Iterator:
    """The checkpoint's arrays (read on access); whatever a damaged or foreign file raises
    while they are read becomes UnreadableCheckpoint."""
    try:
        with np.load(path) as stored:
            yield stored
    except _UNREADABLE as error:
        raise UnreadableCheckpoint(f"{path} is not a readable checkpoint "
                                   f"({one_line(error)})") from error


def _state(stored) -> TrainState:
    return TrainState.from_json(stored["state"].tobytes().decode())


def read_state(path: Path) -> TrainState:
    """Only the state of a checkpoint (np.load reads the one member, not the weights)."""
    with _opened(path) as stored:
        return _state(stored)


def latest_checkpoint(folder: Path) -> Path | None:
    candidates = checkpoints(folder)
    return candidates[-1] if candidates else None


def load_checkpoint(path: Path, models_and_optimizers: dict, fingerprint: str) -> TrainState:
    """Restore every variable from ``path``; refuse a checkpoint of another configuration."""
    with _opened(path) as stored:
        state = _state(stored)
        if state.fingerprint != fingerprint:
            raise CaloError(
                f"{path} was written by a training with another model, data or recipe "
                "config: resume with that config, or start a new training under another "
                "train.name"
            )
        for group, variables in _groups(models_and_optimizers).items():
            for index, variable in enumerate(variables):
                value = stored[f"{group}/{index:04d}"]
                if tuple(value.shape) != tuple(variable.shape):
                    raise CaloError(f"{path}: {group} variable {index} has shape "
                                    f"{value.shape}, the model {tuple(variable.shape)}")
                variable.assign(value)
    return state


def load_network_weights(path: Path, network: str, model) -> TrainState:
    """Load one network's weights (``network``: "generator" or "discriminator") from a
    checkpoint into ``model``, for a training that starts from another training's networks with
    another recipe. Only the weights and batch-norm statistics are read, not the dropout layers'
    random-generator states, which exist only where the dropout rate is above zero; the
    optimizers and the position are not read. Returns the checkpoint's state."""
    if not path.exists():
        raise CaloError(f"{network} weights not found at {path}: check model.weights")
    with _opened(path) as stored:
        state = _state(stored)
        keys = sorted(key for key in stored.files if key.startswith(f"{network}/"))
        arrays = [value for value in (stored[key] for key in keys)
                  if np.issubdtype(value.dtype, np.floating)]
    weights = [variable for variable in model.variables  # the order checkpoints are written in
               if np.issubdtype(np.dtype(variable.dtype), np.floating)]
    shapes = [tuple(array.shape) for array in arrays]
    expected = [tuple(weight.shape) for weight in weights]
    if shapes != expected:
        raise CaloError(f"the {network} of {path} ({len(shapes)} arrays, "
                        f"{sum(array.size for array in arrays):,} values) does not fit this "
                        f"{model.name} ({len(expected)} arrays): check model= against the "
                        "training that wrote it")
    for weight, array in zip(weights, arrays):
        weight.assign(array)
    return state
