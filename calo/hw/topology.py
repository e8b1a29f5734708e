"""Threads and inference streams: detect the machine, scale a requested topology down to it,
and apply it to TensorFlow before TensorFlow runs anything."""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from calo.config import HardwareConfig

__all__ = ["Machine", "Topology", "apply_topology", "detect_machine", "resolve_topology"]

log = logging.getLogger(__name__)

# ISA extensions that decide which reduced-precision kernels oneDNN can use.
RELEVANT_ISA = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                "amx_tile", "amx_int8", "amx_bf16")
# Native bf16 arithmetic; without it oneDNN emulates bf16, slower than float32.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Machine:
    """The CPU this process runs on: model name, usable logical CPUs and relevant ISA flags."""

    cpu_model: str
    cpus: tuple[int, ...]
    isa: tuple[str, ...]

    @property
    def cores(self) -> int:
        return len(self.cpus)

    def has(self, flag: str) -> bool:
        return flag in self.isa

    @property
    def has_bf16(self) -> bool:
        return any(self.has(flag) for flag in BF16_FLAGS)

    def as_tags(self) -> dict[str, str]:
        return {
            "machine/cpu_model": self.cpu_model,
            "machine/cores": str(self.cores),
            "machine/isa": ",".join(self.isa) or "none",
            "machine/hostname": platform.node(),
        }


@cache
def detect_machine() -> Machine:
    """Read /proc/cpuinfo (Linux) and this process's CPU affinity."""
    cpus = tuple(sorted(os.sched_getaffinity(0)))
    cpu_model, flags = platform.processor() or "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                cpu_model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return Machine(cpu_model, cpus, tuple(f for f in RELEVANT_ISA if f in flags))


@dataclass(frozen=True)
class Topology:
    """Effective threads and streams on this machine, next to what was requested."""

    name: str
    requested_threads: int
    requested_streams: int
    threads: int
    streams: int
    cpus: tuple[int, ...]
    inter_op_threads: int = 1
    max_isa: str | None = None  # oneDNN's instruction-set cap (ONEDNN_MAX_CPU_ISA)

    @property
    def scaled_down(self) -> bool:
        return (self.threads, self.streams) != (self.requested_threads, self.requested_streams)

    @property
    def threads_per_stream(self) -> int:
        return self.threads // self.streams

    def stream_cpus(self) -> list[tuple[int, ...]]:
        """Disjoint CPU sets, one per stream, ``threads_per_stream`` CPUs each."""
        per = self.threads_per_stream
        return [self.cpus[i * per : (i + 1) * per] for i in range(self.streams)]

    def as_params(self) -> dict[str, int | str]:
        return {
            "hw/requested_threads": self.requested_threads,
            "hw/requested_streams": self.requested_streams,
            "hw/threads": self.threads,
            "hw/streams": self.streams,
            "hw/threads_per_stream": self.threads_per_stream,
            "hw/max_isa": self.max_isa or "none",
        }


def resolve_topology(cfg: HardwareConfig, machine: Machine | None = None) -> Topology:
    """Fit the requested topology to the machine; warn (requested vs effective) when it shrinks.

    Threads are capped at the CPUs this process may use; streams are kept as many as the
    threads allow (one thread each at least), and threads are split evenly between streams.
    """
    machine = machine or detect_machine()
    requested_threads = cfg.threads or machine.cores
    requested_streams = cfg.streams
    threads = min(requested_threads, machine.cores)
    streams = min(requested_streams, threads)
    threads -= threads % streams
    topology = Topology(
        name=cfg.name,
        requested_threads=requested_threads,
        requested_streams=requested_streams,
        threads=threads,
        streams=streams,
        cpus=machine.cpus[:threads],
        inter_op_threads=cfg.inter_op_threads,
        max_isa=cfg.max_isa,
    )
    if topology.scaled_down:
        log.warning(
            "hw=%s asks for %d threads x %d streams but this machine has %d CPUs: "
            "scaled down to %d threads x %d streams (%d threads per stream)",
            cfg.name, requested_threads, requested_streams, machine.cores,
            threads, streams, topology.threads_per_stream,
        )
    missing = [flag for flag in cfg.isa if not machine.has(flag)]
    if missing:
        log.warning("hw=%s expects %s, which this CPU (%s) lacks: reduced-precision speed-ups "
                    "will differ from that machine's", cfg.name, ", ".join(missing),
                    machine.cpu_model)
    return topology


def apply_topology(topology: Topology, cpus: tuple[int, ...] | None = None) -> None:
    """Pin this process to ``cpus`` (default: the topology's) and size TensorFlow's thread pools
    to match, before any op runs. A stream worker passes its own share of the CPUs."""
    import tensorflow as tf

    if topology.max_isa:
        # read by oneDNN when it first dispatches a kernel, and inherited by stream workers
        os.environ["ONEDNN_MAX_CPU_ISA"] = topology.max_isa
        log.info("hw=%s: oneDNN (TensorFlow, Neural Compressor) capped at %s; TFLite's XNNPACK "
                 "kernels cannot be capped", topology.name, topology.max_isa)
    cpus = cpus or topology.cpus
    os.sched_setaffinity(0, cpus)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(len(cpus))
        tf.config.threading.set_inter_op_parallelism_threads(topology.inter_op_threads)
    except RuntimeError:
        current = tf.config.threading.get_intra_op_parallelism_threads()
        if current != len(cpus):
            log.warning("TensorFlow already runs with %d intra-op threads; %d requested "
                        "(thread settings apply only in a fresh process)", current, len(cpus))
