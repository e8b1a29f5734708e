"""Precision backends: from the fp32 Keras generator to an inference Engine, and back from disk."""

from __future__ import annotations

from pathlib import Path

from calo.config import Backend, PrecisionConfig
from calo.errors import CaloError
from calo.model.io import NetworkIO
from calo.precision.engine import Engine, NodeInfo, folder_size, read_engine_file

__all__ = ["Engine", "NodeInfo", "build_engine", "folder_size", "load_engine"]


def build_engine(generator, io: NetworkIO, cfg: PrecisionConfig) -> Engine:
    """The generator in the configured precision."""
    if cfg.backend is Backend.fp32:
        from calo.precision.fp32 import FP32Engine

        return FP32Engine.from_keras(generator, io)
    raise CaloError(f"precision={cfg.name}: the {cfg.backend.value} backend is not available yet")


def load_engine(folder: str | Path) -> Engine:
    """A saved engine; only its model graph is loaded, no code from the folder runs."""
    folder = Path(folder)
    meta = read_engine_file(folder)
    if meta["backend"] == "fp32":
        from calo.precision.fp32 import FP32Engine

        return FP32Engine.load(folder, meta["io"])
    raise CaloError(f"{folder}: unknown engine backend {meta['backend']!r}")
