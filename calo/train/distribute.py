"""Where training runs: one device, several local GPUs, or several machines (TF_CONFIG, or the
tasks of a SLURM job step, for which TF_CONFIG is built from SLURM's environment)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import keras

from calo.config import Strategy
from calo.errors import CaloError

__all__ = ["is_chief", "make_strategy", "slurm_tf_config", "synchronize_batch_norm"]

SLURM_PORT_BASE = 20000  # a job's workers listen from 20000 + 32 x (job ID mod 1000) on


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
            config = slurm_tf_config(os.environ)
            if config is None:
                raise CaloError("train.strategy=multi_worker needs TF_CONFIG describing the "
                                "cluster and this worker's task, or to run as the tasks of a "
                                "SLURM job step (srun; see docs/cluster.md)")
            os.environ["TF_CONFIG"] = json.dumps(config)
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def slurm_tf_config(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """TF_CONFIG for this task of a SLURM job step of several tasks; None outside one.

    Laid out as TensorFlow's ``SlurmClusterResolver`` does (its ``expand_hostlist`` and
    ``expand_tasks_per_node`` read ``SLURM_STEP_NODELIST`` and ``SLURM_STEP_TASKS_PER_NODE``;
    each node's tasks listen on consecutive ports from a base; this task is worker
    ``SLURM_PROCID``), with two differences: the nodes keep SLURM's order instead of being
    sorted by name (SLURM numbers tasks node by node in its own order, node9 before node10), and
    the base port follows the job ID (``CALO_TF_PORT_BASE`` sets it), so that two jobs sharing
    a node do not collide. The resolver itself is not used: it counts GPUs with nvidia-smi and
    fails on a CPU node (FileNotFoundError; with zero GPUs given, ValueError). A layout that
    does not place this task where SLURM placed it (a distribution other than block) is
    refused.
    """
    tasks = int(environ.get("SLURM_STEP_NUM_TASKS", "1") or 1)
    if tasks < 2 or "SLURM_PROCID" not in environ:
        return None
    from tensorflow.python.distribute.cluster_resolver.slurm_cluster_resolver import (
        expand_hostlist,
        expand_tasks_per_node,
    )

    hosts = expand_hostlist(environ["SLURM_STEP_NODELIST"])
    per_host = expand_tasks_per_node(environ["SLURM_STEP_TASKS_PER_NODE"])
    job = int(environ.get("SLURM_JOB_ID", "0") or 0)
    base = int(environ.get("CALO_TF_PORT_BASE") or SLURM_PORT_BASE + 32 * (job % 1000))
    placed = [(host, local) for host, count in zip(hosts, per_host) for local in range(count)]
    rank = int(environ["SLURM_PROCID"])
    if len(placed) != tasks or rank >= tasks:
        raise CaloError(f"SLURM's step lists {len(placed)} tasks on {hosts} but has {tasks}: "
                        "cannot lay out the training's workers")
    host, local = placed[rank]
    node, local_id = environ.get("SLURMD_NODENAME"), environ.get("SLURM_LOCALID")
    if (node is not None and node != host) or (local_id is not None and int(local_id) != local):
        raise CaloError(f"SLURM placed task {rank} as task {local_id} on {node}, not as task "
                        f"{local} on {host}: run the training's tasks with the block "
                        "distribution (srun's default, --distribution=block)")
    return {"cluster": {"worker": [f"{h}:{base + i}" for h, i in placed]},
            "task": {"type": "worker", "index": rank}}


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
