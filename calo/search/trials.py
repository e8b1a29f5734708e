"""The study's trials: Optuna samples which nodes stay fp32, each trial's engine is built and
measured in a child run; crashed trials fail alone, up to the failure budget."""

from __future__ import annotations

import logging
import math
import os
import platform

import optuna
from optuna.trial import TrialState

from calo.errors import CaloError, one_line
from calo.precision.engine import Engine
from calo.search.evaluate import TrialMeasurement
from calo.search.export import reproduce_overrides
from calo.search.job import SearchJob
from calo.search.settings import SearchMode
from calo.search.study import count
from calo.tracking import tracked_run

__all__ = ["ensure_baseline", "optimize"]

log = logging.getLogger(__name__)

INERT_ATTR = "inert_nodes"  # quantizable nodes the backend leaves fp32 in plain int8


class _FailureBudget:
    """Stops the study once this process's failed trials exceed the allowance."""

    def __init__(self, allowed: int) -> None:
        self.allowed, self.failed, self.last_error = allowed, 0, ""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state is TrialState.FAIL:
            self.failed += 1
            self.last_error = trial.user_attrs.get("error", "no error recorded")
            if self.failed > self.allowed:
                study.stop()


def optimize(job: SearchJob) -> None:
    search = job.settings.search
    complete = count(job.study, TrialState.COMPLETE)
    remaining = search.n_trials - complete
    if remaining <= 0:
        log.info("study %s already holds %d completed trials (search.n_trials=%d): nothing to "
                 "run; raise search.n_trials to continue it", job.name, complete,
                 search.n_trials)
        return
    allowed = math.floor(search.max_failure_rate * search.n_trials)
    budget = _FailureBudget(allowed)
    log.info("study %s: running until it holds %d completed trials (%d to go; %d failure(s) "
             "allowed)", job.name, search.n_trials, remaining, allowed)
    job.study.optimize(
        lambda trial: _trial(job, trial), n_trials=remaining + allowed, gc_after_trial=True,
        callbacks=[optuna.study.MaxTrialsCallback(search.n_trials,
                                                  states=(TrialState.COMPLETE,)), budget])
    if budget.failed > allowed:
        raise CaloError(f"search stopped: {budget.failed} trials failed, more than "
                        f"search.max_failure_rate={search.max_failure_rate} of "
                        f"search.n_trials={search.n_trials} allows; last error: "
                        f"{budget.last_error}")


def ensure_baseline(job: SearchJob) -> None:
    """Measure plain int8 now if the study has no completed trial of it: the speed condition
    and the comparisons are relative to it. A worker killed during that trial leaves it failed,
    and Optuna's retry waits behind every other waiting trial, so it may never have run."""
    plain = job.space.plain_params()
    if any(trial.params == plain for trial in job.study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE,))):
        return
    log.info("study %s has no completed plain int8 trial: measuring it now", job.name)
    fixed = optuna.trial.FixedTrial(plain, number=len(job.study.trials))
    result = _trial(job, fixed)
    values = [result] if isinstance(result, float) else list(result)
    if any(math.isnan(value) for value in values):
        raise CaloError(f"the plain int8 baseline of study {job.name} failed "
                        f"({fixed.user_attrs.get('error', 'no error recorded')})")
    distributions = {name: optuna.distributions.CategoricalDistribution([False, True])
                     for name in plain}
    job.study.add_trial(optuna.trial.create_trial(
        params=plain, distributions=distributions, values=values,
        user_attrs=fixed.user_attrs))


def _trial(job: SearchJob, trial: optuna.Trial) -> float | list[float]:
    """One trial: quantize with the sampled fallback set, generate, measure, evaluate. A crash
    is recorded (trial attribute, FAILED child run) and returned as NaN: Optuna marks the trial
    failed and the search goes on."""
    search = job.settings.search
    kept, patterns = _sample(job, trial)
    try:
        measurement, engine = _measure_trial(job, trial, patterns)
    except Exception as error:  # the trial fails, the search goes on (up to the failure budget)
        trial.set_user_attr("error", one_line(error, 500))
        log.error("trial %d failed: %s", trial.number, one_line(error, 500))
        return math.nan if search.mode is SearchMode.single else [math.nan, math.nan]
    trial.set_user_attr("measurement", measurement.summary())
    if not kept:  # plain int8: which nodes the backend leaves in fp32 by itself
        job.study.set_user_attr(INERT_ATTR, [name for name, dtype in
                                               engine.details["node_precision"].items()
                                               if dtype == "fp32"])
    log.info("trial %d: SVN %.4g, pixel %.4g, %.1f showers/s, speed-up %s", trial.number,
             measurement.svn, measurement.pixel, measurement.throughput,
             "-" if measurement.speedup is None else f"{measurement.speedup:.2f}x")
    values = measurement.values(search)
    return values[0] if search.mode is SearchMode.single else values


def _sample(job: SearchJob, trial: optuna.Trial) -> tuple[list[str], list[str]]:
    """The trial's switches, as the node names it keeps in fp32 and their
    ``precision.keep_fp32`` patterns (both recorded on the trial). A set that leaves nothing to
    quantize is the fp32 baseline: pruned, not measured."""
    space = job.space
    for switch in space.switches:
        trial.suggest_categorical(switch.param, [False, True])
    kept = space.kept_nodes(trial.params)
    inert = set(job.study.user_attrs.get(INERT_ATTR, []))
    if kept and set(kept) | inert >= {name for name, _ in space.quantizable}:
        raise optuna.TrialPruned("every quantized node kept in fp32: that is the fp32 baseline")
    patterns = space.keep_patterns(kept)
    for key, value in (("keep_fp32", patterns), ("kept_nodes", kept),
                       ("worker", f"{platform.node()}:{os.getpid()}")):
        trial.set_user_attr(key, value)
    log.info("trial %d: %d of %d quantizable nodes kept in %s %s", trial.number, len(kept),
             len(space.quantizable), job.settings.precision.float_dtype.value, patterns)
    return kept, patterns


def _measure_trial(job: SearchJob, trial: optuna.Trial, patterns: list[str]
                   ) -> tuple[TrialMeasurement, Engine]:
    """The trial's engine (``patterns`` kept in fp32) built and measured in a child run of the
    search."""
    precision, child_cfg = job.child_precision(keep_fp32=patterns)
    tags = {**job.child_tags("trial"), "search/trial": str(trial.number),
            "search/reproduce": reproduce_overrides(precision, patterns)}
    with tracked_run(child_cfg, job.settings.tracking,
                     run_name=f"{job.name}#{trial.number}", tags=tags,
                     parent_run_id=job.parent_id) as tracker:
        if tracker.run_id:
            trial.set_user_attr("mlflow_run_id", tracker.run_id)
        engine = job.build(precision)
        measurement = job.evaluator.measure(precision, engine)
        distance, speed = measurement.values(job.settings.search)
        tracker.log_params({f"engine/{k}": v for k, v in engine.counts().items()})
        tracker.log_dict(engine.details, "engine_details.json")
        tracker.log_metrics({**measurement.metrics(), "search/distance": distance,
                             "search/speed": speed})
    return measurement, engine
