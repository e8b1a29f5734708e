"""The epoch's validation: generated vs held-out reference showers through calo.physics, reduced
to one score (lower is better) that picks the best epoch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from calo.config import LatentDistribution, PhysicsConfig
from calo.data.showers import Showers
from calo.model.io import NetworkIO, sample_latent
from calo.physics import ValidationResult, measure_reference, validate
from calo.physics.targets import generator_targets

__all__ = ["Validator"]


def _is_scored(key: str) -> bool:
    """Table-3 moments (x/y/z mean and std) and the sampling fraction of each energy bin."""
    moment = key[0] in "xyz" and key[1:] in ("_mean", "_std")
    return moment or (key.startswith("sf_") and key[3].isdigit())


class Validator:
    """Fixed latents and the validation sample's energies, so epochs compare like with like.

    The score is the mean relative deviation of the generated sample's profile means and
    standard deviations along x, y, z and of its sampling fraction per energy bin from the
    reference's. The SVN, the 3DGAN analysis metric, the mean separation power, the worst energy
    bin's resolution ratio and the number of issue 11's targets met are logged beside it. The
    reference's
    side of the validation (its features, summary and floor) is measured once, here.
    """

    def __init__(self, reference: Showers, io: NetworkIO, distribution: LatentDistribution,
                 physics: PhysicsConfig, seed: int, batch_size: int = 128) -> None:
        self.reference = reference
        self.io = io
        self.physics = physics
        self.batch_size = batch_size
        self.measured = measure_reference(reference, physics)
        latent = sample_latent(len(reference), io.latent_dim, distribution,
                               np.random.default_rng([seed, 2**31 - 1]))
        self.network_input = io.network_input(latent, reference.energy)

    def __call__(self, generate: Callable[[np.ndarray], np.ndarray]
                 ) -> tuple[float, dict[str, float], ValidationResult]:
        raw = [generate(self.network_input[start : start + self.batch_size])
               for start in range(0, len(self.network_input), self.batch_size)]
        generated = Showers(self.io.showers(np.concatenate(raw)), self.reference.energy)
        result = validate(self.measured, generated, settings=self.physics)
        reference = result.samples["reference"].metrics()
        engine = result.samples["engine"].metrics()
        deviations = [abs(engine[key] / reference[key] - 1.0) for key in engine
                      if _is_scored(key)]
        score = float(np.mean(deviations))
        comparison = result.comparisons["engine"]
        targets = generator_targets(result)
        metrics = {**{f"val/{key}": value for key, value in engine.items()},
                   "val/svn": comparison.svn.value,
                   "val/analysis_metric": comparison.analysis.value,
                   "val/separation_mean": comparison.separation.mean,
                   "val/resolution_worst": next(check.generated for check in targets
                                                if check.key == "resolution_worst"),
                   "val/targets_met": float(sum(check.met for check in targets))}
        return (score if np.isfinite(score) else float("inf")), metrics, result
