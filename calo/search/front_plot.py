"""The Pareto front of a search as a figure; it draws what calo.search.pareto computed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import mplhep
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from calo.search.pareto import Selection, TrialRow
from calo.search.settings import SearchConfig, SearchMode, SearchPhysics, SearchSpeed

__all__ = ["plot_front"]

SPEED_LABEL = {SearchSpeed.speedup: "speed-up over fp32",
               SearchSpeed.throughput: "showers / s",
               SearchSpeed.latency: "median batch latency [ms]"}
PHYSICS_LABEL = {SearchPhysics.svn: "SVN against the reference",
                 SearchPhysics.pixel: "pixel-wise distance to fp32"}


def _panel(ax: Axes, rows: Sequence[TrialRow], front: Sequence[TrialRow],
           selection: Selection, others: Mapping[str, tuple[float, float]],
           value: str, label: str, objective: bool, plain: str) -> None:
    """Trials (grey), the front (a line on the objective's own panel), ``plain`` int8, the
    chosen point and ``others`` (name -> (speed, value)) as labelled markers."""
    ax.scatter([r.speed for r in rows], [getattr(r, value) for r in rows], s=18, c="0.6",
               label=f"trials ({len(rows)})")
    ax.plot([r.speed for r in front], [getattr(r, value) for r in front],
            "o-" if objective else "o", c="C3", ms=5,
            label="Pareto front" if objective else "Pareto front's trials")
    if selection.plain is not None:
        ax.scatter([selection.plain.speed], [getattr(selection.plain, value)], marker="s",
                   s=70, facecolors="none", edgecolors="C0", label=plain)
    if selection.row is not None:
        ax.scatter([selection.row.speed], [getattr(selection.row, value)], marker="*", s=220,
                   c="C2", zorder=3, label=f"chosen (trial {selection.row.number})")
    for index, (name, (speed, y)) in enumerate(others.items()):
        ax.scatter([speed], [y], marker="^v<>Dp"[index % 6], s=70, c=f"C{4 + index}",
                   label=name)
    ax.set_ylabel(label, fontsize="small")


def plot_front(rows: Sequence[TrialRow], front: Sequence[TrialRow], selection: Selection,
               search: SearchConfig, others: Mapping[str, Mapping[str, float]],
               title: str = "", searched: str = "int8") -> Figure:
    """Physics distance against speed; with ``search.physics=pixel`` a second panel shows the
    SVN, with the chosen point's two conditions as dashed lines. ``others``: name -> measured
    numbers (``svn``, ``pixel``, ``speed``) of comparison points (int8_tflite, autotune);
    ``searched``: the precision whose nodes the trials keep in fp32."""
    plain = f"plain {searched} (no node kept)"
    panels = [search.physics] + ([SearchPhysics.svn] if search.physics is not
                                 SearchPhysics.svn else [])
    with plt.style.context(mplhep.style.ROOT):
        figure, axes = plt.subplots(1, len(panels), figsize=(9.0 * len(panels), 6.5),
                                    squeeze=False)
        for ax, physics in zip(axes[0], panels):
            points = {name: (numbers["speed"], numbers[physics.value])
                      for name, numbers in others.items()}
            _panel(ax, rows, front, selection, points, physics.value, PHYSICS_LABEL[physics],
                   physics is search.physics, plain)
            ax.set_xlabel(SPEED_LABEL[search.speed], fontsize="small")
            ax.tick_params(labelsize="small")
        svn_ax = axes[0][panels.index(SearchPhysics.svn)]
        svn_ax.axhline((1 + search.physics_tolerance) * selection.fp32_svn, ls="--", c="0.3",
                       label=f"fp32 SVN + {100 * search.physics_tolerance:.0f} %")
        if selection.plain is not None and search.mode is SearchMode.multi:
            fraction, plain_speed = search.min_speed_fraction, selection.plain.speed
            svn_ax.axvline(plain_speed / fraction if search.speed is SearchSpeed.latency
                           else plain_speed * fraction, ls=":", c="0.3",
                           label=f"{100 * fraction:.0f} % of {plain}'s speed")
        for ax in axes[0]:
            ax.legend(fontsize="x-small", loc="best")
        if title:
            figure.suptitle(title, fontsize="small")
        figure.tight_layout()
    return figure
