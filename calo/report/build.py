"""A report from tracked runs: read the sweep, fill the paper's tables, redraw its figures,
and list everything that could not be filled. Bad input never stops it: an unknown
experiment or sweep, failed runs, missing metrics or an unreachable store are listed under
"What is missing", and what exists is still shown (the paper's values at least)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from calo.report.figures import ReportFigure, shape_figures, throughput_figures
from calo.report.profiles import PROFILES_ARTIFACT, profiles_from_record
from calo.report.runs import Machine, ReportRun, label_runs, run_link, ui_url_for
from calo.report.tables import Table, paper_tables
from calo.tracking.query import SweepRuns, load_sweep, read_json_artifact

__all__ = ["Report", "ReportSource", "build_report"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportSource:
    """Where the runs are: a tracking URI, an MLflow experiment and a sweep in it (``latest``,
    a parent run ID or a sweep name); ``ui_url``: the MLflow UI the run links point to."""

    tracking_uri: str
    experiment: str
    sweep: str = "latest"
    ui_url: str | None = None


@dataclass
class Report:
    """Everything the page shows."""

    source: ReportSource
    ui_url: str
    sweep: SweepRuns
    runs: list[ReportRun]
    tables: list[Table]
    figures: list[ReportFigure]
    missing: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S %Z"))

    @property
    def title(self) -> str:
        parent = self.sweep.parent
        name = parent.tags.get("sweep/name", parent.name) if parent else self.source.sweep
        return f"calo report: {self.source.experiment} / {name}"

    @property
    def parent_link(self) -> str | None:
        parent = self.sweep.parent
        return run_link(self.ui_url, self.sweep.experiment_id, parent.run_id) if parent else None

    @property
    def machines(self) -> list[Machine]:
        return list({run.machine.label: run.machine for run in self.runs}.values())


def _failures(runs: list[ReportRun]) -> list[str]:
    return [f"{run.label}: run {run.record.run_id[:8]} {run.record.status}"
            + (f": {run.record.error}" if run.record.error else "")
            for run in runs if not run.finished]


def build_report(source: ReportSource) -> Report:
    """Read the sweep's runs (and their profiles) and assemble the report."""
    log.info("report: reading sweep %s of experiment %s from %s", source.sweep,
             source.experiment, source.tracking_uri)
    sweep = load_sweep(source.tracking_uri, source.experiment, source.sweep)
    ui_url = source.ui_url or ui_url_for(source.tracking_uri)
    runs = label_runs(sweep.runs, ui_url, sweep.experiment_id)
    profiles = {}
    for run in runs:
        record = read_json_artifact(source.tracking_uri, run.record.run_id, PROFILES_ARTIFACT)
        if record is not None:
            profiles[run.record.run_id] = profiles_from_record(record)
    tables = paper_tables(runs)
    grid_figures, grid_missing = throughput_figures(runs)
    shapes, shapes_missing = shape_figures(runs, profiles)
    missing = [*sweep.problems, *_failures(runs),
               *(item for table in tables for item in table.missing),
               *grid_missing, *shapes_missing]
    return Report(source, ui_url, sweep, runs, tables, [*grid_figures, *shapes], missing)
