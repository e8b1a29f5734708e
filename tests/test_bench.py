"""The benchmark's machinery on the tiny model: stream workers are real, separately pinned
processes; throughput and speed-up are the stated arithmetic; rounds alternate. No assertion
here depends on how fast anything ran."""

from __future__ import annotations

import logging
import multiprocessing
import os
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from hydra import compose, initialize_config_dir
from matplotlib.figure import Figure

from calo.bench import (
    BenchResult,
    Comparison,
    GridCell,
    GridResult,
    Measurement,
    Round,
    SavedEngines,
    StreamReport,
    benchmark,
    grid_topologies,
    save_engines,
)
from calo.bench.plot import plot_grid
from calo.bench.worker import RoundRequest, StreamPool
from calo.config import BenchConfig, HardwareConfig, to_settings
from calo.errors import CaloError
from calo.formatting import markdown_table
from calo.hw import Machine, Topology, resolve_topology
from calo.model.io import NetworkIO
from calo.model.weights import load_generator
from calo.paths import CONFIG_DIR
from calo.precision.engine import read_engine_file

QUICK = BenchConfig(batch_sizes=[1, 4], warmup_batches=1, seconds=0.0, min_batches=3, rounds=2)


def tiny_saved(folder: Path, *overrides: str) -> SavedEngines:
    """The tiny generator's engine, saved for batch sizes 1 and 4 as the benchmark does."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        settings = to_settings(compose("run", ["model=tiny", *overrides]))
    generator, _ = load_generator(settings.model)
    return save_engines(generator, NetworkIO.from_config(settings.model), settings.precision,
                        [1, 4], folder)


@pytest.fixture(scope="module")
def tiny_engines(tmp_path_factory: pytest.TempPathFactory) -> SavedEngines:
    return tiny_saved(tmp_path_factory.mktemp("engines"))


@pytest.fixture(scope="module")
def tflite_engines(tmp_path_factory: pytest.TempPathFactory) -> SavedEngines:
    """int8_tflite: a fixed batch size, so one engine per batch size."""
    return tiny_saved(tmp_path_factory.mktemp("tflite"), "precision=int8_tflite",
                      "precision.fixed_batch_size=4", "precision.calibration_size=16")


@pytest.fixture(scope="module")
def topology() -> Topology:
    """Two streams of one thread each where the machine has two CPUs (CI and here do)."""
    return resolve_topology(HardwareConfig(name="test", threads=2, streams=2))


@pytest.fixture(scope="module")
def paired(tiny_engines: SavedEngines, topology: Topology) -> BenchResult:
    """fp32 against a second copy of itself (a stand-in for a quantized engine), alternating."""
    candidate = replace(tiny_engines, precision="candidate")
    return benchmark(candidate, tiny_engines, topology, QUICK, seed=3)


def test_streams_are_separate_processes_pinned_to_their_own_cpus(
        paired: BenchResult, topology: Topology) -> None:
    expected_cpus = [tuple(cpus) for cpus in topology.stream_cpus()]
    pids_by_engine = []
    for comparison in paired.comparisons.values():
        for measurement in (comparison.candidate, comparison.baseline):
            pids = set()
            for round_ in measurement.rounds:
                assert [s.cpus for s in round_.streams] == expected_cpus
                assert all(s.threads == topology.threads_per_stream for s in round_.streams)
                assert len({s.pid for s in round_.streams}) == topology.streams
                pids |= {s.pid for s in round_.streams}
            assert os.getpid() not in pids
            assert len(pids) == topology.streams  # the same workers serve every round
            pids_by_engine.append(frozenset(pids))
    assert len(set(pids_by_engine)) == 2  # each engine has workers of its own
    assert multiprocessing.active_children() == []  # and they are gone afterwards


def test_every_stream_ran_the_requested_batches(paired: BenchResult, topology: Topology) -> None:
    for batch, comparison in paired.comparisons.items():
        for round_ in comparison.candidate.rounds:
            assert round_.showers == topology.streams * QUICK.min_batches * batch  # seconds=0
            assert all(s.batch_size == batch for s in round_.streams)
            assert all(s.peak_rss_bytes > 0 and s.end > s.start for s in round_.streams)


def test_rounds_alternate_and_each_pair_gives_a_ratio(paired: BenchResult) -> None:
    for comparison in paired.comparisons.values():
        baseline, candidate = comparison.baseline.rounds, comparison.candidate.rounds
        assert len(baseline) == len(candidate) == QUICK.rounds
        for index in range(QUICK.rounds):  # fp32, candidate, fp32, candidate, ...
            assert _end(baseline[index]) <= _start(candidate[index])
            if index + 1 < QUICK.rounds:
                assert _end(candidate[index]) <= _start(baseline[index + 1])
        ratios = [c.throughput / b.throughput for c, b in zip(candidate, baseline)]
        assert comparison.round_speedups == pytest.approx(ratios)
        assert min(ratios) <= comparison.speedup <= max(ratios)


def test_metrics_are_named_per_batch_size(paired: BenchResult) -> None:
    metrics = paired.metrics()
    for batch in QUICK.batch_sizes:
        for key in ("throughput", "latency_median_ms", "latency_p90_ms"):
            assert metrics[f"bench/{key}_b{batch}"] > 0
            assert metrics[f"bench/fp32_{key}_b{batch}"] > 0
        assert metrics[f"bench/speedup_b{batch}"] == paired.comparisons[batch].speedup
    assert metrics["bench/disk_ratio"] == 1.0
    assert metrics["bench/peak_rss_mb"] > 0 and metrics["bench/streams"] == paired.streams


def _start(round_: Round) -> float:
    return min(s.start for s in round_.streams)


def _end(round_: Round) -> float:
    return max(s.end for s in round_.streams)


def _stream(pid: int, batch: int, seconds: list[float], start: float, end: float) -> StreamReport:
    return StreamReport(pid, (pid,), 1, batch, tuple(seconds), start, end, 100 * 2**20)


def test_throughput_is_all_showers_of_all_streams_over_wall_time() -> None:
    round_ = Round((_stream(1, 4, [0.5, 0.5, 1.0], 10.0, 12.0),
                    _stream(2, 4, [0.5, 0.5, 0.5, 0.5], 10.5, 12.5)))
    assert round_.showers == 28
    assert round_.wall_seconds == pytest.approx(2.5)
    assert round_.throughput == pytest.approx(28 / 2.5)


def test_measurement_statistics() -> None:
    rounds = tuple(Round((_stream(1, 2, [0.01 * k for k in range(1, 11)], 0.0, wall),))
                   for wall in (1.0, 2.0, 4.0))
    measurement = Measurement("fp32", 2, rounds)
    assert measurement.throughput == pytest.approx(20 / 2.0)  # median of 20, 10, 5 showers/s
    assert measurement.latency_median_ms == pytest.approx(55.0)
    assert measurement.latency_p90_ms == pytest.approx(91.0)
    assert measurement.peak_rss_mb == pytest.approx(100.0)


def test_speedup_is_the_median_of_paired_ratios() -> None:
    def measurement(walls: list[float]) -> Measurement:
        return Measurement("x", 1, tuple(Round((_stream(1, 1, [0.1] * 10, 0.0, w),))
                                         for w in walls))

    comparison = Comparison(measurement([1.0, 1.0, 1.0]), measurement([2.0, 3.0, 8.0]))
    assert comparison.round_speedups == pytest.approx([2.0, 3.0, 8.0])
    assert comparison.speedup == pytest.approx(3.0)
    assert Comparison(measurement([1.0])).speedup is None


def test_grid_cells_are_scaled_to_the_machine_without_repeats(caplog) -> None:
    cfg = BenchConfig(grid_threads=[1, 2, 4, 56], grid_streams=[1, 2, 7])
    two = Machine("two", (0, 1), ())
    with caplog.at_level(logging.WARNING):
        cells = [(t.threads, t.streams) for t in grid_topologies(cfg, two)]
    assert cells == [(1, 1), (2, 1), (2, 2)]
    assert "56 threads x 7 streams" in caplog.text  # scaled down, and said so
    big = Machine("big", tuple(range(16)), ())
    cells = [(t.threads, t.streams) for t in grid_topologies(cfg, big)]
    assert cells == [(1, 1), (2, 1), (2, 2), (4, 1), (4, 2), (16, 1), (16, 2), (14, 7)]


def test_grid_table_and_figure() -> None:
    def measurement(precision: str, wall: float) -> Measurement:
        return Measurement(precision, 64, (Round((_stream(1, 64, [0.1] * 5, 0.0, wall),)),))

    grid = GridResult("int8_tflite", 64, [
        GridCell(1, 1, 1, 1, Comparison(measurement("int8_tflite", 1.0),
                                        measurement("fp32", 3.0))),
        GridCell(56, 7, 2, 2, Comparison(measurement("int8_tflite", 0.5),
                                         measurement("fp32", 1.0))),
    ])
    rows = grid.rows()
    assert [(r["threads"], r["streams"], r["requested"]) for r in rows] == [
        (1, 1, "1x1"), (2, 2, "56x7")]
    assert rows[0]["int8_tflite"] == pytest.approx(320.0)
    assert rows[0]["fp32"] == pytest.approx(320.0 / 3)
    assert rows[1]["speedup"] == pytest.approx(2.0)
    table = markdown_table(rows).splitlines()
    assert table[0].split("|")[1].strip() == "threads" and len(table) == 4
    figure = plot_grid(grid, "test CPU")
    assert isinstance(figure, Figure)
    assert len(figure.axes[0].patches) == 4  # two bars per cell
    plt.close(figure)


def test_a_worker_that_cannot_load_its_engine_is_a_one_line_error(tmp_path: Path) -> None:
    topology = resolve_topology(HardwareConfig(name="one", threads=1, streams=1))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "engine.json").write_text('{"backend": "fp32", "io": {}, "fixed_batch_size": null}')
    saved = SavedEngines("broken", {1: broken}, 0)
    with pytest.raises(CaloError) as error:
        benchmark(saved, None, topology, QUICK, batch_sizes=[1])
    message = str(error.value)
    assert "\n" not in message and "stream worker" in message and str(broken) in message
    assert multiprocessing.active_children() == []


def test_a_batch_size_without_an_engine_is_refused_before_any_worker_starts(
        tiny_engines: SavedEngines, topology: Topology) -> None:
    with pytest.raises(CaloError, match="no engine saved for batch size 64"):
        benchmark(tiny_engines, None, topology, QUICK, batch_sizes=[64])


def test_a_fixed_batch_engine_is_saved_once_per_batch_size(tflite_engines: SavedEngines) -> None:
    assert tflite_engines.folders[1] != tflite_engines.folders[4]
    for batch, folder in tflite_engines.folders.items():
        assert read_engine_file(folder)["fixed_batch_size"] == batch


def test_a_batch_size_a_fixed_batch_engine_was_not_built_for_is_a_one_line_error(
        tflite_engines: SavedEngines) -> None:
    built_for_4 = {1: tflite_engines.folders[4]}
    one = resolve_topology(HardwareConfig(name="one", threads=1, streams=1))
    with pytest.raises(CaloError, match="built for batch size 4, not 1"):  # before any worker
        benchmark(SavedEngines("int8_tflite", built_for_4, 0), None, one, QUICK, batch_sizes=[1])
    with StreamPool("int8_tflite", built_for_4, one) as pool, \
            pytest.raises(CaloError, match="built for batch size 4") as error:
        pool.measure(RoundRequest(1, warmup_batches=0, seconds=0.0, min_batches=1))
    assert "\n" not in str(error.value) and "stream worker" in str(error.value)


def _child_peak(queue) -> None:
    from calo.bench.worker import peak_rss_bytes

    queue.put(peak_rss_bytes())


def test_a_spawned_worker_reports_its_own_peak_memory_not_its_parents() -> None:
    """ru_maxrss survives execve on Linux: a worker spawned after the parent touched 2 GiB
    would report at least the parent's peak as its own. The worker's own interpreter (with
    whatever this module imports) is measured against the parent's peak less the ballast,
    not against a fixed size, which differs between machines."""
    import numpy as np

    from calo.bench.worker import peak_rss_bytes

    ballast = np.ones(2**31 // 8)  # 2 GiB, touched
    parent_peak = peak_rss_bytes()
    assert parent_peak > 2**31
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_child_peak, args=(queue,))
    child.start()
    peak = queue.get(timeout=120)
    child.join()
    assert peak < parent_peak - 2**30  # at least 1 of the parent's 2 ballast GiB is not counted
    del ballast
