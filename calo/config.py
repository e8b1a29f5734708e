"""Structured configs: the schema of every Hydra config group, registered in the ConfigStore.

Hydra checks types when it composes (``hw.threads=abc`` is refused with the key named); the
``__post_init__`` checks below catch values of the right type that make no sense, when the
composed config is turned into these dataclasses by :func:`to_settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from calo.errors import CaloError, one_line

__all__ = [
    "ActivationScheme",
    "Backend",
    "BenchConfig",
    "DataConfig",
    "DataSource",
    "EngineJobConfig",
    "FloatDtype",
    "HardwareConfig",
    "LatentDistribution",
    "ModelConfig",
    "PhysicsConfig",
    "PrecisionConfig",
    "RunConfig",
    "Strategy",
    "TrackingConfig",
    "TrainConfig",
    "TrainPrecision",
    "TrainSettings",
    "register_configs",
    "require",
    "to_settings",
]


def require(condition: bool, message: str) -> None:
    """A config value that makes no sense: OmegaConf turns the ValueError into the one-line
    ``invalid config`` error of :func:`to_settings`."""
    if not condition:
        raise ValueError(message)


class LatentDistribution(StrEnum):
    """The generator's noise; see :func:`calo.model.io.sample_latent`."""

    normal = "normal"
    uniform = "uniform"
    sphere = "sphere"


@dataclass
class ModelConfig:
    """The paper's Conv2D generator (and its discriminator); ``tiny`` keeps the topology."""

    name: str = MISSING
    latent_dim: int = 200
    latent_distribution: LatentDistribution = LatentDistribution.normal
    path_filters: list[int] = field(default_factory=lambda: [32, 64, 64, 64, 64, 64, 32, 32])
    discriminator_filters: list[int] = field(default_factory=lambda: [64, 32, 32, 32, 32, 9])
    leaky_alpha: float = 0.3
    dropout: float = 0.2
    energy_scale: float = 100.0  # the network sees Ep / energy_scale
    cell_scale: float = 1.0  # the network works in GeV * cell_scale (the Conv2D code: GeV)
    # Initial bias of the generator's last convolution: 0 as in Keras; about -1.5 standard
    # deviations of its output (-2) starts a new training with ~7 % of cells above the hit
    # threshold and, at cell_scale=100, about the real energy (models/README.md).
    output_bias_init: float = 0.0
    weights: str | None = None  # generator .weights.h5 (path or models:/name/version)
    discriminator_weights: str | None = None
    # models:/ and runs:/ weights through MLflow's own loader, which may unpickle and import
    # code from the store: only for a store you trust (calo.tracking.registry)
    trust_mlflow_loader: bool = False

    def __post_init__(self) -> None:
        require(self.latent_dim > 0, f"model.latent_dim must be positive, got {self.latent_dim}")
        require(
            len(self.path_filters) == 8 and min(self.path_filters) > 0,
            f"model.path_filters needs 8 positive filter counts, got {self.path_filters}",
        )
        require(
            len(self.discriminator_filters) == 6 and min(self.discriminator_filters) > 0,
            "model.discriminator_filters needs 6 positive filter counts, "
            f"got {self.discriminator_filters}",
        )
        require(0.0 <= self.dropout < 1.0, f"model.dropout must be in [0, 1), got {self.dropout}")


class Backend(StrEnum):
    fp32 = "fp32"
    int8_inc = "int8_inc"
    bf16_inc = "bf16_inc"
    fp16_tflite = "fp16_tflite"
    int8_tflite = "int8_tflite"
    fp32_ov = "fp32_ov"
    bf16_ov = "bf16_ov"
    int8_ov = "int8_ov"
    int8_ort = "int8_ort"


class ActivationScheme(StrEnum):
    """How int8_ov quantizes activations (weights are always symmetric, per channel): NNCF's
    ``performance`` preset (symmetric) or its ``mixed`` one (asymmetric: a zero point puts all
    256 levels between each tensor's minimum and maximum, where LeakyReLU's small negative side
    wastes half of a symmetric range)."""

    symmetric = "symmetric"
    asymmetric = "asymmetric"


class FloatDtype(StrEnum):
    """What int8_ov runs its float nodes in (those ``keep_fp32`` names, and any NNCF leaves
    unquantized): float32, or bf16 (OpenVINO's inference precision hint, on CPUs with bf16)."""

    fp32 = "fp32"
    bf16 = "bf16"


@dataclass
class PrecisionConfig:
    """How the fp32 generator is turned into an inference engine."""

    name: str = MISSING
    backend: Backend = Backend.fp32
    calibration_size: int = 256  # generator inputs the int8 backends calibrate on
    calibration_energy: list[float] = field(default_factory=lambda: [100.0, 500.0])  # GeV
    calibration_seed: int = 0
    keep_fp32: list[str] = field(default_factory=list)  # int8_inc, _ov, _ort: names or regexes
    activations: ActivationScheme = ActivationScheme.symmetric  # int8_ov only
    float_dtype: FloatDtype = FloatDtype.fp32  # int8_ov only: its float nodes' dtype
    # bf16_ov only: weighted nodes (names or regexes) whose weights run as two bf16 terms
    split_weights: list[str] = field(default_factory=list)
    fixed_batch_size: int = 64  # TFLite engines run this batch size only
    rewrite: bool = True  # fold BatchNorm and rewrite Conv2DTranspose first (calo.precision)
    profile: bool = False  # log the engine's per-op-type time breakdown (TF graph engines)

    def __post_init__(self) -> None:
        require(
            self.calibration_size > 0,
            f"precision.calibration_size must be positive, got {self.calibration_size}",
        )
        energy = self.calibration_energy
        require(
            len(energy) == 2 and 0.0 < energy[0] < energy[1],
            f"precision.calibration_energy must be [min, max] GeV with 0 < min < max, got {energy}",
        )
        require(
            self.fixed_batch_size > 0,
            f"precision.fixed_batch_size must be positive, got {self.fixed_batch_size}",
        )
        self.backend, self.activations = Backend(self.backend), ActivationScheme(self.activations)
        self.float_dtype = FloatDtype(self.float_dtype)
        for key, default in (("activations", ActivationScheme.symmetric),
                             ("float_dtype", FloatDtype.fp32)):
            value = getattr(self, key)
            require(value is default or self.backend is Backend.int8_ov,
                    f"precision.{key}={value.value} is an int8_ov option, not "
                    f"{self.backend.value}'s: drop it or use precision=int8_ov")
        quantizes = (Backend.int8_inc, Backend.int8_ov, Backend.int8_ort)
        require(not self.keep_fp32 or self.backend in quantizes,
                f"precision.keep_fp32 is an option of {', '.join(b.value for b in quantizes)}, "
                f"not {self.backend.value}'s: drop it"
                + (" or use precision.split_weights" if self.backend is Backend.bf16_ov else ""))
        require(not self.split_weights or self.backend is Backend.bf16_ov,
                f"precision.split_weights is a bf16_ov option, not {self.backend.value}'s: "
                "drop it or use precision=bf16_ov")


@dataclass
class HardwareConfig:
    """A hardware topology: total intra-op threads shared by parallel inference streams."""

    name: str = MISSING
    threads: int | None = None  # None: every core this process may use
    streams: int = 1
    sockets: int | None = None
    cores_per_socket: int | None = None
    isa: list[str] = field(default_factory=list)  # ISA flags the topology expects
    inter_op_threads: int = 1
    # oneDNN's ONEDNN_MAX_CPU_ISA: no newer instructions than the modelled CPU has (e.g. no AMX)
    max_isa: str | None = None

    def __post_init__(self) -> None:
        require(
            self.threads is None or self.threads > 0,
            f"hw.threads must be positive, got {self.threads}",
        )
        require(self.streams > 0, f"hw.streams must be positive, got {self.streams}")
        require(
            self.threads is None or self.streams <= self.threads,
            f"hw.streams ({self.streams}) cannot exceed hw.threads ({self.threads}): "
            "each stream needs at least one thread",
        )
        require(
            self.inter_op_threads > 0,
            f"hw.inter_op_threads must be positive, got {self.inter_op_threads}",
        )


class DataSource(StrEnum):
    reference = "reference"
    eleescan = "eleescan"


@dataclass
class DataConfig:
    """Reference showers: simulated (``reference``, cached) or read from EleEscan files."""

    name: str = MISSING
    source: DataSource = DataSource.reference
    n_showers: int | None = 10_000  # eleescan: at most this many (None: all)
    energy_min: float = 100.0
    energy_max: float = 500.0
    seed: int = 2021
    cache_dir: str = "data/cache"
    path: str | None = None  # eleescan: a file, a folder or a glob
    cell_threshold: float = 1e-6  # GeV; smaller cells are set to zero (3DGAN preprocessing)

    def __post_init__(self) -> None:
        require(
            self.n_showers is None or self.n_showers > 0,
            f"data.n_showers must be a positive number of showers, got {self.n_showers}",
        )
        require(
            0.0 < self.energy_min < self.energy_max,
            "data.energy_min and data.energy_max must satisfy 0 < min < max, "
            f"got {self.energy_min} and {self.energy_max}",
        )
        require(
            self.source is not DataSource.reference or self.n_showers is not None,
            "data=reference needs data.n_showers=<number of showers to simulate>",
        )
        require(
            self.source is not DataSource.eleescan or bool(self.path),
            "data=eleescan needs data.path=<file, folder or glob of EleEscan .h5 files>",
        )


@dataclass
class TrackingConfig:
    """Where runs are recorded: a sqlite store under the project, or a tracking server."""

    name: str = MISSING
    enabled: bool = True  # false: record nothing (e.g. on a machine without MLflow)
    uri: str | None = None  # None: sqlite:///<root>/<store_dir>/mlflow.db
    store_dir: str = "mlruns"
    experiment: str = "calo"
    run_name: str | None = None


@dataclass
class PhysicsConfig:
    """Binning and thresholds of the physics validation (calo.physics.validate)."""

    energy_bins: list[float] = field(default_factory=lambda: [100.0, 200.0, 300.0, 400.0, 500.0])
    hit_threshold: float = 3e-4  # GeV; a cell above it counts as a hit
    histogram_bins: int = 30  # equal-width bins of the separation-power histograms
    floor_seed: int = 0  # how the reference is split into halves for the statistical floor
    figures: bool = True  # log the physics figures (off for quick sweeps)

    def __post_init__(self) -> None:
        bins = self.energy_bins
        require(
            len(bins) >= 2 and all(a < b for a, b in zip(bins, bins[1:])),
            f"physics.energy_bins must be at least two increasing edges, got {bins}",
        )
        require(
            self.hit_threshold >= 0,
            f"physics.hit_threshold must be a non-negative energy in GeV, got {self.hit_threshold}",
        )
        require(
            self.histogram_bins >= 2,
            f"physics.histogram_bins must be at least 2, got {self.histogram_bins}",
        )


@dataclass
class BenchConfig:
    """The speed benchmark: each stream a pinned worker process, rounds alternating with fp32."""

    enabled: bool = True
    batch_sizes: list[int] = field(default_factory=lambda: [1, 64])
    warmup_batches: int = 2  # per stream, before every timed round
    seconds: float = 3.0  # timed seconds per round (each stream runs until then) ...
    min_batches: int = 3  # ... and at least this many timed batches
    rounds: int = 3  # fp32, quantized, fp32, quantized, ...: the speed-up is their paired ratio
    compare_fp32: bool = True  # also measure the fp32 baseline (quantized precisions)
    grid: bool = False  # also a threads x streams grid (the paper's Figure 4)
    grid_threads: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 14, 28, 56])
    grid_streams: list[int] = field(default_factory=lambda: [1, 2, 4, 7])
    grid_batch_size: int = 64
    # python -m calo.bench: the conf/precision options it compares
    precisions: list[str] = field(
        default_factory=lambda: ["fp32", "int8_inc", "bf16_inc", "fp16_tflite", "int8_tflite",
                                 "fp32_ov", "bf16_ov", "bf16_ov_accurate", "int8_ov",
                                 "int8_ov_accurate",
                                 "int8_ov_accurate_bf16", "int8_ort"])
    # ... and the pixel-wise difference of each to fp32 over this many showers (0: none)
    pixelwise_showers: int = 1000

    def __post_init__(self) -> None:
        require(self.pixelwise_showers >= 0,
                f"bench.pixelwise_showers cannot be negative, got {self.pixelwise_showers}")
        for key in ("batch_sizes", "grid_threads", "grid_streams"):
            values = getattr(self, key)
            require(len(values) > 0 and min(values) > 0,
                    f"bench.{key} must be a non-empty list of positive numbers, got {values}")
        for key in ("min_batches", "rounds", "grid_batch_size"):
            require(getattr(self, key) > 0,
                    f"bench.{key} must be positive, got {getattr(self, key)}")
        require(self.warmup_batches >= 0,
                f"bench.warmup_batches cannot be negative, got {self.warmup_batches}")
        require(self.seconds >= 0, f"bench.seconds cannot be negative, got {self.seconds}")


@dataclass
class EngineJobConfig:
    """What a job that builds, times and validates engines composes (a run, a search)."""

    model: ModelConfig = MISSING
    precision: PrecisionConfig = MISSING
    hw: HardwareConfig = MISSING
    data: DataConfig = MISSING
    tracking: TrackingConfig = MISSING
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    seed: int = 42


@dataclass
class RunConfig(EngineJobConfig):
    """One run: generate showers with a generator in some precision and measure them."""

    batch_size: int = 64
    n_generated: int | None = None  # None: one shower per reference shower

    def __post_init__(self) -> None:
        require(self.batch_size > 0, f"batch_size must be positive, got {self.batch_size}")
        require(
            self.n_generated is None or self.n_generated > 0,
            f"n_generated must be positive, got {self.n_generated}",
        )


class TrainPrecision(StrEnum):
    fp32 = "fp32"
    bf16 = "bf16"  # Keras mixed_bfloat16: bf16 compute, float32 variables, outputs and losses


class Strategy(StrEnum):
    default = "default"  # one device
    mirrored = "mirrored"  # several local GPUs
    multi_worker = "multi_worker"  # several machines (TF_CONFIG)


@dataclass
class TrainSettings:
    """The 3DGAN recipe (``3dgan.md``) and the bookkeeping of a training run."""

    name: str = "3dgan"  # checkpoints go to <checkpoint_root>/<name>
    epochs: int = 30
    batch_size: int = 128  # global: split between replicas
    max_steps: int | None = None  # stop after this many steps in all (a budget)
    max_minutes: float | None = None  # stop after this wall time (checkpointed)
    generator_lr: float = 5e-4
    discriminator_lr: float = 1e-4
    lr_decay_per_epoch: float = 0.95  # exponential decay of both rates
    lr_batch_size: int = 128  # the batch the rates are for: linear scaling to batch_size
    loss_weights: list[float] = field(default_factory=lambda: [6.0, 0.2, 0.1])
    # Generator physics losses (shape, energy, hits[, width, projections, centre,
    # resolution, spread, spectrum]; see calo.train.recipe); all 0: the paper's recipe
    physics_loss_weights: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    # ... compared in this many energy groups of each replica's batch (1: the whole batch)
    physics_energy_groups: int = 1
    real_label: float = 0.9  # one-sided label smoothing
    label_flip: float = 0.05  # fraction of real/fake labels swapped
    generator_steps: int = 1  # generator updates per batch (the Conv2D code: 1; Conv3D: 2)
    relu_epoch: int = 2  # epochs (from 0) trained with a linear output before the ReLU
    validation_fraction: float = 0.1
    validation_showers: int = 1000
    validate_every: int | None = None  # steps between validations (None: once per epoch)
    checkpoint_every: int = 100  # steps
    checkpoint_minutes: float = 15.0  # and at least this often (wall time)
    checkpoint_root: str = "checkpoints"
    resume: str | None = None  # "true"/"latest", "auto" (if a checkpoint exists), or a path
    strategy: Strategy = Strategy.default
    precision: TrainPrecision = TrainPrecision.fp32
    log_every: int = 1  # steps between loss logs to MLflow
    register_name: str | None = "calo-generator"  # MLflow model registry name

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "generator_steps", "checkpoint_every", "log_every",
                    "validation_showers"):
            value = getattr(self, key)
            require(value > 0, f"train.{key} must be positive, got {value}")
        # A zero budget is no budget: max_steps=0 used to train every epoch (0 is falsy).
        require(self.max_steps is None or self.max_steps > 0,
                f"train.max_steps must be a positive number of steps (or null: as many as "
                f"train.epochs make), got {self.max_steps}")
        require(self.max_minutes is None or self.max_minutes > 0,
                f"train.max_minutes must be a positive number of minutes (or null: no time "
                f"limit), got {self.max_minutes}")
        require(0.0 < self.validation_fraction < 1.0,
                f"train.validation_fraction must be in (0, 1), got {self.validation_fraction}")
        require(len(self.loss_weights) == 3,
                f"train.loss_weights needs 3 weights (BCE, AUX, ECAL), got {self.loss_weights}")
        require(3 <= len(self.physics_loss_weights) <= 9
                and all(weight >= 0 for weight in self.physics_loss_weights),
                "train.physics_loss_weights needs 3 to 9 non-negative weights (shape, energy, "
                "hits[, width, projections, centre, resolution, spread, spectrum]), got "
                f"{self.physics_loss_weights}")
        require(self.physics_energy_groups > 0
                and self.batch_size % self.physics_energy_groups == 0,
                f"train.physics_energy_groups must divide train.batch_size ({self.batch_size}), "
                f"got {self.physics_energy_groups}")
        require(self.validate_every is None or self.validate_every > 0,
                f"train.validate_every must be positive, got {self.validate_every}")
        require(self.relu_epoch >= 0, f"train.relu_epoch must be >= 0, got {self.relu_epoch}")
        require(0.0 <= self.label_flip < 0.5,
                f"train.label_flip must be in [0, 0.5), got {self.label_flip}")


@dataclass
class TrainConfig:
    """``python -m calo.train``: the same model, hw, data and tracking groups as a run."""

    model: ModelConfig = MISSING
    hw: HardwareConfig = MISSING
    data: DataConfig = MISSING
    tracking: TrackingConfig = MISSING
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    train: TrainSettings = field(default_factory=TrainSettings)
    seed: int = 42


_GROUPS: dict[str, type] = {
    "model": ModelConfig,
    "precision": PrecisionConfig,
    "hw": HardwareConfig,
    "data": DataConfig,
    "tracking": TrackingConfig,
}


def register_configs() -> None:
    """Register the schemas; option files name theirs as ``<group>_schema`` in ``defaults``."""
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    store.store(name="train_schema", node=TrainConfig)
    for group, schema in _GROUPS.items():
        store.store(group=group, name=f"{group}_schema", node=schema)


def to_settings(cfg: DictConfig | Any) -> Any:
    """Any composed config (run, train) as its typed dataclasses, with every value checked."""
    try:
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except (ValueError, OmegaConfBaseException) as error:
        raise CaloError(f"invalid config: {one_line(error)}") from error


register_configs()
