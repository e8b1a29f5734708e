"""The bench stage of a run: the run's engine (and the fp32 baseline) saved for stream workers,
measured, and handed to the Tracker."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from calo.bench.engines import FP32, SavedEngines, save_engines
from calo.bench.plot import plot_grid
from calo.bench.results import BenchResult, GridResult
from calo.bench.runner import benchmark, benchmark_grid
from calo.config import Backend, BenchConfig, RunConfig
from calo.formatting import markdown_table
from calo.hw import Topology, detect_machine
from calo.precision.engine import Engine
from calo.tracking import Tracker

__all__ = ["BenchReport", "bench_batch_sizes", "bench_engine", "log_report", "measure"]


@dataclass(frozen=True)
class BenchReport:
    """The benchmark on the run's topology, and the threads x streams grid if asked for."""

    result: BenchResult
    grid: GridResult | None = None


def bench_batch_sizes(cfg: BenchConfig) -> list[int]:
    """Every batch size the benchmark runs (the grid's too): each needs an engine."""
    sizes = list(dict.fromkeys(cfg.batch_sizes))
    if cfg.grid and cfg.grid_batch_size not in sizes:
        sizes.append(cfg.grid_batch_size)
    return sizes


def measure(candidate: SavedEngines, baseline: SavedEngines | None, topology: Topology,
            cfg: BenchConfig, seed: int) -> BenchReport:
    result = benchmark(candidate, baseline, topology, cfg, seed)
    grid = benchmark_grid(candidate, baseline, cfg, seed) if cfg.grid else None
    return BenchReport(result, grid)


def bench_engine(generator, engine: Engine, settings: RunConfig,
                 topology: Topology) -> BenchReport:
    """Benchmark the run's engine; a quantized one alternates with the fp32 generator's."""
    sizes = bench_batch_sizes(settings.bench)
    with tempfile.TemporaryDirectory(prefix="calo-bench-") as folder:
        distribution = settings.model.latent_distribution  # of the calibration latents
        candidate = save_engines(generator, engine.io, settings.precision, sizes, Path(folder),
                                 engine, distribution)
        baseline = None
        if settings.bench.compare_fp32 and settings.precision.backend is not Backend.fp32:
            baseline = save_engines(generator, engine.io, FP32, sizes, Path(folder))
        return measure(candidate, baseline, topology, settings.bench, settings.seed)


def grid_metrics(grid: GridResult) -> dict[str, float]:
    metrics = {}
    for row in grid.rows():
        cell = f"bench/grid/{row['threads']}x{row['streams']}"
        metrics[f"{cell}/throughput"] = row[grid.precision]
        if row["speedup"] is not None:
            metrics[f"{cell}/fp32_throughput"] = row["fp32"]
            metrics[f"{cell}/speedup"] = row["speedup"]
    return metrics


def log_report(report: BenchReport, tracker: Tracker) -> None:
    """Metrics, the round-by-round JSON, and the grid as table and figure."""
    tracker.log_metrics(report.result.metrics())
    tracker.log_dict(report.result.as_dict(), "bench/bench.json")
    if report.grid is None:
        return
    rows = report.grid.rows()
    tracker.log_metrics(grid_metrics(report.grid))
    tracker.log_dict({"precision": report.grid.precision, "batch_size": report.grid.batch_size,
                      "rows": rows}, "bench/grid.json")
    tracker.log_text(markdown_table(rows) + "\n", "bench/grid.md")
    figure = plot_grid(report.grid, detect_machine().cpu_model)
    tracker.log_figure(figure, "bench/grid.png")
