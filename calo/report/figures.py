"""The paper's Figures 4, 5 and 6 redrawn from tracked runs, as PNG bytes.

Figure 4 (throughput over threads x streams) comes from a run's own grid (``bench.grid=true``:
``bench/grid/<threads>x<streams>/...`` metrics) or from a sweep over ``hw.threads`` and
``hw.streams`` (one cell per run). Figures 5 and 6 (shower shapes along y and z, linear and
log) overlay the runs' average profiles (``physics/profiles.json``). The drawing itself is
calo.bench.plot's and calo.physics.plots'.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from calo.physics.plots import plot_profiles
from calo.report.profiles import Profile
from calo.report.runs import ReportRun, baseline_run

__all__ = ["ReportFigure", "grid_rows", "shape_figures", "throughput_figures"]

# The paper's Figure 5 colours: Geant4 red, fp32 blue, iLoT int8 pink, TFLite float16 green,
# TFLite int8 orange.
COLOURS = {"reference": "tab:red", "fp32": "tab:blue", "int8_inc": "tab:pink",
           "fp16_tflite": "tab:green", "int8_tflite": "tab:orange", "bf16_inc": "tab:purple"}
SPARE_COLOURS = ("tab:brown", "tab:olive", "tab:cyan", "tab:gray")

Rows = list[dict[str, float | int | str | None]]


@dataclass(frozen=True)
class ReportFigure:
    key: str  # file stem: figure4_int8_inc
    title: str
    caption: str
    png: bytes


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


_GRID_KEY = re.compile(r"bench/grid/(\d+)x(\d+)/throughput$")


def _own_grid(run: ReportRun) -> Rows:
    """The threads x streams cells a run measured itself (``bench.grid=true``)."""
    rows: Rows = []
    for key in sorted(run.record.metrics, key=lambda k: [int(n) for n in re.findall(r"\d+", k)]):
        match = _GRID_KEY.match(key)
        if match:
            cell = f"bench/grid/{match.group(1)}x{match.group(2)}"
            rows.append({"threads": int(match.group(1)), "streams": int(match.group(2)),
                         run.precision: run.metric(key),
                         "fp32": run.metric(f"{cell}/fp32_throughput"),
                         "speedup": run.metric(f"{cell}/speedup")})
    return rows


def grid_rows(runs: list[ReportRun]) -> dict[str, tuple[int, Rows, list[ReportRun]]]:
    """Per precision: the batch size, one row per (threads, streams) cell, and the runs
    measured. A run's own grid wins; else runs of one precision on at least two topologies
    make a grid of one cell each."""
    grids: dict[str, tuple[int, Rows, list[ReportRun]]] = {}
    swept: dict[str, list[ReportRun]] = defaultdict(list)
    for run in runs:
        rows = _own_grid(run)
        if rows and run.precision not in grids:
            batch = int(run.record.params.get("bench.grid_batch_size", 64))
            grids[run.precision] = (batch, rows, [run])
        elif run.has("bench/throughput_b") and run.metric("bench/threads"):
            swept[run.precision].append(run)
    for precision, members in swept.items():
        cells = {(r.metric("bench/threads"), r.metric("bench/streams")) for r in members}
        if precision in grids or len(cells) < 2:
            continue
        batch = max(int(k.rsplit("_b", 1)[1]) for k in members[0].record.metrics
                    if k.startswith("bench/throughput_b"))
        rows = [{"threads": int(r.metric("bench/threads")),
                 "streams": int(r.metric("bench/streams")),
                 precision: r.metric(f"bench/throughput_b{batch}"),
                 "fp32": r.metric(f"bench/fp32_throughput_b{batch}")
                 if precision != "fp32" else r.metric(f"bench/throughput_b{batch}"),
                 "speedup": r.metric(f"bench/speedup_b{batch}")}
                for r in sorted(members, key=lambda r: (r.metric("bench/threads"),
                                                        r.metric("bench/streams")))]
        grids[precision] = (batch, rows, members)
    return grids


def throughput_figures(runs: list[ReportRun]) -> tuple[list[ReportFigure], list[str]]:
    """Figure 4 per precision, and what is missing when no run measured a grid."""
    figures = []
    grids = grid_rows(runs)
    if grids:
        from calo.bench.plot import plot_grid_rows  # calo.bench loads TensorFlow: only if needed
    for precision, (batch, rows, members) in grids.items():
        machines = sorted({run.machine.label for run in members})
        figure = plot_grid_rows(rows, precision, batch, ", ".join(machines))
        ids = ", ".join(run.record.run_id[:8] for run in members)
        figures.append(ReportFigure(
            f"figure4_{precision}", f"Figure 4: throughput over threads x streams, {precision}",
            f"Showers per second of fp32 and {precision} in each threads x streams cell at "
            f"batch {batch} (speed-up above the bars, both measured in the same run); "
            f"machine {', '.join(machines)}; runs {ids}.", _png(figure)))
    missing = [] if figures else [
        "Figure 4: no run measured a threads x streams grid (python -m calo.run "
        "+experiment=threads_streams, or a sweep over hw.threads and hw.streams)"]
    return figures, missing


def _colours(labels: list[tuple[str, str]]) -> dict[str, str]:
    """Colour per label: the paper's per precision, spare ones for repeated precisions."""
    colours, spare, used = {}, list(SPARE_COLOURS), set()
    for label, precision in labels:
        colour = COLOURS.get(precision)
        if colour is None or colour in used:
            colour = spare.pop(0) if spare else "black"
        colours[label] = colour
        used.add(colour)
    return colours


def shape_figures(runs: list[ReportRun], profiles: Mapping[str, Mapping[str, Mapping[str, Profile]]]
                  ) -> tuple[list[ReportFigure], list[str]]:
    """Figures 5 (linear) and 6 (log): average profiles along y and z of the reference, fp32
    and each precision, each over its ratio to the reference. ``profiles``: per run ID, as
    :func:`calo.report.profiles.profiles_from_record` returns them."""
    having = [run for run in runs if run.record.run_id in profiles]
    missing = [f"Figures 5-6: {run.label} has no profiles artifact"
               + ("" if run.finished else f" (run {run.record.status})")
               for run in runs if run not in having]
    baseline = baseline_run(having, "physics/")
    if baseline is None:
        return [], missing + ["Figures 5-6: no run logged shower profiles"]
    base = profiles[baseline.record.run_id]
    entries = [("reference", "reference", base["reference"]), ("fp32", "fp32", base["fp32"])]
    entries += [(run.label, run.precision, profiles[run.record.run_id]["engine"])
                for run in having if run.precision != "fp32"]
    colours = _colours([(label, precision) for label, precision, _ in entries])
    ids = ", ".join(run.record.run_id[:8] for run in having)
    figures = []
    for number, log in ((5, False), (6, True)):
        figure = Figure(figsize=(12.0, 6.5), layout="constrained")
        axes = figure.subplots(2, 2, sharex="col", gridspec_kw={"height_ratios": [3, 1]})
        for column, axis in enumerate(("y", "z")):
            plot_profiles({label: sample[axis] for label, _, sample in entries}, axis,
                          ax=axes[0, column], ratio_ax=axes[1, column], log=log, colours=colours)
        scale = "log" if log else "linear"
        figure.suptitle(f"shower shapes along y and z ({scale} scale)")
        figures.append(ReportFigure(
            f"figure{number}", f"Figure {number}: shower shapes, {scale} scale",
            f"Average energy per cell along y and z with statistical errors, and the ratio to "
            f"the reference (grey band: its error); machine "
            f"{', '.join(sorted({run.machine.label for run in having}))}; runs {ids}.",
            _png(figure)))
    return figures, missing
