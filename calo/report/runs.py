"""The runs of a report: which precision each measured, a label that tells them apart, the
machine it ran on, and its link back to the MLflow UI."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlparse

from calo.tracking.query import RunRecord

__all__ = ["Machine", "ReportRun", "baseline_run", "label_runs", "run_link", "ui_url_for"]

LOCAL_UI = "http://127.0.0.1:5000"  # make ui


@dataclass(frozen=True)
class Machine:
    """A machine some run came from, as its run's tags recorded it."""

    label: str  # M1, M2, ...
    cpu_model: str
    cores: str
    hostname: str
    isa: str

    def describe(self) -> str:
        return (f"{self.label}: {self.cpu_model}, {self.cores} cores usable, host "
                f"{self.hostname}, ISA {self.isa}")


@dataclass(frozen=True)
class ReportRun:
    """A run with what the report shows of it."""

    record: RunRecord
    label: str
    precision: str
    machine: Machine
    link: str

    @property
    def finished(self) -> bool:
        return self.record.status == "FINISHED"

    @property
    def untrained(self) -> bool:
        return self.record.tags.get("generator_trained") == "false"

    def metric(self, key: str) -> float | None:
        value = self.record.metrics.get(key)
        return value if value is not None and math.isfinite(value) else None

    def has(self, prefix: str) -> bool:
        return any(key.startswith(prefix) for key in self.record.metrics)


def ui_url_for(tracking_uri: str) -> str:
    """The MLflow UI that shows a store: the server itself, or ``make ui`` for a local one."""
    if urlparse(tracking_uri).scheme in ("http", "https"):
        return tracking_uri.rstrip("/")
    return LOCAL_UI


def run_link(ui_url: str, experiment_id: str | None, run_id: str) -> str:
    """The run's page in the MLflow UI."""
    return f"{ui_url}/#/experiments/{experiment_id}/runs/{run_id}"


def _precision(record: RunRecord) -> str:
    if "precision.name" in record.params:
        return record.params["precision.name"]
    if "choice/precision" in record.tags:
        return record.tags["choice/precision"]
    for override in record.tags.get("sweep/overrides", "").split():
        if override.startswith("precision="):
            return override.removeprefix("precision=")
    return "?"


def _machine_key(record: RunRecord) -> tuple[str, ...]:
    return tuple(record.tags.get(f"machine/{name}", "unknown")
                 for name in ("cpu_model", "cores", "hostname", "isa"))


def _machines(records: list[RunRecord]) -> dict[tuple[str, ...], Machine]:
    machines: dict[tuple[str, ...], Machine] = {}
    for record in records:
        key = _machine_key(record)
        if key not in machines:
            machines[key] = Machine(f"M{len(machines) + 1}", *key)
    return machines


def label_runs(records: list[RunRecord], ui_url: str, experiment_id: str | None
               ) -> list[ReportRun]:
    """Label each run by its precision; where finished runs repeat a precision, add their
    threads x streams (or job number); an unfinished run says so with its job number."""
    machines = _machines(records)
    precisions = [_precision(record) for record in records]
    repeated = Counter(p for p, r in zip(precisions, records) if r.status == "FINISHED")
    runs = []
    for record, precision in zip(records, precisions):
        job = record.tags.get("sweep/job")
        label = precision
        if record.status != "FINISHED":
            label += f" ({'job ' + job + ', ' if job else ''}{record.status})"
        elif repeated[precision] > 1:
            threads, streams = (record.params.get(f"hw/{k}") for k in ("threads", "streams"))
            label += f" ({threads}x{streams})" if threads else f" (job {job})"
        if record.tags.get("generator_trained") == "false":
            label += ", untrained"
        link = run_link(ui_url, experiment_id, record.run_id)
        runs.append(ReportRun(record, label, precision, machines[_machine_key(record)], link))
    labels = Counter(run.label for run in runs)
    return [run if labels[run.label] == 1 else
            ReportRun(run.record, f"{run.label} [{run.record.run_id[:6]}]", run.precision,
                      run.machine, run.link) for run in runs]


def baseline_run(runs: list[ReportRun], prefix: str) -> ReportRun | None:
    """The run whose reference and fp32 samples the report shows: the fp32 run that has
    ``prefix`` metrics, else the first run that has them (every run measures both)."""
    having = [run for run in runs if run.has(prefix)]
    fp32 = [run for run in having if run.precision == "fp32"]
    return (fp32 or having or [None])[0]
