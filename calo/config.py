"""Structured configs: the schema of every Hydra config group, registered in the ConfigStore.

Hydra checks types when it composes (``hw.threads=abc`` is refused with the key named); the
``__post_init__`` checks below catch values of the right type that make no sense, when the
composed config is turned into these dataclasses by :func:`to_run_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from calo.errors import CaloError

__all__ = [
    "Backend",
    "DataConfig",
    "DataSource",
    "HardwareConfig",
    "LatentDistribution",
    "ModelConfig",
    "PhysicsConfig",
    "PrecisionConfig",
    "RunConfig",
    "TrackingConfig",
    "register_configs",
    "to_run_config",
]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


class LatentDistribution(StrEnum):
    normal = "normal"
    uniform = "uniform"


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
    cell_scale: float = 100.0  # the network works in GeV * cell_scale ("xscale")
    weights: str | None = None  # generator .weights.h5 (path or models:/name/version)
    discriminator_weights: str | None = None

    def __post_init__(self) -> None:
        _require(self.latent_dim > 0, f"model.latent_dim must be positive, got {self.latent_dim}")
        _require(
            len(self.path_filters) == 8 and min(self.path_filters) > 0,
            f"model.path_filters needs 8 positive filter counts, got {self.path_filters}",
        )
        _require(
            len(self.discriminator_filters) == 6 and min(self.discriminator_filters) > 0,
            "model.discriminator_filters needs 6 positive filter counts, "
            f"got {self.discriminator_filters}",
        )
        _require(0.0 <= self.dropout < 1.0, f"model.dropout must be in [0, 1), got {self.dropout}")


class Backend(StrEnum):
    fp32 = "fp32"
    int8_inc = "int8_inc"
    bf16_inc = "bf16_inc"
    fp16_tflite = "fp16_tflite"
    int8_tflite = "int8_tflite"


@dataclass
class PrecisionConfig:
    """How the fp32 generator is turned into an inference engine."""

    name: str = MISSING
    backend: Backend = Backend.fp32
    calibration_size: int = 256
    keep_fp32: list[str] = field(default_factory=list)
    fixed_batch_size: int = 64

    def __post_init__(self) -> None:
        _require(
            self.calibration_size > 0,
            f"precision.calibration_size must be positive, got {self.calibration_size}",
        )
        _require(
            self.fixed_batch_size > 0,
            f"precision.fixed_batch_size must be positive, got {self.fixed_batch_size}",
        )


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

    def __post_init__(self) -> None:
        _require(
            self.threads is None or self.threads > 0,
            f"hw.threads must be positive, got {self.threads}",
        )
        _require(self.streams > 0, f"hw.streams must be positive, got {self.streams}")
        _require(
            self.threads is None or self.streams <= self.threads,
            f"hw.streams ({self.streams}) cannot exceed hw.threads ({self.threads}): "
            "each stream needs at least one thread",
        )
        _require(
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
        _require(
            self.n_showers is None or self.n_showers > 0,
            f"data.n_showers must be a positive number of showers, got {self.n_showers}",
        )
        _require(
            0.0 < self.energy_min < self.energy_max,
            "data.energy_min and data.energy_max must satisfy 0 < min < max, "
            f"got {self.energy_min} and {self.energy_max}",
        )
        _require(
            self.source is not DataSource.reference or self.n_showers is not None,
            "data=reference needs data.n_showers=<number of showers to simulate>",
        )
        _require(
            self.source is not DataSource.eleescan or bool(self.path),
            "data=eleescan needs data.path=<file, folder or glob of EleEscan .h5 files>",
        )


@dataclass
class TrackingConfig:
    """Where runs are recorded: a sqlite store under the project, or a tracking server."""

    name: str = MISSING
    uri: str | None = None  # None: sqlite:///<root>/<store_dir>/mlflow.db
    store_dir: str = "mlruns"
    experiment: str = "calo"
    run_name: str | None = None


@dataclass
class PhysicsConfig:
    """Binning of the physics validation."""

    energy_bins: list[float] = field(default_factory=lambda: [100.0, 200.0, 300.0, 400.0, 500.0])

    def __post_init__(self) -> None:
        bins = self.energy_bins
        _require(
            len(bins) >= 2 and all(a < b for a, b in zip(bins, bins[1:])),
            f"physics.energy_bins must be at least two increasing edges, got {bins}",
        )


@dataclass
class RunConfig:
    """One run: generate showers with a generator in some precision and measure them."""

    model: ModelConfig = MISSING
    precision: PrecisionConfig = MISSING
    hw: HardwareConfig = MISSING
    data: DataConfig = MISSING
    tracking: TrackingConfig = MISSING
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    seed: int = 42
    batch_size: int = 64
    n_generated: int | None = None  # None: one shower per reference shower

    def __post_init__(self) -> None:
        _require(self.batch_size > 0, f"batch_size must be positive, got {self.batch_size}")
        _require(
            self.n_generated is None or self.n_generated > 0,
            f"n_generated must be positive, got {self.n_generated}",
        )


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
    for group, schema in _GROUPS.items():
        store.store(group=group, name=f"{group}_schema", node=schema)


def to_run_config(cfg: DictConfig | Any) -> RunConfig:
    """The composed config as typed dataclasses, with every value checked."""
    try:
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except (ValueError, OmegaConfBaseException) as error:
        raise CaloError(f"invalid config: {error}".splitlines()[0]) from error


register_configs()
