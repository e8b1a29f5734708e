"""``make bench``: one generator in every available precision on this machine's topology.

One MLflow parent run holds the summary table; each precision is a child run with its own
metrics (each quantized one measured in alternating rounds with fp32, in that same child run,
and its pixel-wise difference to fp32 on the same seeded inputs, under the names calo.run
logs it). A precision this machine or this code base cannot build is skipped, with the reason.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from calo.bench.engines import FP32, SavedEngines, save_engines
from calo.bench.stage import BenchReport, bench_batch_sizes, log_report, measure
from calo.config import Backend, RunConfig, to_settings
from calo.data.showers import Showers
from calo.errors import CaloError
from calo.formatting import markdown_table
from calo.hw import Topology, apply_topology, resolve_topology
from calo.tracking import Tracker, tracked_run

__all__ = ["SuiteRow", "run_suite", "suite_table"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SuiteRow:
    """One precision of the suite: its benchmark and child run, or why it was skipped."""

    precision: str
    report: BenchReport | None = None
    run_id: str | None = None
    skipped: str | None = None
    pixelwise: float | None = None  # mean per-event sum |fp32 - X| / fp32 ECAL


def run_suite(cfg: DictConfig, variants: Mapping[str, DictConfig],
              skipped: Mapping[str, str] | None = None) -> list[SuiteRow]:
    """Benchmark each composed variant (a run config per precision) against one shared fp32
    baseline; ``skipped`` names precisions that could not even be composed, with the reason."""
    settings = to_settings(cfg)
    topology = resolve_topology(settings.hw)
    apply_topology(topology)
    suite_tags = {"bench_suite": uuid.uuid4().hex[:12]}
    with tracked_run(cfg, settings.tracking, run_name=f"bench@{topology.name}",
                     tags={**suite_tags, "bench_role": "summary"}) as parent:
        parent.log_params(topology.as_params())
        rows = [SuiteRow(name, skipped=f"skipped: {reason}")
                for name, reason in (skipped or {}).items()]
        rows += _measure_variants(settings, variants, topology,
                                  {**suite_tags, "bench_role": "precision"}, parent.run_id)
        order = {name: index for index, name in enumerate(settings.bench.precisions)}
        rows.sort(key=lambda row: order.get(row.precision, len(order)))
        _log_summary(rows, settings.bench.batch_sizes, parent)
    return rows


def _measure_variants(settings: RunConfig, variants: Mapping[str, DictConfig],
                      topology: Topology, tags: Mapping[str, str],
                      parent_run_id: str | None) -> list[SuiteRow]:
    from calo.model.io import NetworkIO
    from calo.model.weights import load_generator

    generator, trained = load_generator(settings.model)
    io = NetworkIO.from_config(settings.model)
    sizes = bench_batch_sizes(settings.bench)
    rows = []
    with tempfile.TemporaryDirectory(prefix="calo-bench-") as tmp:
        folder = Path(tmp)
        log.info("building the fp32 baseline engine")
        baseline = save_engines(generator, io, FP32, sizes, folder)
        probe = _PixelProbe.of(settings, baseline)
        for name, cfg in variants.items():
            variant = to_settings(cfg)
            if variant.precision.backend is Backend.fp32:
                candidate: SavedEngines = baseline
            else:
                try:
                    candidate = save_engines(generator, io, variant.precision, sizes, folder,
                                             latent_distribution=variant.model.latent_distribution)
                except CaloError as error:
                    log.warning("skipping precision=%s: %s", name, error)
                    rows.append(SuiteRow(name, skipped=f"skipped: {error}"))
                    continue
            versus = None if candidate is baseline else baseline
            run_tags = {**tags, "choice/precision": name, "generator_trained": str(trained).lower()}
            try:
                with tracked_run(cfg, variant.tracking, run_name=f"bench:{name}@{topology.name}",
                                 tags=run_tags, parent_run_id=parent_run_id) as tracker:
                    tracker.log_params(topology.as_params())
                    report = measure(candidate, versus, topology, variant.bench, variant.seed)
                    log_report(report, tracker)
                    pixel = probe.compare(candidate, tracker) if probe and versus else None
            except CaloError as error:  # its child run is marked FAILED; the others go on
                log.error("precision=%s failed: %s", name, error)
                rows.append(SuiteRow(name, run_id=tracker.run_id, skipped=f"failed: {error}"))
                continue
            rows.append(SuiteRow(name, report, tracker.run_id, pixelwise=pixel))
    return rows


@dataclass(frozen=True)
class _PixelProbe:
    """Seeded latents and energies, and the fp32 engine's showers for them, to which each
    precision's showers are compared cell by cell (the paper's Table 5)."""

    latent: np.ndarray
    energy: np.ndarray
    batch_size: int
    fp32: Showers

    @classmethod
    def of(cls, settings: RunConfig, baseline: SavedEngines) -> _PixelProbe | None:
        from calo.model.io import sample_latent

        count = settings.bench.pixelwise_showers
        if not count:
            return None
        rng = np.random.default_rng(settings.seed)
        latent = sample_latent(count, settings.model.latent_dim,
                               settings.model.latent_distribution, rng)
        energy = rng.uniform(settings.data.energy_min, settings.data.energy_max, count)
        batch_size = max(baseline.folders)
        log.info("generating %d fp32 showers for the pixel-wise differences", count)
        return cls(latent, energy, batch_size, _generate(baseline, latent, energy, batch_size))

    def compare(self, engines: SavedEngines, tracker: Tracker) -> float:
        from calo.physics.pixelwise import pixelwise

        showers = _generate(engines, self.latent, self.energy, self.batch_size)
        metrics = pixelwise(self.fp32, showers).metrics()
        tracker.log_metrics({f"physics/engine_vs_fp32/{k}": v for k, v in metrics.items()})
        return metrics["pixel_rel_mean"]


def _generate(engines: SavedEngines, latent: np.ndarray, energy: np.ndarray,
              batch_size: int) -> Showers:
    from calo.precision import load_engine

    engine = load_engine(engines.folders[batch_size])
    return Showers(engine.generate(latent, energy, batch_size), energy)


def suite_table(rows: list[SuiteRow], batch_sizes: list[int]) -> list[dict[str, object]]:
    """The ``make bench`` table: showers/s at the largest batch, median latency and speed-up
    over fp32 (measured side by side in the same child run) at each batch, size on disk, the
    workers' peak memory and the pixel-wise difference to fp32."""
    largest = max(batch_sizes)
    table: list[dict[str, object]] = []
    for row in rows:
        line: dict[str, object] = {"precision": row.precision,
                                   f"showers/s b{largest}": None}
        line.update({f"latency b{b} ms": None for b in batch_sizes})
        line.update({f"speed-up b{b}": None for b in batch_sizes})
        line.update({"size MB": None, "peak MB": None, "pixel-wise": row.pixelwise,
                     "note": row.skipped or ""})
        if row.report is not None:
            comparisons = row.report.result.comparisons
            line[f"showers/s b{largest}"] = comparisons[largest].candidate.throughput
            for b in batch_sizes:
                line[f"latency b{b} ms"] = comparisons[b].candidate.latency_median_ms
                line[f"speed-up b{b}"] = comparisons[b].speedup
            line["size MB"] = row.report.result.disk_bytes / 2**20
            line["peak MB"] = max(c.candidate.peak_rss_mb for c in comparisons.values())
            if comparisons[largest].baseline is None:
                line["note"], line["pixel-wise"] = "baseline", 0.0
            else:
                fp32 = comparisons[largest].baseline.throughput
                line["note"] = f"fp32 {fp32:.1f} showers/s b{largest} in the same run"
        table.append(line)
    return table


def _log_summary(rows: list[SuiteRow], batch_sizes: list[int], parent: Tracker) -> None:
    table = suite_table(rows, batch_sizes)
    parent.log_text(markdown_table(table) + "\n", "bench/table.md")
    parent.log_dict({"rows": table, "runs": {r.precision: r.run_id for r in rows}},
                    "bench/table.json")
    for row in rows:
        if row.report is None:
            continue
        metrics = row.report.result.metrics()
        parent.log_metrics({key.replace("bench/", f"bench/{row.precision}/", 1): value
                            for key, value in metrics.items()
                            if key.startswith(("bench/throughput_", "bench/speedup_",
                                               "bench/latency_median_ms_", "bench/disk_mb"))})
