"""How a search measures an engine, the same way for every trial: the same latents and energies
through the engine and the fp32 generator, the same reference, the same timed batches.

Physics: the engine's showers against the reference (SVN and the other distances of
:func:`calo.physics.validate.compare`) and against the fp32 showers of the same inputs (the
same distances, and the pixel-wise comparison). Speed: :func:`calo.bench.benchmark` on the
run's topology (stream worker processes); for ``search.speed=speedup`` in rounds alternating
with the fp32 engine, the speed-up being the median of the paired ratios.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from calo.bench import BenchResult, SavedEngines, benchmark, save_engines
from calo.bench.engines import FP32
from calo.config import BenchConfig, PrecisionConfig
from calo.data import Showers
from calo.hw import Topology
from calo.model.io import NetworkIO, sample_latent
from calo.physics.features import extract_features
from calo.physics.pixelwise import pixelwise
from calo.physics.validate import compare
from calo.precision.engine import Engine
from calo.search.settings import SearchConfig, SearchJobConfig, SearchPhysics, SearchSpeed

__all__ = ["DISTANCE_KEYS", "SPEED_KEYS", "Evaluator", "TrialMeasurement"]

log = logging.getLogger(__name__)

# The objectives' keys in TrialMeasurement.summary() (what a trial records in the study): the one
# mapping from the search's objectives to the measured numbers, for trials and summary alike.
DISTANCE_KEYS = {SearchPhysics.svn: "svn", SearchPhysics.pixel: "pixel"}
SPEED_KEYS = {SearchSpeed.speedup: "speedup", SearchSpeed.throughput: "throughput",
              SearchSpeed.latency: "latency_ms"}


@dataclass(frozen=True)
class TrialMeasurement:
    """One engine as the search sees it: physics against the reference and fp32, and speed."""

    physics: dict[str, float]
    bench: dict[str, float]
    svn: float  # against the reference
    pixel: float  # pixel-wise distance to fp32, relative to the fp32 ECAL (mean over events)
    latency_ms: float  # median batch latency at search.batch_size
    throughput: float  # showers/s
    speedup: float | None  # paired ratio to fp32 (speed=speedup only)

    def distance(self, physics: SearchPhysics) -> float:
        return self.summary()[DISTANCE_KEYS[physics]]

    def speed(self, speed: SearchSpeed) -> float:
        value = self.summary()[SPEED_KEYS[speed]]
        return float(value) if speed is SearchSpeed.speedup else value

    def values(self, search: SearchConfig) -> list[float]:
        """The search's two objectives: physics distance, speed."""
        return [self.distance(search.physics), self.speed(search.speed)]

    def summary(self) -> dict[str, float | None]:
        """The numbers a trial records in the study (and the summary reads back)."""
        return {"svn": self.svn, "pixel": self.pixel, "latency_ms": self.latency_ms,
                "throughput": self.throughput, "speedup": self.speedup}

    def metrics(self) -> dict[str, float]:
        return {**self.physics, **self.bench}


class Evaluator:
    """The fixed inputs, the reference and the fp32 baseline of a search, made once; then
    :meth:`measure` for each engine."""

    def __init__(self, generator, settings: SearchJobConfig, topology: Topology,
                 reference: Showers, folder: Path) -> None:
        search = settings.search
        self.settings, self.topology, self.generator = settings, topology, generator
        self.io = NetworkIO.from_config(settings.model)
        rng = np.random.default_rng(settings.seed)
        self.latent = sample_latent(search.n_showers, settings.model.latent_dim,
                                    settings.model.latent_distribution, rng)
        self.energy = reference.energy[np.arange(search.n_showers) % len(reference)]
        self.n_reference = len(reference)
        self.reference = extract_features(reference, settings.physics.hit_threshold)
        log.info("search baseline: %d fp32 showers on the trials' inputs", search.n_showers)
        fp32_engine = self._fp32_engine()
        self.fp32 = self._generate(fp32_engine)
        self.fp32_features = extract_features(self.fp32, settings.physics.hit_threshold)
        self.fp32_svn = compare(self.reference, self.fp32_features, settings.physics).svn.value
        # the baseline the trials alternate with, saved once (speed=speedup, the only mode
        # that times fp32)
        self.fp32_saved: SavedEngines | None = (
            save_engines(generator, self.io, FP32, [search.batch_size], folder, fp32_engine)
            if search.speed is SearchSpeed.speedup else None)

    def _fp32_engine(self) -> Engine:
        from calo.precision import build_engine

        return build_engine(self.generator, self.io, FP32)

    def _generate(self, engine: Engine) -> Showers:
        return Showers(engine.generate(self.latent, self.energy, self.settings.search.batch_size),
                       self.energy)

    def physics(self, engine: Engine) -> tuple[dict[str, float], float, float]:
        """``physics/...`` metrics of the engine's showers, their SVN against the reference and
        their pixel-wise distance to fp32."""
        settings = self.settings.physics
        showers = self._generate(engine)
        features = extract_features(showers, settings.hit_threshold)
        versus_reference = compare(self.reference, features, settings).metrics()
        versus_fp32 = compare(self.fp32_features, features, settings).metrics()
        pixel = pixelwise(self.fp32, showers).metrics()
        metrics = {"physics/svn": versus_reference["svn"], "physics/fp32_svn": self.fp32_svn,
                   **{f"physics/engine/{k}": v for k, v in versus_reference.items()},
                   **{f"physics/engine_vs_fp32/{k}": v for k, v in versus_fp32.items()},
                   **{f"physics/engine_vs_fp32/{k}": v for k, v in pixel.items()}}
        return metrics, versus_reference["svn"], pixel["pixel_rel_mean"]

    def bench_config(self) -> BenchConfig:
        search: SearchConfig = self.settings.search
        return replace(self.settings.bench, batch_sizes=[search.batch_size],
                       seconds=search.bench_seconds, rounds=search.bench_rounds, grid=False)

    def _time(self, candidate: tuple[PrecisionConfig, Engine],
              baseline: SavedEngines | tuple[PrecisionConfig, Engine] | None,
              bench: BenchConfig) -> BenchResult:
        """``candidate`` saved and timed by calo.bench on the run's topology, in rounds
        alternating with ``baseline`` (saved already, or saved here too) if given."""
        with tempfile.TemporaryDirectory(prefix="calo-search-") as folder:
            def save(name: str, pair: tuple[PrecisionConfig, Engine]) -> SavedEngines:
                precision, engine = pair
                return save_engines(self.generator, self.io, precision,
                                    [self.settings.search.batch_size], Path(folder) / name,
                                    engine)

            saved = save("candidate", candidate)
            if isinstance(baseline, tuple):
                baseline = save("baseline", baseline)
            return benchmark(saved, baseline, self.topology, bench, self.settings.seed)

    def speed(self, precision: PrecisionConfig, engine: Engine) -> BenchResult:
        """The engine timed on the run's topology (alternating with fp32 for speed=speedup)."""
        return self._time((precision, engine), self.fp32_saved, self.bench_config())

    def paired_ratio(self, first: tuple[PrecisionConfig, Engine],
                     second: tuple[PrecisionConfig, Engine], rounds: int) -> float:
        """Throughput of ``first`` over ``second``: the median of the ratios of ``rounds``
        pairs of neighbouring rounds (calo.bench, alternating the two engines)."""
        result = self._time(first, second, replace(self.bench_config(), rounds=rounds))
        return float(result.comparisons[self.settings.search.batch_size].speedup)

    def measure(self, precision: PrecisionConfig, engine: Engine) -> TrialMeasurement:
        physics, svn, pixel = self.physics(engine)
        result = self.speed(precision, engine)
        comparison = result.comparisons[self.settings.search.batch_size]
        return TrialMeasurement(physics, result.metrics(), svn, pixel,
                           comparison.candidate.latency_median_ms,
                           comparison.candidate.throughput, comparison.speedup)
