"""The search job: ``python -m calo.run precision=int8_inc_search search.n_trials=30``.

    hw -> generator -> search space (INC's quantizable nodes) -> study (RDB storage) ->
    parent MLflow run: reference, fp32 baseline -> trials (each a child run: quantize,
    generate, physics, bench) -> parent: Pareto front, chosen point, comparisons, engine

The parent run is closed while the trials run, each trial being a run of its own tagged as
its child (as ``make bench`` does), and resumed to record the summary: several processes can
share one study and one parent run, and a rerun resumes both.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import tempfile
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from calo.cli import terminate_as_interrupt
from calo.config import PrecisionConfig, RunConfig, SearchMode
from calo.errors import CaloError, one_line
from calo.hw import apply_topology, resolve_topology
from calo.precision.engine import Engine
from calo.search.evaluate import Evaluator, Measurement
from calo.search.export import option_text, reproduce_overrides, save_option
from calo.search.space import SearchSpace
from calo.search.study import (
    FP32_SVN_ATTR,
    PARENT_RUN_ATTR,
    SETUP_ATTR,
    check_study,
    count,
    open_storage,
    open_study,
    safe_url,
    search_setup,
    storage_url,
    study_name,
    wait_for_attr,
)
from calo.search.summary import Selection, TrialRow, summarize, table_rows
from calo.tracking import Tracker, tracked_run
from calo.tracking.store import repair_runs
from calo.tracking.sweep import PARENT_TAG

__all__ = ["run_search"]

log = logging.getLogger(__name__)

INERT_ATTR = "inert_nodes"  # quantizable nodes Neural Compressor leaves fp32 in plain int8
PARENT_WAIT_S = 120.0  # how long a process that did not create the study waits for its parent
CONFIRM_ROUNDS = 5  # paired rounds of the chosen engine against plain int8_inc


@dataclass
class _Search:
    """What every stage of one search process shares."""

    cfg: DictConfig
    settings: RunConfig
    study: optuna.Study
    space: SearchSpace
    generator: Any
    graph_def: Any  # the frozen inference graph Neural Compressor quantizes
    parent_id: str | None = None
    parent_tags: dict[str, str] = field(default_factory=dict)
    evaluator: Evaluator | None = None

    @property
    def name(self) -> str:
        return self.study.study_name

    def child_tags(self, role: str) -> dict[str, str]:
        tags = {"search_role": role, "search/study": self.name}
        if self.parent_id:
            tags[PARENT_TAG] = self.parent_id
        return tags

    def child_precision(self, **changes: Any) -> tuple[PrecisionConfig, DictConfig]:
        """The run's precision with ``changes``, and the run's config with the same changes
        (what the child run records)."""
        values = {key: value.value if isinstance(value, Enum) else value
                  for key, value in changes.items()}
        return (replace(self.settings.precision, **changes),
                OmegaConf.merge(self.cfg, {"precision": values}))


def run_search(cfg: DictConfig, settings: RunConfig) -> str | None:
    """The search job; returns the parent MLflow run ID (None with tracking off)."""
    with terminate_as_interrupt():
        return _run_search(cfg, settings)


def _run_search(cfg: DictConfig, settings: RunConfig) -> str | None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # each trial logs its own line
    topology = resolve_topology(settings.hw)
    log.info("hw=%s: %d threads x %d streams", topology.name, topology.threads, topology.streams)
    apply_topology(topology)
    state = _open_search(cfg, settings)
    with tempfile.TemporaryDirectory(prefix="calo-search-") as folder:
        with tracked_run(cfg, settings.tracking, run_name=f"search:{state.name}",
                         tags=state.parent_tags, resume_run_id=state.parent_id) as parent:
            if state.parent_id is None:
                parent.log_params(topology.as_params())
                state.parent_id = parent.run_id
                if parent.run_id:
                    state.study.set_user_attr(PARENT_RUN_ATTR, parent.run_id)
            _baseline(state, topology, Path(folder), parent)
        failure: BaseException | None = None
        others: dict[str, dict[str, float]] = {}
        try:
            _optimize(state)
            _ensure_baseline(state)
            if count(state.study, TrialState.COMPLETE) >= settings.search.n_trials:
                others = _comparison_stage(state)
        except BaseException as error:  # recorded on the parent run below, then raised
            failure = error
        if settings.tracking.enabled:  # a killed worker's trial run ends KILLED, not RUNNING
            repair_runs(settings.tracking)
        with tracked_run(cfg, settings.tracking, resume_run_id=state.parent_id) as parent:
            _summary_stage(state, parent, others, complete=failure is None)
            if failure is not None:
                raise failure
        return parent.run_id


def _open_search(cfg: DictConfig, settings: RunConfig) -> _Search:
    """The generator, its search space, and the study (checked to be this search's, created
    with plain int8_inc as its first trial if new); before any MLflow run, so that a foreign
    study or an unreachable storage leaves no trace."""
    import keras

    from calo.model.weights import load_generator
    from calo.precision import require_cpu_for
    from calo.precision.frozen import freeze_graph
    from calo.precision.inc import quantizable_nodes
    from calo.precision.rewrite import inference_graph

    search = settings.search
    require_cpu_for(settings.precision.backend.value)
    keras.utils.set_random_seed(settings.seed)  # an untrained generator: the same in every process
    generator, trained = load_generator(settings.model)
    graph_def, _, _ = freeze_graph(inference_graph(generator, settings.precision.rewrite))
    space = SearchSpace.from_nodes(quantizable_nodes(graph_def), search.granularity)
    log.info("search space: %d switches (granularity %s) over %d quantizable nodes",
             len(space.switches), search.granularity.value, len(space.quantizable))
    url = storage_url(search, settings.tracking)
    study, created = open_study(open_storage(url, search.heartbeat_s), study_name(settings),
                                search)
    check_study(study, {"fingerprint": space.fingerprint(), "space": space.describe()},
                search_setup(settings), search, url)
    if created:
        for params in [space.plain_params(),
                       *space.sparse_params(search.population_size - 1, search.start_switches,
                                            search.seed)]:
            study.enqueue_trial(params, skip_if_exists=True)
    log.info("study %s in %s: %d completed trial(s) so far", study.study_name, safe_url(url),
             count(study, TrialState.COMPLETE))
    state = _Search(cfg, settings, study, space, generator, graph_def)
    state.parent_tags = {"search_role": "search", "search/study": study.study_name,
                         "search/storage": safe_url(url),
                         "generator_trained": str(trained).lower()}
    state.parent_id = _parent_run_id(state, created)
    return state


def _parent_run_id(state: _Search, created: bool) -> str | None:
    """The study's parent run, when this store holds it; None: start one."""
    from calo.tracking.engines import run_exists

    tracking = state.settings.tracking
    if not tracking.enabled:
        return None
    run_id = state.study.user_attrs.get(PARENT_RUN_ATTR)
    if run_id is None and not created:
        log.info("waiting for the process that created study %s to start its parent run",
                 state.name)
        run_id = wait_for_attr(state.study, PARENT_RUN_ATTR, PARENT_WAIT_S)
    if run_id is not None and not run_exists(tracking, run_id):
        log.warning("the parent run %s of study %s is not in this MLflow store: starting a new "
                    "one", run_id, state.name)
        return None
    return run_id


def _baseline(state: _Search, topology, folder: Path, parent: Tracker) -> None:
    from calo.data import load_reference

    settings = state.settings
    reference = load_reference(settings.data)
    parent.log_metrics({"data/n_showers": len(reference)})
    state.evaluator = Evaluator(state.generator, settings, topology, reference, folder)
    state.study.set_user_attr(FP32_SVN_ATTR, state.evaluator.fp32_svn)
    parent.log_metrics({"search/fp32_svn": state.evaluator.fp32_svn})
    log.info("fp32 on the trials' %d showers: SVN %.4g against the reference",
             settings.search.n_showers, state.evaluator.fp32_svn)


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


def _optimize(state: _Search) -> None:
    search = state.settings.search
    complete = count(state.study, TrialState.COMPLETE)
    remaining = search.n_trials - complete
    if remaining <= 0:
        log.info("study %s already holds %d completed trials (search.n_trials=%d): nothing to "
                 "run; raise search.n_trials to continue it", state.name, complete,
                 search.n_trials)
        return
    allowed = math.floor(search.max_failure_rate * search.n_trials)
    budget = _FailureBudget(allowed)
    log.info("study %s: running until it holds %d completed trials (%d to go; %d failure(s) "
             "allowed)", state.name, search.n_trials, remaining, allowed)
    state.study.optimize(
        lambda trial: _trial(state, trial), n_trials=remaining + allowed, gc_after_trial=True,
        callbacks=[optuna.study.MaxTrialsCallback(search.n_trials,
                                                  states=(TrialState.COMPLETE,)), budget])
    if budget.failed > allowed:
        raise CaloError(f"search stopped: {budget.failed} trials failed, more than "
                        f"search.max_failure_rate={search.max_failure_rate} of "
                        f"search.n_trials={search.n_trials} allows; last error: "
                        f"{budget.last_error}")


def _ensure_baseline(state: _Search) -> None:
    """Measure plain int8_inc now if the study has no completed trial of it: the speed condition
    and the comparisons are relative to it. A worker killed during that trial leaves it failed,
    and Optuna's retry waits behind every other waiting trial, so it may never have run."""
    plain = state.space.plain_params()
    if any(trial.params == plain for trial in state.study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE,))):
        return
    log.info("study %s has no completed plain int8_inc trial: measuring it now", state.name)
    fixed = optuna.trial.FixedTrial(plain, number=len(state.study.trials))
    result = _trial(state, fixed)
    values = [result] if isinstance(result, float) else list(result)
    if any(math.isnan(value) for value in values):
        raise CaloError(f"the plain int8_inc baseline of study {state.name} failed "
                        f"({fixed.user_attrs.get('error', 'no error recorded')})")
    distributions = {name: optuna.distributions.CategoricalDistribution([False, True])
                     for name in plain}
    state.study.add_trial(optuna.trial.create_trial(
        params=plain, distributions=distributions, values=values,
        user_attrs=fixed.user_attrs))


def _trial(state: _Search, trial: optuna.Trial) -> float | list[float]:
    """One trial: quantize with the sampled fallback set, generate, measure, evaluate. A crash
    is recorded (trial attribute, FAILED child run) and returned as NaN: Optuna marks the trial
    failed and the search goes on."""
    search = state.settings.search
    kept, patterns = _sample(state, trial)
    try:
        measurement, engine = _measure_trial(state, trial, patterns)
    except Exception as error:  # the trial fails, the search goes on (up to the failure budget)
        trial.set_user_attr("error", one_line(error, 500))
        log.error("trial %d failed: %s", trial.number, one_line(error, 500))
        return math.nan if search.mode is SearchMode.single else [math.nan, math.nan]
    trial.set_user_attr("measurement", measurement.summary())
    if not kept:  # plain int8_inc: which nodes Neural Compressor leaves in fp32 by itself
        state.study.set_user_attr(INERT_ATTR, [name for name, dtype in
                                               engine.details["node_precision"].items()
                                               if dtype == "fp32"])
    log.info("trial %d: SVN %.4g, pixel %.4g, %.1f showers/s, speed-up %s", trial.number,
             measurement.svn, measurement.pixel, measurement.throughput,
             "-" if measurement.speedup is None else f"{measurement.speedup:.2f}x")
    values = measurement.values(search)
    return values[0] if search.mode is SearchMode.single else values


def _sample(state: _Search, trial: optuna.Trial) -> tuple[list[str], list[str]]:
    """The trial's switches, as the node names it keeps in fp32 and their
    ``precision.keep_fp32`` patterns (both recorded on the trial). A set that leaves nothing to
    quantize is the fp32 baseline: pruned, not measured."""
    space = state.space
    for switch in space.switches:
        trial.suggest_categorical(switch.param, [False, True])
    kept = space.kept_nodes(trial.params)
    inert = set(state.study.user_attrs.get(INERT_ATTR, []))
    if kept and set(kept) | inert >= {name for name, _ in space.quantizable}:
        raise optuna.TrialPruned("every quantized node kept in fp32: that is the fp32 baseline")
    patterns = space.keep_patterns(kept)
    for key, value in (("keep_fp32", patterns), ("kept_nodes", kept),
                       ("worker", f"{platform.node()}:{os.getpid()}")):
        trial.set_user_attr(key, value)
    log.info("trial %d: %d of %d quantizable nodes kept in fp32 %s", trial.number, len(kept),
             len(space.quantizable), patterns)
    return kept, patterns


def _measure_trial(state: _Search, trial: optuna.Trial, patterns: list[str]
                   ) -> tuple[Measurement, Engine]:
    """The trial's engine (``patterns`` kept in fp32) built and measured in a child run of the
    search."""
    from calo.precision import build_engine

    precision, child_cfg = state.child_precision(keep_fp32=patterns)
    tags = {**state.child_tags("trial"), "search/trial": str(trial.number),
            "search/reproduce": reproduce_overrides(precision, patterns)}
    with tracked_run(child_cfg, state.settings.tracking,
                     run_name=f"{state.name}#{trial.number}", tags=tags) as tracker:
        if tracker.run_id:
            trial.set_user_attr("mlflow_run_id", tracker.run_id)
        engine = build_engine(state.generator, state.evaluator.io, precision,
                              latent_distribution=state.settings.model.latent_distribution)
        measurement = state.evaluator.measure(precision, engine)
        distance, speed = measurement.values(state.settings.search)
        tracker.log_params({f"engine/{k}": v for k, v in engine.counts().items()})
        tracker.log_dict(engine.details, "engine_details.json")
        tracker.log_metrics({**measurement.metrics(), "search/distance": distance,
                             "search/speed": speed})
    return measurement, engine


def _comparison_stage(state: _Search) -> dict[str, dict[str, float]]:
    """The points the search is compared with: other backends, Neural Compressor's autotune."""
    summary = summarize(state.study, state.settings.search)
    others = _compare_backends(state)
    if state.settings.search.autotune and summary.rows:
        others.update(_autotune_stage(state, summary.rows))
    return others


def _summary_stage(state: _Search, parent: Tracker, others: dict[str, dict[str, float]],
                   complete: bool) -> None:
    """The front, table, chosen point and comparison points on the parent run; unless the
    search was cut short, also the chosen engine."""
    from calo.bench.tables import markdown_table
    from calo.search.plots import plot_front

    search, study = state.settings.search, state.study
    summary = summarize(study, search)
    selection = summary.selection
    failed = count(study, TrialState.FAIL)
    parent.log_metrics({"search/n_complete": len(summary.rows), "search/n_failed": failed,
                        "search/n_front": len(summary.front)})
    log.info("study %s: %d completed, %d failed trial(s), %d on the Pareto front", state.name,
             len(summary.rows), failed, len(summary.front))
    if not summary.rows:
        return
    rows = table_rows(summary.rows, summary.front, selection.row, selection.fp32_svn)
    parent.log_text(markdown_table([r for r in rows if r["front"]]) + "\n", "search/front.md")
    parent.log_text(markdown_table(rows) + "\n", "search/trials.md")
    parent.log_dict({"rows": rows, "comparisons": others}, "search/trials.json")
    figure = plot_front(summary.rows, summary.front, selection, search, others,
                        f"study {state.name}: {len(summary.rows)} trials")
    parent.log_figure(figure, "search/pareto_front.png")
    parent.log_metrics(_selection_metrics(selection, others))
    log.info("chosen point: %s", selection.sentence(search))
    parent.set_tags({"search/chosen": selection.sentence(search)})
    _chosen_stage(state, selection, parent, with_engine=complete)


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


def _compare_backends(state: _Search) -> dict[str, dict[str, float]]:
    """Each ``search.compare_with`` backend measured as a trial is (once per study)."""
    from calo.precision import build_engine

    settings, search = state.settings, state.settings.search
    results: dict[str, dict[str, float]] = {}
    for backend in search.compare_with:
        key = f"comparison/{backend.value}"
        if (cached := state.study.user_attrs.get(key)) is not None:
            results[backend.value] = cached
            continue
        precision, child_cfg = state.child_precision(name=backend.value, backend=backend,
                                                     keep_fp32=[],
                                                     fixed_batch_size=search.batch_size)
        log.info("comparison: measuring %s as the trials are measured", backend.value)
        try:
            with tracked_run(child_cfg, settings.tracking,
                             run_name=f"{state.name}:{backend.value}",
                             tags=state.child_tags("comparison")) as tracker:
                engine = build_engine(state.generator, state.evaluator.io, precision,
                                      latent_distribution=settings.model.latent_distribution)
                measurement = state.evaluator.measure(precision, engine)
                tracker.log_metrics(measurement.metrics())
        except CaloError as error:
            log.warning("comparison with %s skipped: %s", backend.value, error)
            continue
        numbers = {**measurement.summary(), "speed": measurement.speed(search.speed)}
        state.study.set_user_attr(key, numbers)
        results[backend.value] = numbers
    return results


def _autotune_stage(state: _Search, rows: list[TrialRow]) -> dict[str, dict[str, float]]:
    """Neural Compressor's autotune over the study's fallback sets, in trial order, at most
    as many trials as the study has (once per set of candidates)."""
    from calo.precision.calibration import calibration_inputs
    from calo.search.autotune import run_autotune

    settings, search, study = state.settings, state.settings.search, state.study
    kept_by_trial = {trial.number: tuple(trial.user_attrs["kept_nodes"])
                     for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    candidates = list(dict.fromkeys(kept_by_trial[row.number] for row in rows))
    key = hashlib.sha256(json.dumps(candidates).encode()).hexdigest()[:16]
    cached = study.user_attrs.get("autotune")
    if cached is None or cached["key"] != key:
        calibration = calibration_inputs(state.evaluator.io, settings.precision,
                                         settings.model.latent_distribution)
        with tracked_run(state.cfg, settings.tracking, run_name=f"{state.name}:autotune",
                         tags=state.child_tags("autotune")) as tracker:
            result = run_autotune(state.graph_def, state.space.quantizable, state.evaluator.io,
                                  candidates, calibration,
                                  lambda engine: state.evaluator.physics(engine)[1],
                                  search.physics_tolerance)
            tracker.log_dict(result.as_dict(), "search/autotune.json")
            tracker.log_metrics({"search/autotune/evaluated": len(result.walked)})
        if result.pick is None:
            log.warning("Neural Compressor's autotune returned no model")
            return {}
        pick = next(row for row in rows if kept_by_trial[row.number] == candidates[result.pick])
        cached = {"key": key, "trial": pick.number, "evaluated": len(result.walked)}
        study.set_user_attr("autotune", cached)
    pick = next(row for row in rows if row.number == cached["trial"])
    log.info("Neural Compressor's autotune picks trial %d after %d evaluation(s)", pick.number,
             cached["evaluated"])
    return {"autotune": {"trial": pick.number, "evaluated": cached["evaluated"],
                         "svn": pick.svn, "pixel": pick.pixel, "speed": pick.speed,
                         "throughput": pick.throughput, "latency_ms": pick.latency_ms,
                         **({"speedup": pick.speedup} if pick.speedup is not None else {})}}


def _chosen_stage(state: _Search, selection: Selection, parent: Tracker,
                  with_engine: bool) -> None:
    """The chosen fallback set as JSON and as a precision option (saved as
    conf/precision/<search.save_as>.yaml if asked); unless the search was cut short, its engine
    rebuilt, logged and registered."""
    from calo.precision import build_engine, folder_size

    settings, search, row = state.settings, state.settings.search, selection.row
    calibration = state.study.user_attrs[SETUP_ATTR]["calibration"]
    note = (f"study {state.name}, trial {row.number}: SVN {row.svn:.4g} "
            f"({selection.svn_ratio:.3f} x fp32), pixel {row.pixel:.4g}, "
            f"{row.throughput:.0f} showers/s")
    name = search.save_as or "int8_inc_best"
    parent.log_dict({"trial": row.number, "keep_fp32": list(row.keep_fp32),
                     "reproduce": reproduce_overrides(settings.precision, row.keep_fp32),
                     "sentence": selection.sentence(search)}, "search/chosen.json")
    text = option_text(name, row.keep_fp32, calibration, note)
    parent.log_text(text, f"search/{name}.yaml")
    if search.save_as:
        log.info("wrote %s", save_option(search.save_as, text))
    if not with_engine:
        return
    precision = replace(settings.precision, keep_fp32=list(row.keep_fp32))
    engine = build_engine(state.generator, state.evaluator.io, precision,
                          latent_distribution=settings.model.latent_distribution)
    with tempfile.TemporaryDirectory(prefix="calo-search-chosen-") as folder:
        engine.save(folder)
        parent.log_metrics({"search/chosen/disk_mb": folder_size(folder) / 2**20})
        parent.log_artifacts(folder, "search/chosen_engine")
        _register(state, row, folder, parent)
    if row.keep_fp32:
        _confirm_speed(state, precision, engine, parent)


def _confirm_speed(state: _Search, precision: PrecisionConfig, engine: Engine,
                   parent: Tracker) -> None:
    """The chosen engine against plain int8_inc, side by side in alternating rounds: its share
    of plain int8_inc's speed from one measurement, not from two trials minutes apart."""
    from calo.precision import build_engine

    settings = state.settings
    plain = replace(settings.precision, keep_fp32=[])
    log.info("confirming the chosen point's speed against plain int8_inc, side by side")
    plain_engine = build_engine(state.generator, state.evaluator.io, plain,
                                latent_distribution=settings.model.latent_distribution)
    rounds = max(CONFIRM_ROUNDS, settings.search.bench_rounds)
    ratio = state.evaluator.paired_ratio((precision, engine), (plain, plain_engine), rounds)
    parent.log_metrics({"search/chosen/speed_vs_plain": ratio})
    log.info("chosen point: %.0f %% of plain int8_inc's throughput (median of %d paired "
             "rounds)", 100 * ratio, rounds)


def _register(state: _Search, row: TrialRow, folder: str, parent: Tracker) -> None:
    """Log the chosen engine as a model and register it (search.register_name), unless the
    study registered this trial under that name last time."""
    import numpy as np

    from calo.tracking.engines import log_engine_model

    register_name = state.settings.search.register_name
    registration = {"run": parent.run_id, "trial": row.number, "name": register_name}
    if not (parent.run_id and register_name) or (
            state.study.user_attrs.get("registered") == registration):
        return
    evaluator = state.evaluator
    example = np.hstack([evaluator.latent[:2], evaluator.energy[:2, None]]).astype(np.float32)
    uri = log_engine_model(parent, folder, "chosen_engine", example, register_name)
    log.info("chosen engine logged as %s, registered as %s", uri, register_name)
    state.study.set_user_attr("registered", registration)

