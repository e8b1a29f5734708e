"""Hardware topology: what this machine has, what a config asks for, and applying it."""

from calo.hw.topology import (
    Machine,
    Topology,
    apply_topology,
    detect_machine,
    int8_sums_in_32_bits,
    require_bf16,
    resolve_topology,
)

__all__ = ["Machine", "Topology", "apply_topology", "detect_machine", "int8_sums_in_32_bits",
           "require_bf16", "resolve_topology"]
