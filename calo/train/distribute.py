"""Where training runs: one device, several local GPUs, or several machines (TF_CONFIG)."""

from __future__ import annotations

import json
import os

import keras

from calo.config import Strategy
from calo.errors import CaloError

__all__ = ["is_chief", "make_strategy", "synchronize_batch_norm"]


def make_strategy(kind: Strategy):
    """The ``tf.distribute`` strategy for ``kind``; None on a backend without one (JAX, torch),
    where only ``default`` (one device) is available."""
    backend = keras.backend.backend()
    if backend != "tensorflow":
        if kind is not Strategy.default:
            raise CaloError(f"train.strategy={kind.value} needs KERAS_BACKEND=tensorflow "
                            f"(this process runs Keras on {backend})")
        return None
    import tensorflow as tf

    if kind is Strategy.mirrored:
        return tf.distribute.MirroredStrategy()
    if kind is Strategy.multi_worker:
        if "TF_CONFIG" not in os.environ:
            raise CaloError("train.strategy=multi_worker needs TF_CONFIG describing the cluster "
                            "and this worker's task (see the README)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief() -> bool:
    """The chief logs to MLflow and writes checkpoints: task ``chief``, or worker 0 of a
    cluster without one, or the only process."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = config.get("task", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index", 0) == 0 \
        and "chief" not in config.get("cluster", {})


def synchronize_batch_norm(model: keras.Model) -> None:
    """Batch statistics over the global batch, not each replica's share, so that several
    replicas train exactly like one device with the whole batch (TensorFlow only)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
