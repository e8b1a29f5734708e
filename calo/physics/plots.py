"""Figures of a validation result, in mplhep's HEP style. Plotting only: every number drawn
here was computed by the metric modules; nothing here knows about MLflow.

Functions that draw one panel take an optional ``ax`` and return its figure; functions that
lay out several panels build their own figure. Figures are plain ``matplotlib.figure.Figure``
objects (no pyplot state), so a long run does not accumulate open figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any

import matplotlib as mpl
import mplhep
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from numpy.typing import NDArray

from calo.physics.binning import Binned
from calo.physics.features import AXES
from calo.physics.pixelwise import Pixelwise
from calo.physics.separation import Separation
from calo.physics.shapes import Profile, sampling_fraction_fit
from calo.physics.summary import SampleSummary
from calo.physics.validate import ValidationResult

__all__ = [
    "binned_figure",
    "features_figure",
    "pixelwise_figure",
    "plot_profiles",
    "profile_figure",
    "sampling_fraction_figure",
    "validation_figures",
]

_COLOURS = {"reference": "black", "fp32": "tab:blue", "engine": "tab:red"}
_FEATURE_LABELS = {
    "etot_ratio": "ECAL / Ep",
    **{f"{axis}_centre": f"centre of energy {axis} [cell]" for axis in AXES},
    **{f"{axis}_width": f"width {axis} [cell]" for axis in AXES},
    "hits": "cells above threshold",
    "cell_energy": "cell energy [GeV]",
}


# Smaller type for multi-panel figures; DejaVu maths (the style's TeX Gyre maths font is
# often absent, and every fallback logs a warning); no minor ticks (a third of the drawing
# time of a many-panel figure).
_OVERRIDES = {"font.size": 11, "mathtext.fontset": "dejavusans",
              "xtick.minor.visible": False, "ytick.minor.visible": False}


@contextmanager
def _hep_style():
    with mpl.rc_context(mplhep.style.ROOT), mpl.rc_context(_OVERRIDES):
        yield


def _figure(rows: int, cols: int, size: tuple[float, float], **grid: Any) -> tuple[Figure, Any]:
    figure = Figure(figsize=size, layout="constrained")
    return figure, figure.subplots(rows, cols, squeeze=False, **grid)


def _axis_or_new(ax: Axes | None, size: tuple[float, float] = (6.0, 4.5)) -> Axes:
    return ax if ax is not None else _figure(1, 1, size)[1][0, 0]


def plot_profiles(
    profiles: Mapping[str, Profile], axis: str, ax: Axes | None = None,
    ratio_ax: Axes | None = None, log: bool = False,
    colours: Mapping[str, str] | None = None,
) -> Figure:
    """Average profiles (GeV per cell) with error bars; the first entry is the reference, and
    ``ratio_ax`` gets each other sample divided by it (the grey band: the reference's error)."""
    with _hep_style():
        ax = _axis_or_new(ax)
        edges = np.arange(len(next(iter(profiles.values()))[0]) + 1) - 0.5
        colours = colours or {}
        (reference_label, (reference, reference_error)), *others = profiles.items()
        mplhep.histplot(reference, edges, yerr=reference_error, histtype="errorbar", ax=ax,
                        color=colours.get(reference_label, "black"), label=reference_label)
        for label, (mean, error) in others:
            mplhep.histplot(mean, edges, yerr=error, histtype="step", ax=ax,
                            color=colours.get(label), label=label)
        ax.set_yscale("log" if log else "linear")
        ax.set_ylabel("mean energy per cell [GeV]")
        ax.legend(fontsize="small")
        if ratio_ax is None:
            ax.set_xlabel(f"{axis} [cell index]")
            return ax.figure
        _draw_ratios(ratio_ax, edges, reference, reference_error, others, colours)
        ratio_ax.set_xlabel(f"{axis} [cell index]")
        ax.set_xlabel("")
        return ax.figure


def _draw_ratios(ax: Axes, edges: NDArray[np.float64], reference: NDArray[np.float64],
                 reference_error: NDArray[np.float64], others: list[tuple[str, Profile]],
                 colours: Mapping[str, str]) -> None:
    centres = (edges[1:] + edges[:-1]) / 2
    ratios = []
    with np.errstate(invalid="ignore", divide="ignore"):
        band = reference_error / reference
        ax.fill_between(centres, 1 - band, 1 + band, color="grey", alpha=0.3, step="mid")
        for label, (mean, error) in others:
            ratio = mean / reference
            ratio_error = np.abs(ratio) * np.hypot(error / mean, band)
            ax.errorbar(centres, ratio, yerr=ratio_error, fmt="o", markersize=3,
                        color=colours.get(label), label=label)
            ratios.append(ratio)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel("/ reference")
    ax.set_ylim(*_ratio_limits(ratios))


def _ratio_limits(ratios: list[NDArray[np.float64]]) -> tuple[float, float]:
    """0.5 to 1.5, widened to show ratios up to 0 and 3 (a far-off sample stays visible)."""
    finite = np.concatenate([r[np.isfinite(r)] for r in ratios] or [np.ones(1)])
    return min(0.5, max(finite.min(initial=1.0), 0.0)), max(1.5, min(finite.max(initial=1.0), 3.0))


def profile_figure(result: ValidationResult, axis: str, labels: Mapping[str, str] | None = None
                   ) -> Figure:
    """One figure for one axis: the samples' average profiles in linear and log scale, each
    over a ratio panel (the paper's Figures 5 and 6)."""
    with _hep_style():
        figure, axes = _figure(2, 2, (12.0, 6.5), sharex="col",
                               gridspec_kw={"height_ratios": [3, 1]})
        profiles = {name: summary.profiles[axis] for name, summary in _samples(result, labels)}
        colours = _colours(result, labels)
        for column, log in enumerate((False, True)):
            plot_profiles(profiles, axis, ax=axes[0, column], ratio_ax=axes[1, column], log=log,
                          colours=colours)
        figure.suptitle(f"shower shape along {axis}")
        return figure


def sampling_fraction_figure(result: ValidationResult, ax: Axes | None = None,
                             labels: Mapping[str, str] | None = None) -> Figure:
    """ECAL / Ep per energy bin for every sample, with the public 3DGAN fit."""
    with _hep_style():
        ax = _axis_or_new(ax)
        edges = result.energy_edges
        _draw_binned(ax, {label: s.sampling_fraction for label, s in _samples(result, labels)},
                     edges, _colours(result, labels))
        energy = np.linspace(edges[0], edges[-1], 200)
        ax.plot(energy, sampling_fraction_fit(energy), color="grey", linestyle="--",
                label="3DGAN fit")
        ax.set_xlabel("Ep [GeV]")
        ax.set_ylabel("ECAL / Ep")
        ax.legend(fontsize="small")
        return ax.figure


def binned_figure(result: ValidationResult, labels: Mapping[str, str] | None = None
                  ) -> Figure:
    """Per energy bin: first and second moments along each axis, and the hit multiplicity."""
    with _hep_style():
        figure, axes = _figure(3, 3, (13.0, 10.0))
        samples = _samples(result, labels)
        colours = _colours(result, labels)
        edges = result.energy_edges
        for column, axis in enumerate(AXES):
            for row, (name, unit) in enumerate((("m1", "cell"), ("m2", "cell$^2$"))):
                _draw_binned(axes[row, column],
                             {label: getattr(s, name)[axis] for label, s in samples},
                             edges, colours)
                axes[row, column].set_ylabel(f"{axis} {name} [{unit}]")
        _draw_binned(axes[2, 0], {label: s.hits for label, s in samples}, edges, colours)
        axes[2, 0].set_ylabel("cells above threshold")
        for ax in axes[2, 1:]:
            ax.set_axis_off()
        for ax in axes.flat:
            ax.set_xlabel("Ep [GeV]")
        axes[0, 0].legend(fontsize="small")
        return figure


def _draw_binned(ax: Axes, values: Mapping[str, Binned], edges: NDArray[np.float64],
                 colours: Mapping[str, str]) -> None:
    centres = (edges[1:] + edges[:-1]) / 2
    width = np.diff(edges)
    for offset, (label, binned) in enumerate(values.items()):
        shift = (offset - (len(values) - 1) / 2) * 0.05 * width  # keep error bars apart
        ax.errorbar(centres + shift, binned.mean, yerr=binned.error, xerr=width / 2,
                    fmt="o", markersize=4, color=colours.get(label), label=label)


def features_figure(separation: Separation, labels: tuple[str, str] = ("reference", "engine")
                    ) -> Figure:
    """The high-level feature histograms behind the separation powers, with each value."""
    with _hep_style():
        names = list(separation.histograms)
        columns = 4
        figure, axes = _figure(-(-len(names) // columns), columns, (15.0, 9.0))
        for ax, name in zip(axes.flat, names):
            pair = separation.histograms[name]
            for values, label, colour in ((pair.reference, labels[0], "black"),
                                          (pair.generated, labels[1], "tab:red")):
                mplhep.histplot(values, pair.edges, ax=ax, label=label, color=colour)
            if name == "cell_energy":
                ax.set_xscale("log")
                ax.set_yscale("log")
            ax.set_xlabel(_FEATURE_LABELS.get(name, name))
            ax.set_ylabel("fraction per bin")
            ax.set_title(f"separation {pair.separation:.3g}", fontsize="small")
        for ax in axes.flat[len(names):]:
            ax.set_axis_off()
        axes[0, 0].legend(fontsize="small")
        return figure


def pixelwise_figure(pixel: Pixelwise, label: str = "engine") -> Figure:
    """Per-event sum over cells of |X_fp32 - X_engine|: absolute (GeV) and relative to ECAL."""
    with _hep_style():
        figure, axes = _figure(1, 2, (11.0, 4.5))
        for ax, values, xlabel in ((axes[0, 0], pixel.absolute, "sum |fp32 - engine| [GeV]"),
                                   (axes[0, 1], pixel.relative, "sum |fp32 - engine| / ECAL")):
            finite = values[np.isfinite(values)]
            counts, edges = np.histogram(finite, bins=40)
            mplhep.histplot(counts, edges, ax=ax, color="tab:red", label=label)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("events")
            ax.set_title(f"mean {finite.mean():.3g}, std {finite.std():.3g}", fontsize="small")
        return figure


def validation_figures(result: ValidationResult, engine_label: str = "engine"
                       ) -> dict[str, Figure]:
    """Every figure of a result, keyed by the artifact file it is logged as."""
    labels = {"engine": engine_label}
    figures = {f"physics/profile_{axis}.png": profile_figure(result, axis, labels)
               for axis in AXES}
    figures["physics/sampling_fraction.png"] = sampling_fraction_figure(result, labels=labels)
    figures["physics/moments_hits.png"] = binned_figure(result, labels)
    for name, comparison in result.comparisons.items():
        if name == "engine" or (name == "fp32" and not result.engine_is_fp32):
            label = labels.get(name, name)
            figures[f"physics/features_{name}.png"] = features_figure(
                comparison.separation, ("reference", label))
    if result.pixelwise is not None:
        figures["physics/pixelwise.png"] = pixelwise_figure(result.pixelwise, engine_label)
    return figures


def _samples(result: ValidationResult, labels: Mapping[str, str] | None
             ) -> list[tuple[str, SampleSummary]]:
    """(label, summary) of each distinct sample, in the result's order (the reference first)."""
    labels = labels or {}
    return [(labels.get(name, name), summary) for name, summary in result.samples.items()
            if not (name == "fp32" and result.engine_is_fp32)]  # that sample drawn once


def _colours(result: ValidationResult, labels: Mapping[str, str] | None) -> dict[str, str]:
    labels = labels or {}
    return {labels.get(name, name): _COLOURS[name] for name in result.samples}
