"""The search: ``python -m calo.search search.n_trials=30``.

    hw -> generator -> search space (INC's quantizable nodes) -> study (RDB storage) ->
    fp32 baseline -> parent MLflow run -> trials (each a child run: quantize, generate,
    physics, bench) -> comparisons -> parent: Pareto front, chosen point, engine

Each trial is a run of its own, a child of the search's parent run (which stays open, its
tracker bound to it); several processes can share one study and one parent run, and a rerun
resumes both. SIGTERM ends the search as
Ctrl-C does (the runs KILLED, the study's trial failed and retried by the next worker).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import optuna
from omegaconf import DictConfig
from optuna.trial import TrialState

from calo.cli import terminate_as_interrupt
from calo.config import to_settings
from calo.hw import apply_topology, resolve_topology
from calo.search.chosen import record_result
from calo.search.comparisons import compare
from calo.search.job import SearchJob, open_search
from calo.search.settings import SearchJobConfig
from calo.search.study import FP32_SVN_ATTR, PARENT_RUN_ATTR, count
from calo.search.trials import ensure_baseline, optimize
from calo.tracking import Tracker, tracked_run
from calo.tracking.store import repair_runs

__all__ = ["run_search"]

log = logging.getLogger(__name__)


def run_search(cfg: DictConfig) -> str | None:
    """The search job; returns the parent MLflow run ID (None with tracking off)."""
    settings: SearchJobConfig = to_settings(cfg)
    with terminate_as_interrupt():
        return _run_search(cfg, settings)


def _run_search(cfg: DictConfig, settings: SearchJobConfig) -> str | None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # each trial logs its own line
    topology = resolve_topology(settings.hw)
    log.info("hw=%s: %d threads x %d streams", topology.name, topology.threads, topology.streams)
    apply_topology(topology)
    with tempfile.TemporaryDirectory(prefix="calo-search-") as folder:
        job = open_search(cfg, settings, topology, Path(folder))
        with tracked_run(cfg, settings.tracking, run_name=f"search:{job.name}",
                         tags=job.parent_tags, resume_run_id=job.parent_id) as parent:
            if job.parent_id is None:
                parent.log_params(topology.as_params())
                job.parent_id = parent.run_id
                if parent.run_id:
                    job.study.set_user_attr(PARENT_RUN_ATTR, parent.run_id)
            _record_baseline(job, parent)
            try:
                others = _trials_and_comparisons(job)
            except BaseException:  # the result so far on the parent run, then the error
                _record(job, parent, {}, complete=False)
                raise
            _record(job, parent, others, complete=True)
        return parent.run_id


def _trials_and_comparisons(job: SearchJob) -> dict[str, dict[str, float]]:
    optimize(job)
    ensure_baseline(job)
    if count(job.study, TrialState.COMPLETE) < job.settings.search.n_trials:
        return {}
    return compare(job)


def _record(job: SearchJob, parent: Tracker, others: dict[str, dict[str, float]],
            complete: bool) -> None:
    if job.settings.tracking.enabled:  # a killed worker's trial run ends KILLED, not RUNNING
        repair_runs(job.settings.tracking)
    record_result(job, parent, others, complete=complete)


def _record_baseline(job: SearchJob, parent: Tracker) -> None:
    fp32_svn = job.evaluator.fp32_svn
    job.study.set_user_attr(FP32_SVN_ATTR, fp32_svn)
    parent.log_metrics({"data/n_showers": job.evaluator.n_reference,
                        "search/fp32_svn": fp32_svn})
    log.info("fp32 on the trials' %d showers: SVN %.4g against the reference",
             job.settings.search.n_showers, fp32_svn)
