"""The generator's physics targets (issue 11): where a generated sample stands against the
reference on each measure, the bound it must meet, and whether it does.

Computed from a :class:`~calo.physics.validate.ValidationResult`, so ``python -m calo.run``
(fp32, 10,000 showers: ``make run``) reports them for the shipped generator, and any run does for
its engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calo.formatting import markdown_table, number
from calo.physics.summary import SampleSummary
from calo.physics.validate import ValidationResult

__all__ = ["TargetCheck", "generator_targets", "targets_table"]

LIT_LAYER_SHARE = 0.005  # z layers holding at least this share of the reference's energy ...
LAYER_RATIO = (0.5, 2.0)  # ... receive between these multiples of it


@dataclass(frozen=True)
class TargetCheck:
    """One target: ``key`` names its MLflow metric (``targets/<key>``, the generated value)."""

    key: str
    measure: str
    reference: float
    generated: float
    target: str
    met: bool


def _relative(key: str, name: str, reference: float, generated: float,
              bound: float) -> TargetCheck:
    return TargetCheck(key, name, reference, generated, f"within {bound:.0%}",
                       bool(abs(generated / reference - 1) <= bound))


def _absolute(key: str, name: str, reference: float, generated: float,
              bound: float) -> TargetCheck:
    return TargetCheck(key, name, reference, generated, f"within {bound:g}",
                       bool(abs(generated - reference) <= bound))


def _resolution(summary: SampleSummary) -> np.ndarray:
    """Spread of ECAL/Ep over its mean, per energy bin (NaN for a bin without two showers)."""
    fraction = summary.sampling_fraction
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(fraction.count > 1,
                        fraction.error * np.sqrt(fraction.count) / fraction.mean, np.nan)


def _worst_resolution(reference: SampleSummary, generated: SampleSummary) -> TargetCheck:
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = _resolution(generated) / _resolution(reference)
    name = "energy resolution, worst bin (generated / reference)"
    if not np.isfinite(ratios).any():  # no bin holds two showers of both samples
        return TargetCheck("resolution_worst", name, 1.0, float("nan"), "within 50%", False)
    worst = float(ratios[int(np.nanargmax(np.abs(ratios - 1)))])
    return TargetCheck("resolution_worst", name, 1.0, worst, "within 50%",
                       bool(abs(worst - 1) <= 0.5))


def _worst_layer(reference: SampleSummary, generated: SampleSummary) -> TargetCheck:
    """The z layer (of those the reference fills) whose energy is furthest from the
    reference's, as a ratio: the "comb" of empty layers shows as 0."""
    reference_z = np.asarray(reference.profiles["z"][0])
    generated_z = np.asarray(generated.profiles["z"][0])
    lit = reference_z >= LIT_LAYER_SHARE * reference_z.sum()
    ratios = generated_z[lit] / reference_z[lit]
    worst = ratios[int(np.argmax(np.abs(np.log(np.maximum(ratios, 1e-12)))))]
    low, high = LAYER_RATIO
    return TargetCheck("z_layer_worst",
                       f"z layer energy, worst of {int(lit.sum())} (generated / reference)", 1.0,
                       float(worst), f"{low:g}x to {high:g}x", bool(low <= worst <= high))


def generator_targets(result: ValidationResult, sample: str = "engine") -> list[TargetCheck]:
    """Every target of issue 11 for ``sample`` against the reference."""
    reference, generated = result.samples["reference"], result.samples[sample]
    comparison = result.comparisons[sample]
    ref, gen = reference.shapes, generated.shapes
    return [
        _absolute("y_mean", "y mean (cells)", ref["y"].mean, gen["y"].mean, 0.15),
        _relative("y_std", "y std (cells)", ref["y"].std, gen["y"].std, 0.10),
        _absolute("z_mean", "z mean (layers)", ref["z"].mean, gen["z"].mean, 0.3),
        _relative("z_std", "z std (layers)", ref["z"].std, gen["z"].std, 0.10),
        _relative("hits", "hit cells per shower", reference.hits_mean, generated.hits_mean, 0.30),
        _worst_resolution(reference, generated),
        _worst_layer(reference, generated),
        TargetCheck("svn", "SVN", 0.0, comparison.svn.value, "at most 0.1",
                    bool(comparison.svn.value <= 0.1)),
        TargetCheck("separation_mean", "mean separation power", 0.0,
                    comparison.separation.mean, "at most 0.25",
                    bool(comparison.separation.mean <= 0.25)),
        TargetCheck("ecal_ep_corr", "corr(ECAL, Ep)", reference.ecal_ep_correlation,
                    generated.ecal_ep_correlation, "at least 0.95",
                    bool(generated.ecal_ep_correlation >= 0.95)),
    ]


def targets_table(checks: list[TargetCheck]) -> str:
    """The checks as a Markdown table."""
    rows = [{"measure": check.measure, "reference": number(check.reference),
             "generated": number(check.generated), "target": check.target,
             "met": "yes" if check.met else "**no**"} for check in checks]
    met = sum(check.met for check in checks)
    return markdown_table(rows) + f"\n\n{met} of {len(checks)} targets met.\n"
