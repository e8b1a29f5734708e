"""Speed benchmark: stream worker processes pinned to their own CPUs, fp32 and a quantized engine
in alternating rounds, a threads x streams grid, and the ``make bench`` suite."""

from calo.bench.engines import SavedEngines, save_engines
from calo.bench.results import (
    BenchResult,
    Comparison,
    GridCell,
    GridResult,
    Measurement,
    Round,
    StreamReport,
)
from calo.bench.runner import benchmark, benchmark_grid, grid_topologies
from calo.bench.stage import BenchReport, bench_engine, log_report, measure

__all__ = ["BenchReport", "BenchResult", "Comparison", "GridCell", "GridResult", "Measurement",
           "Round", "SavedEngines", "StreamReport", "bench_engine", "benchmark", "benchmark_grid",
           "grid_topologies", "log_report", "measure", "save_engines"]
