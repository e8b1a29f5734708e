"""The paper's Tables 1, 3, 4 and 5 from tracked runs, this project's values beside the
paper's. Each table lists what it could not fill (a failed run, a run without the metrics).

Metric names are the runs' own (docs/physics.md and docs/bench.md, "Metric names"):
``bench/...`` for speed, ``physics/<sample>/...`` for shapes and distances.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from calo.formatting import DASH, fixed, number, with_error
from calo.physics.table import SHAPES
from calo.published import PAPER, PAPER_MACHINE, PAPER_SPEED, PAPER_TOPOLOGY
from calo.report.runs import ReportRun, baseline_run

__all__ = ["Cell", "Table", "paper_tables", "pixel_table", "shapes_table", "speed_table",
           "svn_table"]

@dataclass(frozen=True)
class Cell:
    text: str
    link: str | None = None


@dataclass
class Table:
    """A captioned table of text cells; ``missing`` says what it could not fill."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def add(self, *cells: Cell | str) -> None:
        self.rows.append([c if isinstance(c, Cell) else Cell(c) for c in cells])


def _run_cells(run: ReportRun | None) -> list[Cell]:
    if run is None:
        return [Cell(DASH), Cell("paper")]
    return [Cell(run.machine.label), Cell(run.record.run_id[:8], run.link)]


def _paper_only(table: Table, covered: set[str], values: Mapping[str, Mapping[str, float]],
                row: Callable[[str, Mapping[str, float]], list[str]]) -> None:
    """Rows for the paper's models that no run of the report measured."""
    for precision, paper in values.items():
        if precision not in covered and precision != "reference":
            table.add(f"{precision} (paper only)", *row(precision, paper), *_run_cells(None))


def _measured(runs: list[ReportRun], table: Table, prefix: str, what: str) -> list[ReportRun]:
    """The runs with ``prefix`` metrics (a failed run's count: what it measured is real). A
    finished run without them is listed as missing; failed runs are listed once, elsewhere."""
    having = [run for run in runs if run.has(prefix)]
    table.missing += [f"{table.title.split(':')[0]}: {run.label} has no {what}"
                      for run in runs if run.finished and run not in having]
    return having


def _batches(runs: list[ReportRun]) -> list[int]:
    pattern = re.compile(r"bench/latency_median_ms_b(\d+)$")
    return sorted({int(m.group(1)) for run in runs for key in run.record.metrics
                   if (m := pattern.match(key))})


def speed_table(runs: list[ReportRun]) -> Table:
    """Table 1: time per batch, throughput and speed-up over fp32 measured in the same run."""
    timed = [run for run in runs if run.has("bench/throughput_b")]
    batches = _batches(timed)
    largest = batches[-1] if batches else 64
    table = Table("table1", "Table 1: inference time and speed-up over fp32", [
        "precision", "threads x streams", *[f"time per batch of {b} [ms]" for b in batches],
        f"showers/s, batch {largest}", "fp32 showers/s, same run", "speed-up vs fp32",
        "paper: time [ms]", "paper: speed-up", "machine", "run"])
    threads, streams = PAPER_TOPOLOGY
    table.notes += [
        f"Speed-up: median over alternating rounds of the throughput ratio to the fp32 engine "
        f"measured in the same run, at batch {largest}; the fp32 run is the baseline itself.",
        f"Paper: {PAPER_MACHINE}, {threads} threads x {streams} streams, TensorFlow 2.3, batch "
        "size not stated; it measured the speed of fp32 and its int8 model only.",
    ]
    for run in _measured(runs, table, "bench/throughput_b", "benchmark (bench.enabled=false)"):
        paper = PAPER_SPEED.get(run.precision, {})
        speedup = run.metric(f"bench/speedup_b{largest}")
        table.add(
            run.label, f"{number(run.metric('bench/threads'))} x "
                       f"{number(run.metric('bench/streams'))}",
            *[number(run.metric(f"bench/latency_median_ms_b{b}")) for b in batches],
            number(run.metric(f"bench/throughput_b{largest}")),
            number(run.metric(f"bench/fp32_throughput_b{largest}")),
            "1 (baseline)" if run.precision == "fp32" else
            (f"{speedup:.2f}x" if speedup is not None else DASH),
            number(paper.get("time_ms")), _speedup_text(paper.get("speedup")), *_run_cells(run))
    blank = [DASH] * (len(batches) + 4)
    _paper_only(table, {run.precision for run in timed}, PAPER_SPEED,
                lambda _, paper: [*blank, number(paper["time_ms"]),
                                  _speedup_text(paper["speedup"])])
    return table


def _speedup_text(value: float | None) -> str:
    return DASH if value is None else f"{value:.2f}x"



def _reference_label(run: ReportRun) -> str:
    source = run.record.params.get("data.source", "reference")
    return "Geant4 (EleEscan files)" if source == "eleescan" else "reference (simulated)"


def shapes_table(runs: list[ReportRun]) -> Table:
    """Table 3: energy-weighted mean and std of the average y and z profiles (cells)."""
    table = Table("table3", "Table 3: shower-shape mean and standard deviation", [
        "sample", *[c for shape in SHAPES
                    for c in (shape.replace("_", " "), f"{shape.replace('_', ' ')}, paper")],
        "machine", "run"])
    table.notes.append("Energy-weighted mean and standard deviation of the average profile, "
                       "in cell indices, with statistical errors; the paper's Geant4 row is "
                       "the reference row's.")
    measured = _measured(runs, table, "physics/engine/z_mean", "physics metrics")
    baseline = baseline_run(measured, "physics/engine/z_mean")

    def cells(run: ReportRun, sample: str, paper: Mapping[str, float]) -> list[str]:
        return [text for shape in SHAPES for text in (
            with_error(run.metric(f"physics/{sample}/{shape}"),
                       run.metric(f"physics/{sample}/{shape}_err")),
            fixed(paper.get(shape), 2))]

    if baseline is not None:
        table.add(_reference_label(baseline), *cells(baseline, "reference", PAPER["reference"]),
                  *_run_cells(baseline))
        table.add("fp32" + (", untrained" if baseline.untrained else ""),
                  *cells(baseline, "fp32", PAPER["fp32"]), *_run_cells(baseline))
    for run in measured:
        if run.precision != "fp32":
            table.add(run.label, *cells(run, "engine", PAPER.get(run.precision, {})),
                      *_run_cells(run))
    covered = {run.precision for run in measured} | ({"fp32"} if baseline else set())
    _paper_only(table, covered, PAPER, lambda _, paper: [
        text for shape in SHAPES for text in (DASH, fixed(paper.get(shape), 2))])
    return table


def svn_table(runs: list[ReportRun]) -> Table:
    """Table 4: the single validation number against the reference and against fp32."""
    table = Table("table4", "Table 4: single validation number (SVN)", [
        "sample", "SVN vs reference", "SVN vs fp32", "paper (its own normalisation)",
        "machine", "run"])
    table.notes.append("SVN as defined in the README (relative squared error of the mean 2-D "
                       "projections per unit energy); the reference row is its statistical "
                       "floor, half of the reference against the other half. The paper's "
                       "values use an unpublished normalisation: compare the order of rows.")
    measured = _measured(runs, table, "physics/engine/svn", "physics metrics")
    baseline = baseline_run(measured, "physics/engine/svn")
    if baseline is not None:
        table.add(f"{_reference_label(baseline)}, half vs half",
                  number(baseline.metric("physics/floor/svn")), DASH, DASH,
                  *_run_cells(baseline))
        table.add("fp32" + (", untrained" if baseline.untrained else ""),
                  number(baseline.metric("physics/fp32/svn")), DASH,
                  number(PAPER["fp32"].get("svn")), *_run_cells(baseline))
    for run in measured:
        if run.precision != "fp32":
            table.add(run.label, number(run.metric("physics/engine/svn")),
                      number(run.metric("physics/engine_vs_fp32/svn")),
                      number(PAPER.get(run.precision, {}).get("svn")), *_run_cells(run))
    covered = {run.precision for run in measured} | ({"fp32"} if baseline else set())
    _paper_only(table, covered, PAPER, lambda _, paper: [DASH, DASH, number(paper.get("svn"))])
    return table


def pixel_table(runs: list[ReportRun]) -> Table:
    """Table 5: per event, the sum over cells of |X_fp32 - X_precision|; mean and std."""
    table = Table("table5", "Table 5: pixel-wise difference to fp32", [
        "precision", "mean [GeV]", "std [GeV]", "relative to ECAL: mean", "relative: std",
        "paper: mean", "paper: std", "machine", "run"])
    table.notes.append("Same latents and energies through fp32 and the precision; per event "
                       "the sum over cells of the absolute difference. The paper does not "
                       "state its units.")
    quantized = [run for run in runs if run.precision != "fp32"]
    for run in _measured(quantized, table, "physics/engine_vs_fp32/pixel_abs_mean",
                         "pixel-wise comparison"):
        paper = PAPER.get(run.precision, {})
        table.add(run.label, number(run.metric("physics/engine_vs_fp32/pixel_abs_mean")),
                  number(run.metric("physics/engine_vs_fp32/pixel_abs_std")),
                  number(run.metric("physics/engine_vs_fp32/pixel_rel_mean")),
                  number(run.metric("physics/engine_vs_fp32/pixel_rel_std")),
                  fixed(paper.get("pixel_abs_mean"), 3), fixed(paper.get("pixel_abs_std"), 3),
                  *_run_cells(run))
    covered = {run.precision for run in quantized if run.has("physics/engine_vs_fp32/")}
    pixel_paper = {k: v for k, v in PAPER.items() if "pixel_abs_mean" in v}
    _paper_only(table, covered, pixel_paper, lambda _, paper: [
        DASH, DASH, DASH, DASH, fixed(paper["pixel_abs_mean"], 3),
        fixed(paper["pixel_abs_std"], 3)])
    return table


def paper_tables(runs: list[ReportRun]) -> list[Table]:
    return [speed_table(runs), shapes_table(runs), svn_table(runs), pixel_table(runs)]
