"""The physics validation in one call, for a run or a notebook:

    from calo.physics import validate
    result = validate((ecal_ref, ep_ref), (ecal_gen, ep_gen), fp32=(ecal_fp32, ep_gen))
    result.metrics()          # {"physics/engine/svn": ..., ...}, names in the README table

Samples are :class:`calo.data.Showers` or ``(ecal, energy)`` pairs: ECAL ``(N, 25, 25, 25)``
in GeV with axes (x, y, z), Ep ``(N,)`` in GeV. ``generated`` is the precision under test
(named ``engine`` in the metrics); ``fp32``, when given, is the fp32 generator on the same
latents and energies (pass the very same object as ``generated`` when the engine is fp32:
it is then measured once).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calo.config import PhysicsConfig
from calo.data.showers import Showers, check_showers
from calo.errors import CaloError
from calo.physics.analysis import AnalysisMetric, analysis_metric
from calo.physics.binning import bin_counts
from calo.physics.features import ShowerFeatures, extract_features
from calo.physics.pixelwise import Pixelwise, check_paired, pixelwise
from calo.physics.separation import Separation, separation_powers
from calo.physics.summary import SampleSummary, summarize_sample
from calo.physics.svn import SvnResult, single_validation_number

__all__ = ["SampleComparison", "MeasuredReference", "SampleLike", "ValidationResult", "compare",
           "measure_reference", "validate"]

log = logging.getLogger(__name__)

SampleLike = Showers | tuple[ArrayLike, ArrayLike]

# Fewer events than this in an energy bin (per half of the reference for the floor) make the
# binned metrics noisy enough to warn about.
MIN_EVENTS_PER_BIN = 50


@dataclass(frozen=True)
class SampleComparison:
    """How far one sample is from another: SVN, 3DGAN analysis metric, separation powers."""

    svn: SvnResult
    analysis: AnalysisMetric
    separation: Separation

    def metrics(self) -> dict[str, float]:
        metrics = {"svn": self.svn.value}
        metrics.update({f"svn_{plane}": value for plane, value in self.svn.planes.items()})
        metrics["moment_rel_error"] = self.analysis.moment_rel_error
        metrics["profile_rel_error"] = self.analysis.profile_rel_error
        metrics["analysis_metric"] = self.analysis.value
        metrics.update({f"sep_{name}": value for name, value in self.separation.values.items()})
        metrics["sep_mean"] = self.separation.mean
        return metrics


@dataclass(frozen=True)
class ValidationResult:
    """Everything the validation measured.

    ``samples``: per-sample summaries, keys ``reference``, ``engine`` and (when known)
    ``fp32``. ``comparisons``: ``engine`` and ``fp32`` against the reference, ``floor`` (one
    half of the reference against the other) and ``engine_vs_fp32``. ``pixelwise``: engine
    against fp32 event by event. Comparisons of the engine with fp32 are absent when the
    engine is fp32 or fp32 was not given.
    """

    energy_edges: NDArray[np.float64]
    samples: dict[str, SampleSummary]
    comparisons: dict[str, SampleComparison]
    pixelwise: Pixelwise | None

    @property
    def engine_is_fp32(self) -> bool:
        """True when the engine is the fp32 generator: one sample under both names."""
        return self.samples.get("fp32") is self.samples["engine"]

    def metrics(self, prefix: str = "physics") -> dict[str, float]:
        """Flat ``{prefix}/<namespace>/<measure>`` metrics; the scheme is in the README."""
        metrics: dict[str, float] = {}
        for name, summary in self.samples.items():
            metrics.update({f"{prefix}/{name}/{k}": v for k, v in summary.metrics().items()})
        for name, comparison in self.comparisons.items():
            metrics.update({f"{prefix}/{name}/{k}": v for k, v in comparison.metrics().items()})
        if self.pixelwise is not None:
            metrics.update({f"{prefix}/engine_vs_fp32/{k}": v
                            for k, v in self.pixelwise.metrics().items()})
        metrics[f"{prefix}/svn"] = self.comparisons["engine"].svn.value
        metrics[f"{prefix}/svn_floor"] = self.comparisons["floor"].svn.value
        return metrics


def compare(
    reference: ShowerFeatures, generated: ShowerFeatures, settings: PhysicsConfig
) -> SampleComparison:
    """All distances of ``generated`` from ``reference``."""
    edges = np.asarray(settings.energy_bins, dtype=np.float64)
    return SampleComparison(
        svn=single_validation_number(reference, generated, edges),
        analysis=analysis_metric(reference, generated, edges),
        separation=separation_powers(reference, generated, settings.histogram_bins),
    )


@dataclass(frozen=True)
class MeasuredReference:
    """The reference's side of :func:`validate`, measured once: pass it as ``reference`` to
    measure several samples (a training's epochs) against one fixed reference.

    ``floor``: one half of the reference against the other. ``settings``: those it was
    measured with, which :func:`validate` then uses.
    """

    settings: PhysicsConfig
    features: ShowerFeatures
    summary: SampleSummary
    floor: SampleComparison


def measure_reference(
    reference: SampleLike, settings: PhysicsConfig | None = None, progress: bool = False
) -> MeasuredReference:
    """The reference's features, summary and statistical floor, for :func:`validate`."""
    return _measure_reference(_reference_showers(reference), settings or PhysicsConfig(),
                              progress)


def validate(
    reference: SampleLike | MeasuredReference,
    generated: SampleLike,
    fp32: SampleLike | None = None,
    settings: PhysicsConfig | None = None,
    progress: bool = False,
) -> ValidationResult:
    """Measure ``generated`` (and ``fp32``) against ``reference``; see the module docstring.

    ``reference`` may be a :class:`MeasuredReference` (from :func:`measure_reference`), which
    is then not measured again.
    """
    measured = reference if isinstance(reference, MeasuredReference) else None
    if measured is not None:
        if settings is not None and settings != measured.settings:
            raise ValueError("validate: the reference was measured with other physics settings")
        settings = measured.settings
    settings = settings or PhysicsConfig()
    edges = np.asarray(settings.energy_bins, dtype=np.float64)
    showers = {} if measured is not None else {"reference": _reference_showers(reference)}
    if fp32 is not None:
        showers["fp32"] = as_showers(fp32, "fp32")
    # Decided on the inputs: converting float64 cells gives each sample its own copy.
    engine_is_fp32 = fp32 is not None and _ecal_of(fp32) is _ecal_of(generated)
    showers["engine"] = (showers["fp32"] if fp32 is generated
                         else as_showers(generated, "generated"))
    distinct = [name for name in showers
                if name != "reference" and not (name == "engine" and engine_is_fp32)]
    if "fp32" in showers and not engine_is_fp32:
        check_paired(showers["fp32"], showers["engine"])

    if measured is None:
        measured = _measure_reference(showers["reference"], settings, progress)
    features: dict[str, ShowerFeatures] = {}
    for name in distinct:
        log.info("physics: reading %d %s showers", len(showers[name]), name)
        features[name] = extract_features(showers[name], settings.hit_threshold, progress)
    _warn_if_small(features, edges)

    log.info("physics: summaries and comparisons")
    summaries = {"reference": measured.summary}
    summaries.update({name: summarize_sample(features[name], edges) for name in distinct})
    comparisons = {name: compare(measured.features, features[name], settings)
                   for name in distinct}
    comparisons["floor"] = measured.floor
    pixel = None
    if engine_is_fp32:  # one sample, reported under both names
        summaries["engine"] = summaries["fp32"]
        comparisons["engine"] = comparisons["fp32"]
    elif "fp32" in showers:
        comparisons["engine_vs_fp32"] = compare(features["fp32"], features["engine"], settings)
        pixel = pixelwise(showers["fp32"], showers["engine"])
    return ValidationResult(edges, summaries, comparisons, pixel)


def _reference_showers(reference: SampleLike) -> Showers:
    showers = as_showers(reference, "reference")
    if len(showers) < 2:
        raise CaloError("reference sample: the statistical floor needs at least 2 showers")
    return showers


def _measure_reference(showers: Showers, settings: PhysicsConfig,
                       progress: bool) -> MeasuredReference:
    """Called straight from validate or measure_reference (the warning names their caller)."""
    edges = np.asarray(settings.energy_bins, dtype=np.float64)
    log.info("physics: reading %d reference showers", len(showers))
    features = extract_features(showers, settings.hit_threshold, progress)
    _warn_if_small({"reference": features}, edges, stacklevel=4)
    floor = compare(*_halves(features, settings.floor_seed), settings)
    return MeasuredReference(settings, features, summarize_sample(features, edges), floor)


def as_showers(sample: SampleLike, name: str) -> Showers:
    """A checked sample, or a one-line CaloError naming it and the problem."""
    if isinstance(sample, Showers):
        return check_showers(sample.ecal, sample.energy, f"{name} sample")
    if isinstance(sample, tuple | list) and len(sample) == 2:
        return check_showers(sample[0], sample[1], f"{name} sample")
    what = (f"an array of shape {sample.shape}" if isinstance(sample, np.ndarray)
            else type(sample).__name__)
    raise CaloError(f"{name} sample: expected Showers or an (ecal, energy) pair, got {what}")


def _ecal_of(sample: SampleLike) -> object:
    """The cells a sample was given with (the sample itself when it is not one)."""
    if isinstance(sample, Showers):
        return sample.ecal
    if isinstance(sample, tuple | list) and len(sample) == 2:
        return sample[0]
    return sample


def _halves(features: ShowerFeatures, seed: int) -> tuple[ShowerFeatures, ShowerFeatures]:
    """Two independent halves of a sample, split at random (files may be sorted by energy)."""
    order = np.random.default_rng(seed).permutation(len(features))
    middle = len(features) // 2
    return features.subset(order[:middle]), features.subset(order[middle:])


def _warn_if_small(features: dict[str, ShowerFeatures], edges: NDArray[np.float64],
                   stacklevel: int = 3) -> None:
    for name, sample in features.items():
        counts = bin_counts(sample.energy, edges)
        needed = 2 * MIN_EVENTS_PER_BIN if name == "reference" else MIN_EVENTS_PER_BIN
        if counts[counts > 0].min(initial=needed) < needed:
            warnings.warn(
                f"{name} sample: an energy bin holds only {counts[counts > 0].min()} showers "
                f"(< {needed}): binned physics metrics will be noisy", RuntimeWarning,
                stacklevel=stacklevel)
