"""The benchmark: a precision's engines, and the fp32 baseline's, measured in alternating rounds
on a topology of pinned stream workers; and the same over a threads x streams grid."""

from __future__ import annotations

import logging
from contextlib import ExitStack

from tqdm.auto import tqdm

from calo.bench.engines import SavedEngines
from calo.bench.results import (
    BenchResult,
    Comparison,
    GridCell,
    GridResult,
    Measurement,
    Round,
)
from calo.bench.worker import RoundRequest, StreamPool
from calo.config import BenchConfig, HardwareConfig
from calo.hw import Machine, Topology, resolve_topology

__all__ = ["benchmark", "benchmark_grid", "grid_topologies"]

log = logging.getLogger(__name__)


def benchmark(candidate: SavedEngines, baseline: SavedEngines | None, topology: Topology,
              cfg: BenchConfig, seed: int = 0,
              batch_sizes: list[int] | None = None) -> BenchResult:
    """Measure ``candidate`` (and ``baseline``, alternating round by round) at each batch size.

    Every engine gets its own pool of ``topology.streams`` workers; all pools are loaded
    before the first round, so no round shares the CPUs with a worker still starting up.
    """
    batch_sizes = batch_sizes or cfg.batch_sizes
    engines = [candidate] if baseline is None else [baseline, candidate]
    for saved in engines:
        for batch_size in batch_sizes:
            saved.check_batch_size(batch_size)
    rounds: dict[tuple[int, int], list[Round]] = {(i, b): [] for i in range(len(engines))
                                                  for b in batch_sizes}
    label = candidate.precision + ("" if baseline is None else " vs fp32")
    log.info("benchmarking %s: %d stream(s) x %d thread(s), batch sizes %s, %d round(s)",
             label, topology.streams, topology.threads_per_stream, batch_sizes, cfg.rounds)
    with ExitStack() as stack:
        pools = [stack.enter_context(StreamPool(e.precision, e.folders, topology, seed))
                 for e in engines]
        for pool in pools:
            pool.wait_ready()
        steps = [(b, i) for b in batch_sizes for _ in range(cfg.rounds) for i in range(len(pools))]
        for batch_size, index in tqdm(steps, desc=f"bench {label}", unit="round"):
            request = RoundRequest(batch_size, cfg.warmup_batches, cfg.seconds, cfg.min_batches)
            rounds[index, batch_size].append(pools[index].measure(request))

    def measurement(index: int, batch_size: int) -> Measurement:
        return Measurement(engines[index].precision, batch_size, tuple(rounds[index, batch_size]))

    comparisons = {
        b: Comparison(measurement(len(engines) - 1, b), measurement(0, b) if baseline else None)
        for b in batch_sizes
    }
    return BenchResult(candidate.precision, topology.threads, topology.streams,
                       candidate.disk_bytes, comparisons,
                       baseline.disk_bytes if baseline else None)


def grid_topologies(cfg: BenchConfig, machine: Machine | None = None) -> list[Topology]:
    """Each requested (threads, streams) cell as this machine can run it, without repeats.

    Cells with more streams than threads are left out; cells beyond the machine are scaled
    down by :func:`calo.hw.resolve_topology` (which warns), and dropped if that repeats one.
    """
    topologies: dict[tuple[int, int], Topology] = {}
    for threads in cfg.grid_threads:
        for streams in cfg.grid_streams:
            if streams > threads:
                continue
            requested = HardwareConfig(name=f"grid {threads}x{streams}", threads=threads,
                                       streams=streams)
            topology = resolve_topology(requested, machine)
            key = (topology.threads, topology.streams)
            if key in topologies:
                log.info("grid cell %d threads x %d streams runs as %d x %d here, already "
                         "measured", threads, streams, *key)
                continue
            topologies[key] = topology
    return list(topologies.values())


def benchmark_grid(candidate: SavedEngines, baseline: SavedEngines | None, cfg: BenchConfig,
                   seed: int = 0, machine: Machine | None = None) -> GridResult:
    """Throughput per (threads, streams) cell at ``cfg.grid_batch_size``."""
    grid = GridResult(candidate.precision, cfg.grid_batch_size)
    for topology in grid_topologies(cfg, machine):
        result = benchmark(candidate, baseline, topology, cfg, seed, [cfg.grid_batch_size])
        grid.cells.append(GridCell(topology.requested_threads, topology.requested_streams,
                                   topology.threads, topology.streams,
                                   result.comparisons[cfg.grid_batch_size]))
    return grid
