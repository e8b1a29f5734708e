"""Average the networks of several checkpoints of one training into weight files.

    python -m calo.train.average OUT_DIR CHECKPOINT CHECKPOINT... [model=full model.dropout=0]

A GAN's generator swings around its best from validation to validation; the mean of its weights
at nearby steps of one run (checkpoint averaging, the offline form of the weight averaging used
for GANs since Yazici et al., arXiv:1806.04498) sits nearer that best than either. Writes
``generator.weights.h5`` and ``discriminator.weights.h5`` (each network's floating-point
variables, batch-norm statistics included, averaged) to OUT_DIR; the arguments after the
checkpoints are overrides of conf/train.yaml that say which model they hold.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import keras
import numpy as np
from hydra import compose, initialize_config_dir

from calo.cli import exit_on_user_error
from calo.config import TrainConfig, to_settings
from calo.errors import CaloError
from calo.model.discriminator import build_discriminator
from calo.model.generator import build_generator
from calo.paths import CONFIG_DIR, resolve
from calo.train.checkpoint import load_network_weights

__all__ = ["average_checkpoints"]

log = logging.getLogger("calo.train.average")

NETWORKS = {"generator": build_generator, "discriminator": build_discriminator}


def _mean_weights(model: keras.Model, network: str, checkpoints: list[Path]) -> list[int]:
    """Set ``model``'s floating-point variables to their mean over the checkpoints; returns
    the checkpoints' steps."""
    variables = [v for v in model.variables if np.issubdtype(np.dtype(v.dtype), np.floating)]
    total = [np.zeros(tuple(v.shape), np.float64) for v in variables]
    steps = []
    for checkpoint in checkpoints:
        steps.append(load_network_weights(checkpoint, network, model).step)
        total = [t + np.asarray(v) for t, v in zip(total, variables)]
    for variable, summed in zip(variables, total):
        variable.assign(summed / len(checkpoints))
    return steps


def average_checkpoints(out: str | Path, checkpoints: list[str | Path],
                        overrides: list[str]) -> Path:
    """Write the checkpoints' mean generator and discriminator to ``out``; returns ``out``."""
    if len(checkpoints) < 2:
        raise CaloError("give at least two checkpoints to average (step-*.ckpt.npz of one run)")
    paths = [resolve(path) for path in checkpoints]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        settings: TrainConfig = to_settings(compose("train", overrides=overrides))
    folder = resolve(out)
    folder.mkdir(parents=True, exist_ok=True)
    for network, build in NETWORKS.items():
        model = build(settings.model)
        steps = _mean_weights(model, network, paths)
        model.save_weights(folder / f"{network}.weights.h5")
    log.info("averaged steps %s of %s into %s", steps, ", ".join(map(str, paths)), folder)
    return folder


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    checkpoints = [a for a in argv[1:] if "=" not in a]
    overrides = [a for a in argv[1:] if "=" in a]
    print(exit_on_user_error(average_checkpoints, argv[0], checkpoints, overrides))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    main()
