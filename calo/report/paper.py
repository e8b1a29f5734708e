"""The paper's published numbers, for the report's side-by-side columns.

Tables 3, 4 and 5 are kept with the physics table (:data:`calo.physics.table.PAPER`); Table 1
(inference time and speed-up) is here. The paper measured speed for fp32 and its int8 model
(Intel's low precision tool, the ancestor of Neural Compressor) only: TFLite "only for
measuring the accuracy ... and not inference speed-up".
"""

from __future__ import annotations

from calo.physics.table import PAPER

__all__ = ["PAPER", "PAPER_MACHINE", "PAPER_SPEED", "PAPER_TOPOLOGY"]

PAPER_MACHINE = "Intel Xeon Platinum 8280 (Cascade Lake), 2 sockets x 28 cores"
PAPER_TOPOLOGY = (56, 7)  # threads, streams of the paper's Table 1 (its best Figure 4 cell)

# Table 1: inference time in ms (batch size not stated) and the int8 speed-up over fp32.
PAPER_SPEED: dict[str, dict[str, float]] = {
    "fp32": {"time_ms": 55.7, "speedup": 1.0},
    "int8_inc": {"time_ms": 32.3, "speedup": 1.73},
}
