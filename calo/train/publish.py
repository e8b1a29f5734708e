"""Bring a training that ran without MLflow (a GPU box, ``tracking=off``) into the store: its
``history.jsonl`` as metrics of a new run in the training experiment, its weights as
artifacts, and its best generator as a registered MLflow model.

    python -m calo.train.publish models [model=full] [train.register_name=calo-generator]

The first argument is the folder that holds ``history.jsonl`` and the weights (the shipped
``models/`` or a ``<checkpoint_root>/<name>`` folder); the rest are overrides of conf/train.yaml.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from calo.cli import exit_on_user_error
from calo.config import TrainConfig, to_settings
from calo.errors import CaloError
from calo.model.generator import build_generator
from calo.model.io import NetworkIO
from calo.model.weights import load_weights
from calo.paths import CONFIG_DIR, resolve
from calo.tracking import tracked_run

__all__ = ["publish"]

log = logging.getLogger("calo.train.publish")

# Weight files by preference: a shipped folder, then a training folder's best and last.
GENERATOR_FILES = ("generator.weights.h5", "best_generator.weights.h5", "last_generator.weights.h5")


def _generator_file(folder: Path) -> Path:
    for name in GENERATOR_FILES:
        if (folder / name).exists():
            return folder / name
    raise CaloError(f"{folder} holds no generator weights ({', '.join(GENERATOR_FILES)})")


def _history(folder: Path) -> list[dict]:
    path = folder / "history.jsonl"
    if not path.exists():
        raise CaloError(f"{folder} has no history.jsonl: only a calo.train folder can be published")
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as error:
        raise CaloError(f"{path} is corrupt ({error})") from error


def publish(folder: str | Path, overrides: list[str]) -> str:
    """Log the training in ``folder`` as an MLflow run; returns the registered model's URI."""
    folder = resolve(folder)
    records = _history(folder)
    weights = _generator_file(folder)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    settings: TrainConfig = to_settings(cfg)
    generator = build_generator(settings.model)
    load_weights(generator, str(weights), "generator")
    with tracked_run(cfg, settings.tracking, run_name=f"publish-{folder.name}",
                     tags={"published_from": str(folder)}) as tracker:
        for record in records:
            step = record.get("epoch", record.get("step"))
            metrics = {k: v for k, v in record.items()
                       if "/" in k and isinstance(v, int | float) and np.isfinite(v)}
            tracker.log_metrics(metrics, step=None if record.get("finished") else step)
        for path in sorted(folder.glob("*.weights.h5")) + [folder / "history.jsonl"]:
            tracker.log_artifact(path, "weights")
        io = NetworkIO.from_config(settings.model)
        example = io.network_input(np.zeros((2, io.latent_dim), np.float32), np.array([100, 500]))
        uri = tracker.log_keras_model(generator, "generator", example,
                                      settings.train.register_name)
    log.info("published %s as %s (registered as %s)", weights, uri, settings.train.register_name)
    return uri


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(exit_on_user_error(publish, argv[0], argv[1:]))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    main()
