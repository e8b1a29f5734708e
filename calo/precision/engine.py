"""The precision stage's product: an Engine turns (latent, Ep) into showers, whatever runs it.

fp32, Neural Compressor and TFLite engines are interchangeable behind this interface, so the
benchmark, the physics validation and the search never branch on the backend.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from tqdm.auto import tqdm

from calo.errors import CaloError
from calo.model.io import NetworkIO

__all__ = ["ENGINE_FILE", "Engine", "NodeInfo", "folder_size", "read_engine_file"]

ENGINE_FILE = "engine.json"


@dataclass(frozen=True)
class NodeInfo:
    """One compute node of an engine's graph and the dtype it computes in."""

    name: str
    op: str
    dtype: str


class Engine(ABC):
    """Generates showers in batches; saves itself; reports its size and per-node dtypes.

    ``details`` holds what the backend wants recorded (JSON-able: for Neural Compressor the
    quantizable nodes and which ones were quantized); it is saved with the engine, and its
    ``counts`` entry (name -> number) is what the run logs as parameters.
    """

    backend: ClassVar[str]

    def __init__(self, io: NetworkIO, fixed_batch_size: int | None = None,
                 details: dict[str, Any] | None = None) -> None:
        self.io = io
        self.fixed_batch_size = fixed_batch_size
        self.details = details or {}

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> Engine:
        """The engine saved in ``folder``, whose engine.json is ``meta`` (read_engine_file)."""

    @abstractmethod
    def predict(self, network_input: NDArray[np.float32]) -> NDArray[np.float32]:
        """One batch of generator input -> raw generator output (network units)."""

    @abstractmethod
    def _save_model(self, folder: Path) -> None:
        """Write the backend's model files into ``folder``."""

    @abstractmethod
    def nodes(self) -> list[NodeInfo]:
        """The compute nodes of the graph and their dtypes."""

    @abstractmethod
    def memory_bytes(self) -> int:
        """Bytes the engine's weights occupy in memory."""

    def generate(
        self,
        latent: NDArray[np.floating],
        energy: NDArray[np.floating],
        batch_size: int = 64,
        progress: bool = False,
    ) -> NDArray[np.float32]:
        """(N, latent_dim) latent and (N,) Ep in GeV -> (N, 25, 25, 25) showers in GeV."""
        network_input = self.io.network_input(latent, energy)
        batch_size = self.fixed_batch_size or batch_size
        out: list[NDArray[np.float32]] = []
        with tqdm(total=len(network_input), desc=f"generating ({self.backend})", unit="shower",
                  disable=not progress) as bar:
            for start in range(0, len(network_input), batch_size):
                batch = network_input[start : start + batch_size]
                out.append(self._predict_padded(batch, batch_size))
                bar.update(len(batch))
        return self.io.showers(np.concatenate(out))

    def _predict_padded(self, batch: NDArray[np.float32], batch_size: int) -> NDArray[np.float32]:
        """A fixed-batch engine gets its last, short batch padded with zeros."""
        if self.fixed_batch_size is None or len(batch) == batch_size:
            return self.predict(batch)
        padded = np.zeros((batch_size, batch.shape[1]), dtype=batch.dtype)
        padded[: len(batch)] = batch
        return self.predict(padded)[: len(batch)]

    def counts(self) -> dict[str, int]:
        """Numbers worth a run parameter (quantizable, quantized, fp32 nodes...)."""
        return dict(self.details.get("counts", {}))

    def check_batch(self, network_input: NDArray[np.float32]) -> None:
        """A fixed-batch engine refuses any other batch size with a one-line error."""
        if self.fixed_batch_size is not None and len(network_input) != self.fixed_batch_size:
            raise CaloError(f"this {self.backend} engine was built for batch size "
                            f"{self.fixed_batch_size}, got a batch of {len(network_input)}: "
                            "build one per batch size (precision.fixed_batch_size)")

    def save(self, folder: str | Path) -> Path:
        """Write the engine (model files plus ``engine.json``) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._save_model(folder)
        meta = {"backend": self.backend, "io": self.io.as_dict(),
                "fixed_batch_size": self.fixed_batch_size, "details": self.details}
        (folder / ENGINE_FILE).write_text(json.dumps(meta, indent=2))
        return folder

    def dtype_table(self) -> list[dict[str, str]]:
        return [node.__dict__ for node in self.nodes()]


def folder_size(folder: str | Path) -> int:
    """Bytes of all files under ``folder``."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def read_engine_file(folder: str | Path) -> dict:
    """The metadata of a saved engine, or a CaloError saying what is missing or broken."""
    path = Path(folder) / ENGINE_FILE
    if not Path(folder).is_dir():
        raise CaloError(f"no saved engine at {folder}: the folder does not exist")
    try:
        meta = json.loads(path.read_text())
        meta["io"] = NetworkIO(**meta["io"])
        meta.setdefault("details", {})
        if not isinstance(meta["backend"], str) or not isinstance(meta["details"], dict):
            raise ValueError("backend must be a name and details a mapping")
        return meta
    except FileNotFoundError as error:
        raise CaloError(f"{folder} is not a saved engine: {ENGINE_FILE} is missing") from error
    except (ValueError, KeyError, TypeError) as error:
        raise CaloError(f"{path} is corrupt ({error}): save the engine again") from error
