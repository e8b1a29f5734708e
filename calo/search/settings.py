"""The search's settings: ``conf/search.yaml`` composes the same model, precision, hw, data and
tracking groups as a run, plus ``search.*`` (:class:`SearchConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from hydra.core.config_store import ConfigStore

from calo.config import Backend, EngineJobConfig, require

__all__ = ["SEARCHABLE", "SearchConfig", "SearchGranularity", "SearchJobConfig", "SearchMode",
           "SearchPhysics", "SearchSampler", "SearchSpeed"]


# The backends whose keep_fp32 the search chooses: Neural Compressor's and NNCF's int8.
SEARCHABLE = (Backend.int8_inc, Backend.int8_ov)


class SearchGranularity(StrEnum):
    node = "node"  # one keep-fp32 switch per quantizable node
    path = "path"  # one per generator path (xy, zx, yz) and one per node outside the paths
    depth = "depth"  # one per block index across the three paths, and per node outside them


class SearchMode(StrEnum):
    multi = "multi"  # Pareto front of physics distance and speed
    single = "single"  # smallest physics distance within search.latency_budget_ms


class SearchPhysics(StrEnum):
    svn = "svn"  # single validation number of the engine's showers against the reference
    pixel = "pixel"  # pixel-wise distance to fp32 on the same inputs, relative to the ECAL


class SearchSpeed(StrEnum):
    speedup = "speedup"  # throughput ratio to fp32, rounds alternating (maximised)
    throughput = "throughput"  # showers/s (maximised)
    latency = "latency"  # median batch latency, ms (minimised)


class SearchSampler(StrEnum):
    auto = "auto"  # nsga2 for mode=multi, tpe for mode=single
    nsga2 = "nsga2"
    tpe = "tpe"
    random = "random"


@dataclass
class SearchConfig:
    """How the search runs: a trial quantizes, generates ``n_showers``, measures their physics
    and times ``batch_size`` batches."""

    n_trials: int = 30  # completed trials the study should hold; a rerun resumes up to it
    study: str | None = None  # None: <model>-<granularity>-<mode>@<hw>
    storage: str | None = None  # SQLAlchemy URL; None: sqlite beside the MLflow store
    granularity: SearchGranularity = SearchGranularity.node
    mode: SearchMode = SearchMode.multi
    physics: SearchPhysics = SearchPhysics.pixel
    speed: SearchSpeed = SearchSpeed.speedup
    latency_budget_ms: float | None = None  # mode=single: slower trials are infeasible
    sampler: SearchSampler = SearchSampler.auto
    population_size: int = 10  # NSGA-II generation size
    # The first generation: plain int8, then sets of 1..start_switches switches on, where
    # the int8 speed-up survives (0: Optuna draws them, each switch on with probability 1/2)
    start_switches: int = 2
    seed: int = 0  # sampler seed
    n_showers: int = 1000  # generated per trial (same latents and energies every trial)
    batch_size: int = 64  # timed batch size
    bench_seconds: float = 2.0  # timed seconds per round
    bench_rounds: int = 2  # rounds per trial (alternating with fp32 for speed=speedup)
    max_failure_rate: float = 0.2  # crashed trials allowed, as a share of n_trials
    physics_tolerance: float = 0.1  # the chosen point: SVN within this of fp32's ...
    min_speed_fraction: float = 0.8  # ... keeping this share of plain int8's speed-up
    compare_with: list[Backend] = field(default_factory=lambda: [Backend.int8_tflite])
    autotune: bool = True  # also run Neural Compressor's autotune on the study's candidates
    register_name: str | None = "calo-int8-search"  # MLflow registry name of the chosen engine
    save_as: str | None = None  # also write the chosen set as conf/precision/<save_as>.yaml
    save_trial: int | None = None  # calo.search.export: this trial (None: the chosen)
    heartbeat_s: int = 60  # a trial silent for 3x this is failed (and retried) by the next run

    def __post_init__(self) -> None:
        require(self.n_trials > 0, f"search.n_trials must be positive (a search of zero trials "
                                   f"finds nothing), got {self.n_trials}")
        for key in ("population_size", "n_showers", "batch_size", "bench_rounds",
                    "heartbeat_s"):
            require(getattr(self, key) > 0,
                    f"search.{key} must be positive, got {getattr(self, key)}")
        require(self.population_size >= 2,
                f"search.population_size must be at least 2, got {self.population_size}")
        require(self.start_switches >= 0,
                f"search.start_switches cannot be negative, got {self.start_switches}")
        require(self.bench_seconds >= 0,
                f"search.bench_seconds cannot be negative, got {self.bench_seconds}")
        require(0.0 <= self.max_failure_rate <= 1.0,
                f"search.max_failure_rate must be in [0, 1], got {self.max_failure_rate}")
        require(self.physics_tolerance >= 0,
                f"search.physics_tolerance cannot be negative, got {self.physics_tolerance}")
        require(0.0 < self.min_speed_fraction <= 1.0,
                f"search.min_speed_fraction must be in (0, 1], got {self.min_speed_fraction}")
        require(self.mode is not SearchMode.single or (self.latency_budget_ms or 0) > 0,
                "search.mode=single needs search.latency_budget_ms=<positive ms per batch>")
        require(self.study is None or bool(self.study.strip()),
                "search.study must be a non-empty name (or null for the default)")


@dataclass
class SearchJobConfig(EngineJobConfig):
    """``python -m calo.search``: which int8 nodes of the generator stay float32."""

    search: SearchConfig = field(default_factory=SearchConfig)

    def __post_init__(self) -> None:
        require(self.precision.backend in SEARCHABLE,
                "the search chooses which int8 nodes stay fp32: it needs precision=int8_inc or "
                f"int8_ov (or an option of theirs), got precision={self.precision.name}")


ConfigStore.instance().store(name="search_schema", node=SearchJobConfig)
