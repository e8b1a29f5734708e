"""``python -m calo.train``: the 3DGAN recipe on reference showers, with validation every epoch,
atomic checkpoints, exact resume, and scale-out through ``tf.distribute`` on TensorFlow.

compose config -> hw -> strategy -> data (train / validation split) -> networks + optimizers
-> [resume] -> steps (TF or JAX) -> per step: D on real, D on fake, G x generator_steps
-> per epoch: validation, best weights -> MLflow model + registry
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from omegaconf import DictConfig
from tqdm.auto import tqdm

from calo.config import TrainConfig, TrainPrecision, to_settings
from calo.data import Showers, load_reference
from calo.errors import CaloError
from calo.model.discriminator import build_discriminator
from calo.model.generator import OutputActivation, build_generator, with_output
from calo.model.io import NetworkIO, sample_latent
from calo.model.weights import load_weights
from calo.paths import atomic_path, resolve
from calo.physics import ValidationResult
from calo.tracking import Tracker, tracked_run
from calo.train.batch_norm import recalibrate_batch_norm
from calo.train.checkpoint import (
    TrainState,
    UnreadableCheckpoint,
    checkpoints,
    is_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    load_network_weights,
    new_training_id,
    save_checkpoint,
)
from calo.train.distribute import is_chief, make_strategy, synchronize_batch_norm
from calo.train.mixed_precision import dtype_policy, require_faithful_bf16
from calo.train.recipe import GeneratorLoss, make_batch
from calo.train.validation import Validator

__all__ = ["TrainResult", "train"]

log = logging.getLogger("calo.train")

BEST_GENERATOR = "best_generator.weights.h5"
BEST_DISCRIMINATOR = "best_discriminator.weights.h5"
LAST_GENERATOR = "last_generator.weights.h5"
LAST_DISCRIMINATOR = "last_discriminator.weights.h5"
BATCH_NORM_SHOWERS = 256  # generated showers whose statistics the generator's batch norms keep


@dataclass(frozen=True)
class TrainResult:
    folder: Path
    steps: int
    best_score: float
    best_epoch: int
    showers_per_s: float
    run_id: str | None


def train(cfg: DictConfig) -> TrainResult:
    settings: TrainConfig = to_settings(cfg)
    recipe = settings.train
    _apply_hardware(settings)
    strategy = make_strategy(recipe.strategy)
    chief = is_chief()
    folder = resolve(recipe.checkpoint_root) / recipe.name
    recipe.resume = _effective_resume(recipe.resume, folder)
    if not _resuming(recipe.resume):
        _refuse_used_folder(folder)  # before minutes of data and network building
    train_set, validation_set = _split(load_reference(settings.data), recipe)
    replicas = strategy.num_replicas_in_sync if strategy else 1
    if recipe.batch_size % replicas:
        raise CaloError(f"train.batch_size={recipe.batch_size} does not split evenly between "
                        f"{replicas} replicas")
    with strategy.scope() if strategy else nullcontext():
        networks = _build_networks(settings, len(train_set) // recipe.batch_size)
    if recipe.precision is TrainPrecision.bf16:
        require_faithful_bf16(networks.generator, settings.model)
    if replicas > 1:
        synchronize_batch_norm(networks.generator)
        synchronize_batch_norm(networks.discriminator)
    state = _initial_state(settings, networks, folder)
    tracking = settings.tracking if chief else dataclasses.replace(settings.tracking,
                                                                    enabled=False)
    with tracked_run(cfg, tracking, run_name=f"train-{recipe.name}",
                     resume_run_id=state.mlflow_run_id) as tracker:
        state.mlflow_run_id = tracker.run_id
        tracker.set_tags({"keras_backend": keras.backend.backend(), "train/replicas": replicas})
        loop = _Loop(settings, networks, strategy, train_set, validation_set, folder, state,
                     tracker, chief)
        return loop.run()


def _apply_hardware(settings: TrainConfig) -> None:
    keras.utils.set_random_seed(settings.seed)
    if keras.backend.backend() == "tensorflow":
        from calo.hw import apply_topology, require_bf16, resolve_topology

        apply_topology(resolve_topology(settings.hw))
        if settings.train.precision is TrainPrecision.bf16:  # emulated bf16 is slower than fp32
            require_bf16("train.precision=bf16",
                         "train.precision=fp32 (or a GPU, under KERAS_BACKEND=jax)")


def _split(showers: Showers, recipe) -> tuple[Showers, Showers]:
    n_validation = max(1, int(round(len(showers) * recipe.validation_fraction)))
    n_train = len(showers) - n_validation
    if n_train < recipe.batch_size:
        raise CaloError(f"train.batch_size={recipe.batch_size} is larger than the {n_train} "
                        "training showers: lower it or add data (data.n_showers)")
    validation = Showers(showers.ecal[n_train:], showers.energy[n_train:])
    return Showers(showers.ecal[:n_train], showers.energy[:n_train]), \
        validation.head(recipe.validation_showers)


@dataclass
class _Networks:
    generator: keras.Model
    discriminator: keras.Model
    g_optimizer: keras.optimizers.Optimizer
    d_optimizer: keras.optimizers.Optimizer

    def checkpointed(self) -> dict:
        return {"generator": self.generator, "discriminator": self.discriminator,
                "g_optimizer": self.g_optimizer, "d_optimizer": self.d_optimizer}


def _optimizer(rate: float, updates_per_epoch: int, decay: float) -> keras.optimizers.Adam:
    schedule = keras.optimizers.schedules.ExponentialDecay(rate, max(updates_per_epoch, 1), decay)
    return keras.optimizers.Adam(learning_rate=schedule)


def _build_networks(settings: TrainConfig, steps_per_epoch: int) -> _Networks:
    """Both networks and their optimizers; the rates follow the linear scaling rule, from the
    batch they are given for to the global batch (which replicas share)."""
    recipe = settings.train
    scale = recipe.batch_size / recipe.lr_batch_size
    with dtype_policy(recipe.precision):
        generator = build_generator(settings.model, "linear")
        discriminator = build_discriminator(settings.model)
    g_optimizer = _optimizer(recipe.generator_lr * scale,
                             steps_per_epoch * recipe.generator_steps, recipe.lr_decay_per_epoch)
    d_optimizer = _optimizer(recipe.discriminator_lr * scale, steps_per_epoch * 2,
                             recipe.lr_decay_per_epoch)
    g_optimizer.build(generator.trainable_variables)
    d_optimizer.build(discriminator.trainable_variables)
    return _Networks(generator, discriminator, g_optimizer, d_optimizer)


def _fingerprint(settings: TrainConfig) -> str:
    """What a checkpoint must agree with to be resumed: model, data and recipe, not budgets."""
    recipe = _without_new_defaults(dataclasses.asdict(settings.train))
    for key in ("epochs", "max_steps", "max_minutes", "resume", "checkpoint_every",
                "checkpoint_root", "log_every", "register_name", "strategy", "validate_every",
                "checkpoint_minutes", "precision"):
        recipe.pop(key)
    model = {k: v for k, v in _without_new_defaults(dataclasses.asdict(settings.model)).items()
             if k not in ("weights", "discriminator_weights", "trust_mlflow_loader")}
    data = {k: v for k, v in dataclasses.asdict(settings.data).items() if k != "cache_dir"}
    text = json.dumps({"model": model, "data": data, "recipe": recipe, "seed": settings.seed},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Options added after checkpoints were shipped: at these values a checkpoint's fingerprint is
# what it was before the option existed, so the shipped checkpoints still resume.
_NEW_DEFAULTS = {"physics_loss_weights": [0.0, 0.0, 0.0], "output_bias_init": 0.0,
                 "physics_energy_groups": 1}


def _without_new_defaults(options: dict) -> dict:
    return {key: value for key, value in options.items()
            if key not in _NEW_DEFAULTS or value != _NEW_DEFAULTS[key]}


def _initial_state(settings: TrainConfig, networks: _Networks, folder: Path) -> TrainState:
    fingerprint = _fingerprint(settings)
    resume = settings.train.resume
    if _resuming(resume):
        return _resumed_state(resume, networks, folder, fingerprint)
    for location, model, what in ((settings.model.weights, networks.generator, "generator"),
                                  (settings.model.discriminator_weights,
                                   networks.discriminator, "discriminator")):
        if location and is_checkpoint(location):
            origin = load_network_weights(resolve(location), what, model)
            log.info("starting the %s from step %d of %s", what, origin.step, location)
        elif location:
            load_weights(model, location, what, settings.model.trust_mlflow_loader)
            log.info("starting the %s from %s", what, location)
    return TrainState(fingerprint=fingerprint, training_id=new_training_id())


def _effective_resume(resume: str | None, folder: Path) -> str | None:
    """``auto``: continue the folder's training if it holds a checkpoint, else start it, so
    that one prepared command serves a first run and every later one (a GPU lent for minutes)."""
    if resume is not None and resume.lower() == "auto":
        return "true" if latest_checkpoint(folder) is not None else None
    return resume


def _resuming(resume: str | None) -> bool:
    return bool(resume) and resume.lower() not in ("false", "none", "no")


def _resumed_state(resume: str, networks: _Networks, folder: Path,
                   fingerprint: str) -> TrainState:
    """The state of the checkpoint ``train.resume`` names (``true``: the folder's latest),
    with its variables loaded into the networks and optimizers."""
    latest = resume.lower() in ("true", "latest", "yes")
    path = latest_checkpoint(folder) if latest else resolve(resume)
    if path is None:
        raise CaloError(f"train.resume={resume}: no checkpoint in {folder} to resume from")
    if not path.exists():
        raise CaloError(f"train.resume={resume}: {path} does not exist")
    try:
        state = load_checkpoint(path, networks.checkpointed(), fingerprint)
    except UnreadableCheckpoint as error:
        earlier = checkpoints(folder)[-2:-1] if latest else []
        hint = (f"resume from the one before with train.resume={earlier[0]}" if earlier
                else "give another with train.resume=<path>")
        raise CaloError(f"{error}: {hint}, or start a new training under another "
                        "train.name") from error
    if state.training_id is None:  # written before checkpoints named their training
        state.training_id = new_training_id()
        log.info("%s names no training: continuing it as training %s (its older checkpoints "
                 "are kept, not pruned)", path, state.training_id)
    log.info("resuming from %s at step %d", path, state.step)
    return state


def _refuse_used_folder(folder: Path) -> None:
    """A new training never writes into another one's folder: pruning by step would delete its
    own checkpoints in favour of the old training's later ones, train.resume=true would continue
    the old training, its history would be appended to the old one and the old best weights
    published as its own."""
    latest = latest_checkpoint(folder)
    if latest is not None:
        raise CaloError(f"{folder} already holds the checkpoints of a training (latest "
                        f"{latest.name}): continue that training with train.resume=true, or "
                        "start a new one under another train.name")
    outputs = [name for name in ("history.jsonl", BEST_GENERATOR, LAST_GENERATOR)
               if (folder / name).exists()]
    if outputs:
        raise CaloError(f"{folder} holds the output of an earlier training ({', '.join(outputs)}) "
                        "but no checkpoint to resume: start the new training under another "
                        "train.name, or remove that folder")


def _steps(networks: _Networks, settings: TrainConfig, strategy, output: OutputActivation):
    """The backend's update steps, training the generator with the given output activation."""
    recipe = settings.train
    generator_loss = GeneratorLoss(
        tuple(recipe.loss_weights), tuple(recipe.physics_loss_weights),
        settings.physics.hit_threshold * settings.model.cell_scale, recipe.batch_size,
        recipe.physics_energy_groups)
    common = (with_output(networks.generator, "linear"), output, networks.discriminator,
              networks.g_optimizer, networks.d_optimizer, generator_loss)
    if keras.backend.backend() == "jax":
        from calo.train.steps_jax import JaxSteps

        return JaxSteps(*common)
    if keras.backend.backend() == "tensorflow":
        from calo.train.steps_tf import TFSteps

        return TFSteps(*common, strategy)
    raise CaloError(f"training runs on KERAS_BACKEND=tensorflow or jax, not "
                    f"{keras.backend.backend()}")


def _save_weights_atomically(model: keras.Model, path: Path) -> None:
    with atomic_path(path) as temporary:
        model.save_weights(temporary)


class _Loop:
    """The step loop; one object so the state it threads through stays in one place."""

    def __init__(self, settings: TrainConfig, networks: _Networks, strategy,
                 train_set: Showers, validation_set: Showers, folder: Path, state: TrainState,
                 tracker: Tracker, chief: bool) -> None:
        self.settings, self.recipe = settings, settings.train
        self.networks, self.folder, self.state = networks, folder, state
        self.tracker, self.chief = tracker, chief
        self.train_set = train_set
        self.io = NetworkIO.from_config(settings.model)
        self.strategy = strategy
        self.steps_per_epoch = len(train_set) // self.recipe.batch_size
        self._last_checkpoint = time.monotonic()
        self.validate_every = self.recipe.validate_every or self.steps_per_epoch
        self.output = self._output_at(state.step)
        self.steps = _steps(networks, settings, strategy, self.output)
        self.validator = Validator(validation_set, self.io, settings.model.latent_distribution,
                                   settings.physics, settings.seed)
        total = self.recipe.epochs * self.steps_per_epoch
        self.total_steps = min(total, self.recipe.max_steps or total)
        self._epoch_order: tuple[int, np.ndarray] | None = None

    def run(self) -> TrainResult:
        start_step, started = self.state.step, time.perf_counter()
        log.info("training %s on %d showers: %d steps of %d (%d per epoch), from step %d",
                 self.settings.model.name, len(self.train_set), self.total_steps,
                 self.recipe.batch_size, self.steps_per_epoch, start_step)
        bar = tqdm(total=self.total_steps, initial=start_step, desc="training", unit="step")
        for step in range(start_step, self.total_steps):
            losses = self._step(step)
            self.state.step = step + 1
            bar.update(1)
            bar.set_postfix(d=f"{losses['train/d_loss']:.3g}", g=f"{losses['train/g_loss']:.3g}")
            if step % self.recipe.log_every == 0:
                self.tracker.log_metrics(losses, step=step)
            if self.chief and step % 100 == 0:
                self._history({"step": step, "seconds": time.perf_counter() - started, **losses})
            if (step + 1) % self.validate_every == 0:
                self._validate(epoch=(step + 1) // self.validate_every - 1)
            if self._over_budget(started):
                log.info("stopping at step %d: train.max_minutes reached", self.state.step)
                break
            if self._checkpoint_due():
                self._checkpoint()
        bar.close()
        self._checkpoint()
        return self._finish(start_step, time.perf_counter() - started)

    def _checkpoint_due(self) -> bool:
        """Every ``train.checkpoint_every`` steps, and at least every
        ``train.checkpoint_minutes`` (a slow machine may take hours for the steps)."""
        minutes = (time.monotonic() - self._last_checkpoint) / 60
        return (self.state.step % self.recipe.checkpoint_every == 0
                or minutes >= self.recipe.checkpoint_minutes)

    def _output_at(self, step: int) -> OutputActivation:
        """Linear output for the first ``train.relu_epoch`` epochs, ReLU after (public recipe)."""
        return "linear" if step // self.steps_per_epoch < self.recipe.relu_epoch else "relu"

    def _switch_output(self, step: int) -> None:
        output = self._output_at(step)
        if output != self.output:
            self.steps.sync_models()
            self.output = output
            self.steps = _steps(self.networks, self.settings, self.strategy, output)
            log.info("step %d: the generator's output is now %s", step, output)

    def _generate(self, network_input: np.ndarray) -> np.ndarray:
        """Showers as the inference generator makes them: always through the ReLU."""
        return np.maximum(self.steps.generate(network_input), 0.0)

    def _batch_indices(self, step: int) -> np.ndarray:
        epoch, index = divmod(step, self.steps_per_epoch)
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            order = np.random.default_rng([self.settings.seed, epoch]).permutation(
                len(self.train_set))
            self._epoch_order = (epoch, order)
        size = self.recipe.batch_size
        return np.sort(self._epoch_order[1][index * size : (index + 1) * size])

    def _step(self, step: int) -> dict[str, float]:
        self._switch_output(step)
        indices = self._batch_indices(step)
        batch = make_batch(self.train_set.ecal[indices], self.train_set.energy[indices],
                           self.io, self.recipe,
                           (self.settings.data.energy_min, self.settings.data.energy_max),
                           self.settings.model.latent_distribution,
                           np.random.default_rng([self.settings.seed, step]),
                           self.settings.physics.hit_threshold)
        real = self.steps.discriminator_step(batch.real_images, batch.real)
        fake = self.steps.discriminator_step(self.steps.generate(batch.fake_input), batch.fake)
        for _ in range(self.recipe.generator_steps):
            generator = self.steps.generator_step(batch.fake_input, batch.generator, batch.physics)
        metrics = {f"train/{k}_real": v for k, v in real.items()}
        metrics |= {f"train/{k}_fake": v for k, v in fake.items()}
        metrics |= {f"train/{k}": v for k, v in generator.items()}
        metrics["train/d_loss"] = (real["d_loss"] + fake["d_loss"]) / 2
        return metrics

    def _over_budget(self, started: float) -> bool:
        budget = self.recipe.max_minutes
        return budget is not None and (time.perf_counter() - started) / 60 >= budget

    def _validate(self, epoch: int) -> None:
        if not self.chief:
            return
        self.steps.sync_models()
        recalibrate_batch_norm(self.networks.generator, self._calibration_input())
        self.steps.reload_models()
        score, metrics, result = self.validator(self._generate)
        metrics["train/val_score"] = score
        self.tracker.log_metrics(metrics, step=epoch)
        self._history({"epoch": epoch, "step": self.state.step, **metrics})
        self._log_profiles(result, epoch)
        log.info("epoch %d: validation score %.4f (best %.4f)", epoch, score,
                 self.state.best_score)
        if score < self.state.best_score:
            self.state.best_score, self.state.best_epoch = score, epoch
            _save_weights_atomically(self.networks.generator, self.folder / BEST_GENERATOR)
            _save_weights_atomically(self.networks.discriminator,
                                     self.folder / BEST_DISCRIMINATOR)

    def _calibration_input(self) -> np.ndarray:
        """Generator input for the batch-norm statistics, drawn as in training."""
        rng = np.random.default_rng([self.settings.seed, self.state.step, 1])
        energy = rng.uniform(self.settings.data.energy_min, self.settings.data.energy_max,
                             BATCH_NORM_SHOWERS)
        latent = sample_latent(BATCH_NORM_SHOWERS, self.io.latent_dim,
                               self.settings.model.latent_distribution, rng)
        return self.io.network_input(latent, energy)

    def _history(self, record: dict) -> None:
        """Append to ``history.jsonl`` beside the checkpoints: the record of a training that
        ran without MLflow (a GPU box), and a quick look for anyone."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "history.jsonl", "a") as stream:
            stream.write(json.dumps(record) + "\n")

    def _log_profiles(self, result: ValidationResult, epoch: int) -> None:
        """The epoch's y and z shower shapes (linear and log, ratio to the reference)."""
        if not self.tracker.run_id or not self.settings.physics.figures:
            return
        from calo.physics.plots import profile_figure

        labels = {"reference": "reference (validation)", "engine": f"generator, epoch {epoch}"}
        for axis in ("y", "z"):
            self.tracker.log_figure(profile_figure(result, axis, labels),
                                    f"validation/epoch{epoch:03d}_{axis}.png")

    def _checkpoint(self) -> None:
        if not self.chief:
            return
        self.steps.sync_models()
        save_checkpoint(self.folder, self.networks.checkpointed(), self.state)
        self._last_checkpoint = time.monotonic()

    def _finish(self, start_step: int, seconds: float) -> TrainResult:
        steps = self.state.step - start_step
        rate = steps * self.recipe.batch_size / seconds if steps else 0.0
        metrics = {"train/showers_per_s": rate, "train/step_s": seconds / max(steps, 1),
                   "train/best_score": self.state.best_score,
                   "train/best_epoch": self.state.best_epoch, "train/steps": self.state.step}
        self.tracker.log_metrics(metrics)
        if self.chief:
            self._history({"finished": True, "seconds": seconds, "backend":
                           keras.backend.backend(), **metrics})
            _save_weights_atomically(self.networks.generator, self.folder / LAST_GENERATOR)
            _save_weights_atomically(self.networks.discriminator,
                                     self.folder / LAST_DISCRIMINATOR)
            self._publish_best()
        return TrainResult(self.folder, self.state.step, self.state.best_score,
                           self.state.best_epoch, rate, self.tracker.run_id)

    def _publish_best(self) -> None:
        """Best weights as artifacts, and the best generator as a registered MLflow model."""
        best = self.folder / BEST_GENERATOR
        if not best.exists():
            log.warning("no epoch finished: no best weights (only the checkpoint) in %s",
                        self.folder)
            return
        self.tracker.log_artifact(best, "weights")
        self.tracker.log_artifact(self.folder / BEST_DISCRIMINATOR, "weights")
        if keras.backend.backend() == "tensorflow" and self.tracker.run_id:
            generator = build_generator(self.settings.model)
            generator.load_weights(best)
            example = self.validator.network_input[:2]
            uri = self.tracker.log_keras_model(generator, "generator", example,
                                               self.recipe.register_name)
            log.info("best generator (epoch %d) logged as %s", self.state.best_epoch, uri)
