"""Topologies are fitted to the machine, with a warning that states requested and effective."""

from __future__ import annotations

import logging

from calo.config import HardwareConfig
from calo.hw import Machine, detect_machine, resolve_topology

TWO_CORES = Machine("test CPU", (0, 1), ("avx512f", "avx512_vnni"))
SIXTEEN_CORES = Machine("big CPU", tuple(range(16)), ("avx512_vnni",))
CASCADELAKE = HardwareConfig(name="cascadelake", threads=56, streams=7, isa=["avx512_vnni"])


def test_paper_topology_is_scaled_down_with_a_warning(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        topology = resolve_topology(CASCADELAKE, TWO_CORES)
    assert (topology.requested_threads, topology.requested_streams) == (56, 7)
    assert (topology.threads, topology.streams) == (2, 2)
    assert topology.scaled_down
    assert "56 threads x 7 streams" in caplog.text and "2 threads x 2 streams" in caplog.text


def test_streams_get_disjoint_equal_cpu_sets() -> None:
    topology = resolve_topology(CASCADELAKE, SIXTEEN_CORES)
    assert (topology.threads, topology.streams) == (14, 7)
    sets = topology.stream_cpus()
    assert [len(s) for s in sets] == [2] * 7
    assert len(set().union(*map(set, sets))) == 14


def test_topology_that_fits_is_kept() -> None:
    topology = resolve_topology(HardwareConfig(name="small", threads=2, streams=1), TWO_CORES)
    assert not topology.scaled_down and topology.threads_per_stream == 2


def test_local_uses_every_cpu() -> None:
    topology = resolve_topology(HardwareConfig(name="local"), TWO_CORES)
    assert (topology.threads, topology.streams) == (2, 1)


def test_missing_isa_is_warned(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        resolve_topology(HardwareConfig(name="amx", isa=["amx_int8"]), TWO_CORES)
    assert "amx_int8" in caplog.text


def test_this_machine_is_detected() -> None:
    machine = detect_machine()
    assert machine.cores >= 1 and machine.cpu_model
    assert set(machine.as_tags()) >= {"machine/cpu_model", "machine/cores", "machine/isa"}
