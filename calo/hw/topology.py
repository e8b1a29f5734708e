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
from calo.errors import CaloError

__all__ = ["Machine", "Topology", "apply_topology", "detect_machine", "int8_sums_in_32_bits",
           "require_bf16", "resolve_topology"]

log = logging.getLogger(__name__)

# ISA extensions that decide which reduced-precision kernels oneDNN can use.
RELEVANT_ISA = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                "amx_tile", "amx_int8", "amx_bf16")
# int8 dot products that accumulate in 32 bits; without them (AVX2's vpmaddubsw) a pair of
# u8 x s8 products saturates at 16 bits.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
# Native bf16 arithmetic; without it oneDNN emulates bf16, slower than float32.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) below AVX512_CORE_BF16
ISA_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                    "AVX512_CORE_VNNI")
# ... and below the first with VNNI
ISA_WITHOUT_VNNI = ("SSE41", "AVX", "AVX2", "AVX512_CORE")


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
    def has_vnni(self) -> bool:
        return any(self.has(flag) for flag in VNNI_FLAGS)

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
                 "and ONNX Runtime's MLAS kernels cannot be capped", topology.name,
                 topology.max_isa)
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


def int8_sums_in_32_bits() -> bool:
    """Whether oneDNN's int8 kernels here (OpenVINO's too) accumulate u8 x s8 products in 32
    bits (VNNI, AMX) rather than summing pairs in 16 bits, which saturate (AVX2, AVX-512
    without VNNI): a CPU with VNNI, not capped below it (``ONEDNN_MAX_CPU_ISA``)."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    return detect_machine().has_vnni and cap not in ISA_WITHOUT_VNNI


def require_bf16(what: str, instead: str) -> None:
    """A one-line error where ``what`` (``precision=bf16_inc``, ``train.precision=bf16``, ...)
    would not run native bf16 kernels: a CPU without bf16 arithmetic (detected, never assumed),
    or oneDNN capped below it (hw=cascadelake, as on the paper's CPU). ``instead``: what to use."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if cap in ISA_WITHOUT_BF16:
        raise CaloError(f"{what}: oneDNN is capped at {cap} (ONEDNN_MAX_CPU_ISA, hw.max_isa), "
                        f"which has no bf16, as on the paper's Cascade Lake: use {instead}, or "
                        "another hw")
    machine = detect_machine()
    if not machine.has_bf16:
        raise CaloError(f"{what} needs a CPU with AVX512_BF16 or AMX-BF16; this CPU "
                        f"({machine.cpu_model}) has neither: use {instead}")
