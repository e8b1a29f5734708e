"""Neural Compressor's own ``autotune``, given the same candidate fallback sets as the Optuna
study, for comparison.

``autotune`` (INC 3.x) walks the ``config_set`` it is given in order and stops at the first
config whose evaluation is within ``tolerable_loss`` of the fp32 baseline, relative and
higher-is-better: ``result >= baseline * (1 - tolerable_loss)``. Its evaluation here is
``1 / SVN`` of the quantized graph's showers (the search's inputs and reference), and
``tolerable_loss = 1 - 1 / (1 + physics_tolerance)``, so that it accepts exactly the sets
with ``SVN <= (1 + physics_tolerance) * SVN_fp32``, the condition the search's chosen point
meets. It looks at accuracy only: speed plays no part in its choice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from calo.model.io import NetworkIO
from calo.precision.engine import Engine
from calo.precision.fp32 import FP32Engine
from calo.precision.inc import (
    CALIBRATION_BATCH,
    INT8Engine,
    neural_compressor_session,
    quantization_config,
)

__all__ = ["AutotuneResult", "run_autotune"]

log = logging.getLogger(__name__)


@dataclass
class AutotuneResult:
    """The sets autotune evaluated, in order, with their SVN; and the set it returned."""

    baseline_svn: float | None = None
    walked: list[tuple[tuple[str, ...], float]] = field(default_factory=list)
    pick: int | None = None  # index of the returned set in ``walked`` (and the candidates)

    def as_dict(self) -> dict[str, object]:
        return {"baseline_svn": self.baseline_svn, "pick": self.pick,
                "walked": [{"kept": list(kept), "svn": svn} for kept, svn in self.walked]}


def _engine(model, io: NetworkIO, quantized: bool) -> Engine:
    (inputs,), (output,) = model.input_tensor_names, model.output_tensor_names
    engine_class = INT8Engine if quantized else FP32Engine
    return engine_class(model.graph_def, io, f"{inputs}:0", f"{output}:0")


def _kept(model, quantizable: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """Quantizable nodes still there with their own op type: left in fp32 (asked for, or
    left so by Neural Compressor, as the concatenation of the generator's paths)."""
    ops = {node.name: node.op for node in model.graph_def.node}
    return tuple(name for name, op in quantizable if ops.get(name) == op)


def run_autotune(graph_def, quantizable: Sequence[tuple[str, str]], io: NetworkIO,
                 candidates: Sequence[Sequence[str]], calibration: NDArray[np.float32],
                 svn_of: Callable[[Engine], float], physics_tolerance: float) -> AutotuneResult:
    """Autotune over ``candidates`` (node names kept in fp32, in the order to try them), at most
    one trial per candidate."""
    from neural_compressor.common.base_tuning import TuningConfig
    from neural_compressor.tensorflow import autotune

    from calo.precision.calibration import CalibrationLoader

    result = AutotuneResult()

    def evaluate(model) -> float:
        quantized = result.baseline_svn is not None
        svn = svn_of(_engine(model, io, quantized))
        if quantized:
            result.walked.append((_kept(model, quantizable), svn))
            log.info("autotune: candidate %d of %d, SVN %.4g", len(result.walked),
                     len(candidates), svn)
        else:
            result.baseline_svn = svn
        return 1.0 / svn

    config = TuningConfig(config_set=[quantization_config("int8", list(kept))
                                      for kept in candidates],
                          tolerable_loss=1.0 - 1.0 / (1.0 + physics_tolerance),
                          max_trials=len(candidates))
    log.info("Neural Compressor autotune over %d candidate fallback sets", len(candidates))
    with neural_compressor_session():
        model = autotune(graph_def, config, eval_fn=evaluate,
                         calib_dataloader=CalibrationLoader(calibration, CALIBRATION_BATCH))
    if model is not None:
        kept = [walked for walked, _ in result.walked]
        result.pick = kept.index(_kept(model, quantizable))
    return result
