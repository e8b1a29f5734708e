"""The search's result on its parent run: the Pareto front, the trial table, the chosen point
(as a precision option, and unless the search was cut short as a registered engine whose speed
is confirmed side by side with plain int8)."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace

from optuna.trial import TrialState

from calo.config import PrecisionConfig
from calo.precision.engine import Engine
from calo.search.export import option_text, reproduce_overrides, save_option
from calo.search.job import SearchJob
from calo.search.pareto import Selection, TrialRow, summarize_study, table_rows
from calo.search.study import SETUP_ATTR, count
from calo.tracking import Tracker

__all__ = ["record_result"]

log = logging.getLogger(__name__)

CONFIRM_ROUNDS = 5  # paired rounds of the chosen engine against plain int8


def record_result(job: SearchJob, parent: Tracker, others: dict[str, dict[str, float]],
                   complete: bool) -> None:
    """The front, table, chosen point and comparison points on the parent run; unless the
    search was cut short, also the chosen engine."""
    from calo.formatting import markdown_table
    from calo.search.front_plot import plot_front

    search, study = job.settings.search, job.study
    summary = summarize_study(study, search)
    selection = summary.selection
    failed = count(study, TrialState.FAIL)
    parent.log_metrics({"search/n_complete": len(summary.rows), "search/n_failed": failed,
                        "search/n_front": len(summary.front)})
    log.info("study %s: %d completed, %d failed trial(s), %d on the Pareto front", job.name,
             len(summary.rows), failed, len(summary.front))
    if not summary.rows:
        return
    rows = table_rows(summary.rows, summary.front, selection.row, selection.fp32_svn)
    parent.log_text(markdown_table([r for r in rows if r["front"]]) + "\n", "search/front.md")
    parent.log_text(markdown_table(rows) + "\n", "search/trials.md")
    parent.log_dict({"rows": rows, "comparisons": others}, "search/trials.json")
    figure = plot_front(summary.rows, summary.front, selection, search, others,
                        f"study {job.name}: {len(summary.rows)} trials",
                        searched=job.settings.precision.name)
    parent.log_figure(figure, "search/pareto_front.png")
    parent.log_metrics(_selection_metrics(selection, others))
    log.info("chosen point: %s", selection.sentence(search))
    parent.set_tags({"search/chosen": selection.sentence(search)})
    _chosen_stage(job, selection, parent, with_engine=complete)


def _selection_metrics(selection: Selection, others: dict[str, dict[str, float]]
                       ) -> dict[str, float]:
    metrics = {"search/chosen/trial": selection.row.number,
               "search/chosen/svn": selection.row.svn, "search/chosen/svn_ratio":
               selection.svn_ratio, "search/chosen/pixel": selection.row.pixel,
               "search/chosen/throughput": selection.row.throughput,
               "search/chosen/latency_ms": selection.row.latency_ms,
               "search/chosen/meets_physics": float(selection.meets_physics),
               "search/chosen/meets_speed": float(selection.meets_speed),
               "search/chosen/n_fp32_nodes": len(selection.row.keep_fp32)}
    if selection.row.speedup is not None:
        metrics["search/chosen/speedup"] = selection.row.speedup
    if selection.speed_fraction is not None:
        metrics["search/chosen/speed_fraction"] = selection.speed_fraction
    if selection.plain is not None:
        metrics.update({f"search/plain/{key}": value for key, value in
                        (("svn", selection.plain.svn), ("pixel", selection.plain.pixel),
                         ("throughput", selection.plain.throughput),
                         ("speedup", selection.plain.speedup)) if value is not None})
    for name, numbers in others.items():
        metrics.update({f"search/{name}/{key}": value for key, value in numbers.items()
                        if isinstance(value, int | float)})
    return metrics


def _chosen_stage(job: SearchJob, selection: Selection, parent: Tracker,
                  with_engine: bool) -> None:
    """The chosen fallback set as JSON and as a precision option (saved as
    conf/precision/<search.save_as>.yaml if asked); unless the search was cut short, its engine
    rebuilt, logged and registered."""
    from calo.precision import folder_size

    settings, search, row = job.settings, job.settings.search, selection.row
    setup = job.study.user_attrs[SETUP_ATTR]
    note = (f"study {job.name}, trial {row.number}: SVN {row.svn:.4g} "
            f"({selection.svn_ratio:.3f} x fp32), pixel {row.pixel:.4g}, "
            f"{row.throughput:.0f} showers/s")
    name = search.save_as or f"{settings.precision.backend.value}_best"
    parent.log_dict({"trial": row.number, "keep_fp32": list(row.keep_fp32),
                     "reproduce": reproduce_overrides(settings.precision, row.keep_fp32),
                     "sentence": selection.sentence(search)}, "search/chosen.json")
    text = option_text(name, row.keep_fp32, setup, note)
    parent.log_text(text, f"search/{name}.yaml")
    if search.save_as:
        log.info("wrote %s", save_option(search.save_as, text))
    if not with_engine:
        return
    precision = replace(settings.precision, keep_fp32=list(row.keep_fp32))
    engine = job.build(precision)
    with tempfile.TemporaryDirectory(prefix="calo-search-chosen-") as folder:
        engine.save(folder)
        parent.log_metrics({"search/chosen/disk_mb": folder_size(folder) / 2**20})
        parent.log_artifacts(folder, "search/chosen_engine")
        _register(job, row, folder, parent)
    if row.keep_fp32:
        _confirm_speed(job, precision, engine, parent)


def _confirm_speed(job: SearchJob, precision: PrecisionConfig, engine: Engine,
                   parent: Tracker) -> None:
    """The chosen engine against plain int8, side by side in alternating rounds: its share
    of plain int8's speed from one measurement, not from two trials minutes apart."""
    settings = job.settings
    plain = replace(settings.precision, keep_fp32=[])
    log.info("confirming the chosen point's speed against plain int8, side by side")
    plain_engine = job.build(plain)
    rounds = max(CONFIRM_ROUNDS, settings.search.bench_rounds)
    ratio = job.evaluator.paired_ratio((precision, engine), (plain, plain_engine), rounds)
    parent.log_metrics({"search/chosen/speed_vs_plain": ratio})
    log.info("chosen point: %.0f %% of plain int8's throughput (median of %d paired "
             "rounds)", 100 * ratio, rounds)


def _register(job: SearchJob, row: TrialRow, folder: str, parent: Tracker) -> None:
    """Log the chosen engine as a model and register it (search.register_name), unless the
    study registered this trial under that name last time."""
    import numpy as np

    from calo.precision.pyfunc import log_engine_model

    register_name = job.settings.search.register_name
    registration = {"run": parent.run_id, "trial": row.number, "name": register_name}
    if not (parent.run_id and register_name) or (
            job.study.user_attrs.get("registered") == registration):
        return
    evaluator = job.evaluator
    example = np.hstack([evaluator.latent[:2], evaluator.energy[:2, None]]).astype(np.float32)
    uri = log_engine_model(parent, folder, "chosen_engine", example, register_name)
    log.info("chosen engine logged as %s, registered as %s", uri, register_name)
    job.study.set_user_attr("registered", registration)
