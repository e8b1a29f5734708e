"""Inference streams as worker processes: each loads its own engine from a saved folder, pins
itself to its own CPUs with ``threads / streams`` intra-op threads, and times batches in rounds
that all streams start together (a barrier).

The workers of a pool stay alive between rounds, so that the rounds of two engines (fp32 and a
quantized one) can alternate without paying process start-up each time.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from calo.bench.results import Round, StreamReport
from calo.errors import CaloError, one_line
from calo.hw import Topology

__all__ = ["RoundRequest", "StreamPool"]

log = logging.getLogger(__name__)

# How long a stream waits for its siblings at the start line before giving up.
BARRIER_TIMEOUT_S = 900.0
# Distinct input batches a stream cycles through, at primary energies drawn in this range.
INPUT_BATCHES = 4
ENERGY_RANGE_GEV = (100.0, 500.0)


@dataclass(frozen=True)
class RoundRequest:
    """One timed round: warm up, wait for every stream, then time batches until ``seconds``
    have passed and at least ``min_batches`` are done."""

    batch_size: int
    warmup_batches: int
    seconds: float
    min_batches: int


def _monotonic() -> float:
    """CLOCK_MONOTONIC: on Linux one clock for all processes, so windows of streams compare."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def _stream_main(folders: Mapping[int, str], topology: Topology, cpus: tuple[int, ...],
                 seed: int, barrier: Any, conn: Any) -> None:
    """The worker process: pin, load, then answer round requests until told to stop (None)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from calo.hw import apply_topology

        apply_topology(topology, cpus)  # before TensorFlow runs anything in this process

        import tensorflow as tf

        from calo.precision import load_engine

        loaded = {folder: load_engine(folder) for folder in set(folders.values())}
        engines = {batch: loaded[folder] for batch, folder in folders.items()}
        threads = tf.config.threading.get_intra_op_parallelism_threads()
        conn.send(("ready", os.getpid()))
        while (request := conn.recv()) is not None:
            report = _timed_round(engines[request.batch_size], request, threads, seed, barrier)
            conn.send(("round", report))
    except BaseException as error:  # reported to the parent as one line, never a traceback
        barrier.abort()
        conn.send(("error", f"stream worker {os.getpid()}: {one_line(error)}"))


def _timed_round(engine: Any, request: RoundRequest, threads: int, seed: int,
                 barrier: Any) -> StreamReport:
    import numpy as np

    from calo.config import LatentDistribution
    from calo.model.io import sample_latent

    rng = np.random.default_rng(seed)
    count = request.batch_size * INPUT_BATCHES
    latent = sample_latent(count, engine.io.latent_dim, LatentDistribution.normal, rng)
    energy = rng.uniform(*ENERGY_RANGE_GEV, count)
    network_input = engine.io.network_input(latent, energy)
    batches = [network_input[i * request.batch_size:(i + 1) * request.batch_size]
               for i in range(INPUT_BATCHES)]
    for index in range(request.warmup_batches):
        engine.predict(batches[index % INPUT_BATCHES])
    barrier.wait(BARRIER_TIMEOUT_S)
    start = _monotonic()
    deadline = start + request.seconds
    batch_seconds: list[float] = []
    while len(batch_seconds) < request.min_batches or _monotonic() < deadline:
        tick = time.perf_counter()
        engine.predict(batches[len(batch_seconds) % INPUT_BATCHES])
        batch_seconds.append(time.perf_counter() - tick)
    end = _monotonic()
    return StreamReport(pid=os.getpid(), cpus=tuple(sorted(os.sched_getaffinity(0))),
                        threads=threads, batch_size=request.batch_size,
                        batch_seconds=tuple(batch_seconds), start=start, end=end,
                        peak_rss_bytes=peak_rss_bytes())


def peak_rss_bytes() -> int:
    """This process's own resident-set high-water mark. Linux keeps ``ru_maxrss`` across
    ``execve``, so a spawned worker's would start at its parent's peak (a ``make bench`` that
    had built seven engines showed 1.7 GB for every later worker); ``VmHWM`` belongs to the
    process's own memory map. ``ru_maxrss`` where /proc is not there."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


class StreamPool:
    """``topology.streams`` worker processes running one engine (a saved folder per batch size).

    Use as a context manager: :meth:`start` spawns the workers (without waiting for them),
    :meth:`wait_ready` waits until each has loaded its engine, :meth:`measure` runs one round,
    and leaving the context stops them.
    """

    def __init__(self, name: str, folders: Mapping[int, Path], topology: Topology,
                 seed: int = 0) -> None:
        self.name = name
        self.folders = {batch: str(folder) for batch, folder in folders.items()}
        self.topology = topology
        self.seed = seed
        self._processes: list[Any] = []
        self._connections: list[Any] = []
        self._barrier: Any = None
        self._ready = False

    def start(self) -> StreamPool:
        context = multiprocessing.get_context("spawn")
        # Kept on self: the semaphores behind it vanish when the parent drops it.
        self._barrier = context.Barrier(self.topology.streams)
        for index, cpus in enumerate(self.topology.stream_cpus()):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=_stream_main, name=f"calo-bench-{self.name}-{index}", daemon=True,
                args=(self.folders, self.topology, tuple(cpus), self.seed + index, self._barrier,
                      child_end))
            process.start()
            child_end.close()
            self._processes.append(process)
            self._connections.append(parent_end)
        return self

    def wait_ready(self) -> None:
        if not self._ready:
            for index in range(len(self._processes)):
                self._receive(index, "ready")
            self._ready = True

    def measure(self, request: RoundRequest) -> Round:
        """One round: every stream warms up, they start together, each reports its window."""
        if request.batch_size not in self.folders:
            raise CaloError(f"{self.name}: no engine for batch size {request.batch_size} "
                            f"(has {sorted(self.folders)})")
        self.wait_ready()
        for connection in self._connections:
            connection.send(request)
        reports = [self._receive(index, "round") for index in range(len(self._processes))]
        return Round(tuple(reports))

    def _receive(self, index: int, expected: str) -> Any:
        connection, process = self._connections[index], self._processes[index]
        while not connection.poll(1.0):
            if not process.is_alive():
                raise CaloError(f"{self.name}: stream worker {process.pid} died "
                                f"(exit code {process.exitcode})")
        try:
            kind, payload = connection.recv()
        except EOFError as error:
            raise CaloError(f"{self.name}: stream worker {process.pid} died "
                            f"(exit code {process.exitcode})") from error
        if kind == "error":
            raise CaloError(f"{self.name}: {payload}")
        if kind != expected:
            raise CaloError(f"{self.name}: stream worker sent {kind!r}, expected {expected!r}")
        return payload

    def close(self) -> None:
        for connection, process in zip(self._connections, self._processes):
            if process.is_alive():
                with contextlib.suppress(OSError):  # a worker that just died
                    connection.send(None)
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        for connection in self._connections:
            connection.close()
        self._processes, self._connections = [], []

    def __enter__(self) -> StreamPool:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
