"""Training checkpoints: both networks, both optimizers and the loop's position, in one file
written atomically (a temporary file renamed when complete), so a killed training never leaves
a half-written checkpoint that a resume would trust."""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from calo.errors import CaloError
from calo.paths import atomic_path

__all__ = ["TrainState", "latest_checkpoint", "load_checkpoint", "save_checkpoint"]

PREFIX = "step-"
SUFFIX = ".ckpt.npz"
KEEP = 2  # older checkpoints are removed


@dataclass
class TrainState:
    """Where the loop stands: the next global step, the best validation so far, the run."""

    step: int = 0
    best_score: float = float("inf")
    best_epoch: int = -1
    mlflow_run_id: str | None = None
    fingerprint: str = ""


def _groups(models_and_optimizers: dict) -> dict[str, list]:
    return {name: list(obj.variables) for name, obj in models_and_optimizers.items()}


def save_checkpoint(folder: Path, models_and_optimizers: dict, state: TrainState) -> Path:
    """Write ``step-<n>.ckpt.npz`` into ``folder`` and prune all but the newest ones."""
    arrays = {"state": np.frombuffer(json.dumps(asdict(state)).encode(), dtype=np.uint8)}
    for group, variables in _groups(models_and_optimizers).items():
        for index, variable in enumerate(variables):
            arrays[f"{group}/{index:04d}"] = np.asarray(variable)
    path = folder / f"{PREFIX}{state.step:08d}{SUFFIX}"
    with atomic_path(path) as temporary, open(temporary, "wb") as stream:
        np.savez(stream, **arrays)
    for old in sorted(folder.glob(f"{PREFIX}*{SUFFIX}"))[:-KEEP]:
        old.unlink()
    return path


def latest_checkpoint(folder: Path) -> Path | None:
    candidates = sorted(folder.glob(f"{PREFIX}*{SUFFIX}"))
    return candidates[-1] if candidates else None


def load_checkpoint(path: Path, models_and_optimizers: dict, fingerprint: str) -> TrainState:
    """Restore every variable from ``path``; refuse a checkpoint of another configuration."""
    try:
        with np.load(path) as stored:
            state = TrainState(**json.loads(stored["state"].tobytes().decode()))
            if state.fingerprint != fingerprint:
                raise CaloError(
                    f"{path} was written by a training with another model, data or recipe "
                    "config: resume with that config or start afresh (train.resume=null)"
                )
            for group, variables in _groups(models_and_optimizers).items():
                for index, variable in enumerate(variables):
                    value = stored[f"{group}/{index:04d}"]
                    if tuple(value.shape) != tuple(variable.shape):
                        raise CaloError(f"{path}: {group} variable {index} has shape "
                                        f"{value.shape}, the model {tuple(variable.shape)}")
                    variable.assign(value)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as error:
        raise CaloError(f"{path} is not a readable checkpoint ({error})") from error
    return state
