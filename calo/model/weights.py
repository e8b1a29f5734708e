"""Generator weights: from a ``.weights.h5`` file, or freshly initialised (and said so)."""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import h5py
import keras
import numpy as np

from calo.config import ModelConfig
from calo.errors import CaloError, one_line
from calo.model.generator import build_generator
from calo.paths import resolve
from calo.tracking.registry import is_registry_uri, load_with_mlflow, registered_weights_file

__all__ = ["load_generator", "load_weights"]

log = logging.getLogger(__name__)


def load_weights(model: keras.Model, location: str, what: str,
                 trust_mlflow_loader: bool = False) -> None:
    """Load ``location`` (a ``.weights.h5`` file, or ``models:/<name>/<version>`` from the MLflow
    registry, read as weights only unless ``trust_mlflow_loader``) into ``model``, or raise a
    CaloError naming the file and the problem."""
    if not is_registry_uri(location):
        _load_file(model, resolve(location), what)
    elif trust_mlflow_loader:
        load_with_mlflow(location, model)
    else:
        with tempfile.TemporaryDirectory(prefix="calo-registry-") as workdir:
            _load_file(model, registered_weights_file(location, Path(workdir)), what)


def _load_file(model: keras.Model, path: Path, what: str) -> None:
    if not path.exists():
        raise CaloError(f"{what} weights not found at {path}: check model.weights")
    if path.name.endswith(".ckpt.npz"):
        raise CaloError(f"{path} is a training checkpoint: python -m calo.train starts from it "
                        "(model.weights=<it>); here give a .weights.h5, such as the "
                        "best_generator.weights.h5 the training wrote beside it")
    if not path.name.endswith(".weights.h5"):
        raise CaloError(f"{path}: expected a Keras .weights.h5 file")
    try:
        _check_shapes(model, path)
        with warnings.catch_warnings():
            # Keras only warns when parts of a file match no layer; a partial load is an error.
            warnings.simplefilter("error", UserWarning)
            model.load_weights(path)
    except (ValueError, OSError, KeyError, UserWarning) as error:
        raise CaloError(
            f"{path} does not fit this {model.name} ({one_line(error, 300)}): check model= and "
            "the file"
        ) from error


def _check_shapes(model: keras.Model, path) -> None:
    """Refuse a file whose arrays are not exactly the model's (Keras may load it partially)."""
    found: list[tuple[int, ...]] = []
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda _, item: found.append(item.shape)
                      if isinstance(item, h5py.Dataset) else None)
    expected = [tuple(weight.shape) for weight in model.weights]
    if sorted(found) != sorted(expected):
        raise ValueError(f"the file holds {len(found)} arrays ({sum(map(_size, found)):,} values), "
                         f"the model has {len(expected)} ({sum(map(_size, expected)):,} values)")


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape))


def load_generator(cfg: ModelConfig) -> tuple[keras.Model, bool]:
    """The configured generator and whether it carries trained weights."""
    generator = build_generator(cfg)
    if cfg.weights is None:
        log.warning("model=%s has no generator weights: using a freshly initialised generator "
                    "(its showers are noise, not physics)", cfg.name)
        return generator, False
    load_weights(generator, cfg.weights, "generator", cfg.trust_mlflow_loader)
    return generator, True
