"""What the search's result is compared with: other backends measured as the trials are, and
Neural Compressor's own autotune over the study's candidate sets."""

from __future__ import annotations

import hashlib
import json
import logging

from optuna.trial import TrialState

from calo.config import Backend, PrecisionConfig
from calo.errors import CaloError
from calo.search.job import SearchJob
from calo.search.pareto import TrialRow, summarize_study
from calo.tracking import tracked_run

__all__ = ["compare"]

log = logging.getLogger(__name__)


def compare(job: SearchJob) -> dict[str, dict[str, float]]:
    """The points the search is compared with: other backends, Neural Compressor's autotune."""
    summary = summarize_study(job.study, job.settings.search)
    others = _compare_backends(job)
    if job.settings.search.autotune and summary.rows:
        if job.settings.precision.backend is Backend.int8_inc:
            others.update(_autotune_stage(job, summary.rows))
        else:
            log.info("search.autotune is Neural Compressor's: skipped for %s",
                     job.settings.precision.name)
    return others


def _compare_backends(job: SearchJob) -> dict[str, dict[str, float]]:
    """Each ``search.compare_with`` backend measured as a trial is (once per study)."""
    settings, search = job.settings, job.settings.search
    results: dict[str, dict[str, float]] = {}
    for backend in search.compare_with:
        key = f"comparison/{backend.value}"
        if (cached := job.study.user_attrs.get(key)) is not None:
            results[backend.value] = cached
            continue
        # the backend as its own option has it: no node kept, the schema's int8_ov settings
        precision, child_cfg = job.child_precision(name=backend.value, backend=backend,
                                                     keep_fp32=[],
                                                     activations=PrecisionConfig.activations,
                                                     float_dtype=PrecisionConfig.float_dtype,
                                                     fixed_batch_size=search.batch_size)
        log.info("comparison: measuring %s as the trials are measured", backend.value)
        try:
            with tracked_run(child_cfg, settings.tracking,
                             run_name=f"{job.name}:{backend.value}",
                             tags=job.child_tags("comparison"),
                             parent_run_id=job.parent_id) as tracker:
                engine = job.build(precision)
                measurement = job.evaluator.measure(precision, engine)
                tracker.log_metrics(measurement.metrics())
        except CaloError as error:
            log.warning("comparison with %s skipped: %s", backend.value, error)
            continue
        numbers = {**measurement.summary(), "speed": measurement.speed(search.speed)}
        job.study.set_user_attr(key, numbers)
        results[backend.value] = numbers
    return results


def _autotune_stage(job: SearchJob, rows: list[TrialRow]) -> dict[str, dict[str, float]]:
    """Neural Compressor's autotune over the study's fallback sets, in trial order, at most
    as many trials as the study has (once per set of candidates)."""
    from calo.precision.calibration import calibration_inputs
    from calo.precision.frozen import freeze_graph
    from calo.search.autotune import run_autotune

    settings, search, study = job.settings, job.settings.search, job.study
    kept_by_trial = {trial.number: tuple(trial.user_attrs["kept_nodes"])
                     for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    candidates = list(dict.fromkeys(kept_by_trial[row.number] for row in rows))
    key = hashlib.sha256(json.dumps(candidates).encode()).hexdigest()[:16]
    cached = study.user_attrs.get("autotune")
    if cached is None or cached["key"] != key:
        calibration = calibration_inputs(job.evaluator.io, settings.precision,
                                         settings.model.latent_distribution)
        with tracked_run(job.cfg, settings.tracking, run_name=f"{job.name}:autotune",
                         tags=job.child_tags("autotune"),
                         parent_run_id=job.parent_id) as tracker:
            result = run_autotune(freeze_graph(job.graph)[0], job.space.quantizable,
                                  job.evaluator.io, candidates, calibration,
                                  lambda engine: job.evaluator.physics(engine)[1],
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
