"""Figures of benchmark results; they draw what calo.bench measured and compute nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import mplhep
import numpy as np
from matplotlib.figure import Figure

from calo.bench.results import GridResult

__all__ = ["plot_grid", "plot_grid_rows"]


def plot_grid(grid: GridResult, machine: str = "") -> Figure:
    """Showers per second for fp32 and the precision in each (threads, streams) cell, as the
    paper's Figure 4; the paired speed-up is written above each cell."""
    return plot_grid_rows(grid.rows(), grid.precision, grid.batch_size, machine)


def plot_grid_rows(rows: Sequence[Mapping[str, Any]], precision: str, batch_size: int,
                   machine: str = "") -> Figure:
    """:func:`plot_grid` from rows as :meth:`GridResult.rows` gives them (``threads``,
    ``streams``, ``fp32``, ``<precision>``, ``speedup``), e.g. read back from MLflow."""
    labels = [f"{row['threads']} thr\n{row['streams']} str" for row in rows]
    names = dict.fromkeys(("fp32", precision))  # one series when fp32 is benchmarked
    series = [name for name in names if any(row[name] for row in rows)]
    positions = np.arange(len(rows))
    width = 0.8 / len(series)
    with plt.style.context(mplhep.style.ROOT):
        figure, ax = plt.subplots(figsize=(max(8.0, 2.0 * len(rows) + 2.0), 6.5))
        for index, name in enumerate(series):
            ax.bar(positions + (index - (len(series) - 1) / 2) * width,
                   [row[name] or 0.0 for row in rows], width, label=name)
        for position, row in zip(positions, rows):
            if row["speedup"] is not None:
                top = max(row[name] or 0.0 for name in series)
                ax.annotate(f"{row['speedup']:.2f}x", (position, top), ha="center",
                            va="bottom", fontsize="small")
        ax.set_xticks(positions, labels, fontsize="small")
        ax.set_ylabel("showers / s")
        ax.set_xlabel("threads x streams", fontsize="small")
        ax.set_title(f"batch {batch_size}" + (f", {machine}" if machine else ""),
                     fontsize="x-small", loc="left")
        ax.legend(loc="upper left", fontsize="small")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.3)
        figure.tight_layout()
    return figure
