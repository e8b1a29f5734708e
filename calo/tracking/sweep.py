"""A Hydra multirun as one MLflow sweep: a parent run, and every job's run tagged as its child
(``mlflow.parentRunId``), so the MLflow UI nests the jobs under the parent and its compare view
shows them together.

The parent is created by the process that launches the jobs; the jobs, possibly in other
processes or on other machines, find it in a small record file in Hydra's sweep folder (a
shared file system is what every Hydra launcher assumes already).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from calo.config import TrackingConfig
from calo.errors import one_line
from calo.hw import detect_machine
from calo.tracking.store import configure_store, tracking_uri
from calo.tracking.tags import PARENT_TAG, git_tags

__all__ = [
    "SWEEP_RECORD",
    "SweepRecord",
    "child_statuses",
    "end_interrupted_sweep",
    "finish_sweep",
    "log_to_run",
    "read_sweep_record",
    "record_failed_job",
    "start_sweep",
    "sweep_job_tags",
]

log = logging.getLogger(__name__)

SWEEP_RECORD = "mlflow_sweep.json"  # in the sweep folder: which parent run the jobs belong to


@dataclass(frozen=True)
class SweepRecord:
    """What a job needs to join its sweep."""

    parent_run_id: str
    name: str
    tracking_uri: str
    experiment: str
    experiment_id: str


def start_sweep(tracking: TrackingConfig, name: str, sweep_dir: Path,
                tags: Mapping[str, str]) -> SweepRecord:
    """Create the parent run (status RUNNING) and write the record the jobs read."""
    import mlflow

    experiment_id = configure_store(tracking)
    client = mlflow.MlflowClient()
    from calo.tracking.owner import owner_tags

    run = client.create_run(
        experiment_id, run_name=f"sweep:{name}",
        tags={**detect_machine().as_tags(), **git_tags(), **owner_tags(), **tags,
              "sweep/role": "parent", "sweep/name": name})
    record = SweepRecord(run.info.run_id, name, tracking_uri(tracking), tracking.experiment,
                         experiment_id)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / SWEEP_RECORD).write_text(json.dumps(asdict(record), indent=1))
    log.info("sweep %s: parent MLflow run %s in %s", name, record.parent_run_id,
             record.tracking_uri)
    return record


def read_sweep_record(sweep_dir: Path) -> SweepRecord | None:
    path = sweep_dir / SWEEP_RECORD
    if not path.is_file():
        return None
    return SweepRecord(**json.loads(path.read_text()))


def _job_sweep(tracking: TrackingConfig) -> SweepRecord | None:
    """The sweep of the current multirun job, if it records to the same store and experiment."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    record = read_sweep_record(Path(HydraConfig.get().sweep.dir))
    if record is None or not tracking.enabled:
        return None
    if (record.tracking_uri, record.experiment) != (tracking_uri(tracking), tracking.experiment):
        log.warning("this job records to %s (experiment %s), its sweep to %s (experiment %s): "
                    "not grouped under sweep %s", tracking_uri(tracking), tracking.experiment,
                    record.tracking_uri, record.experiment, record.name)
        return None
    return record


def sweep_job_tags(tracking: TrackingConfig) -> dict[str, str]:
    """Tags that make a multirun job's run a child of its sweep's parent run; empty outside a
    tracked multirun, or when the job records to another store or experiment than its sweep."""
    record = _job_sweep(tracking)
    return {} if record is None else _job_tags(record)


def _job_tags(record: SweepRecord) -> dict[str, str]:
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    return {PARENT_TAG: record.parent_run_id, "sweep/role": "job", "sweep/name": record.name,
            "sweep/job": str(hydra_cfg.job.num),
            "sweep/overrides": " ".join(hydra_cfg.overrides.task) or "(none)"}


def record_failed_job(tracking: TrackingConfig, error: BaseException) -> str | None:
    """Give a sweep job that failed before its run started a FAILED run with the error, so the
    sweep's runs account for every job; returns its ID (None outside a tracked sweep, or when
    the job's run exists already)."""
    import mlflow

    record = _job_sweep(tracking)
    if record is None:
        return None
    tags = _job_tags(record)
    client = mlflow.MlflowClient(record.tracking_uri)
    existing = client.search_runs(
        [record.experiment_id],
        f"tags.`{PARENT_TAG}` = '{record.parent_run_id}' "
        f"and tags.`sweep/job` = '{tags['sweep/job']}'")
    if existing:
        return None
    message = one_line(error, 5000)
    run = client.create_run(record.experiment_id,
                            run_name=f"job {tags['sweep/job']} (failed before its run)",
                            tags={**detect_machine().as_tags(), **tags, "error": message})
    client.set_terminated(run.info.run_id, "FAILED")
    return run.info.run_id


def child_statuses(record: SweepRecord) -> Counter[str]:
    """How many of the sweep's runs ended in each status (FINISHED, FAILED, ...)."""
    import mlflow

    client = mlflow.MlflowClient(record.tracking_uri)
    runs = client.search_runs([record.experiment_id],
                              f"tags.`{PARENT_TAG}` = '{record.parent_run_id}'",
                              max_results=10_000)
    return Counter(run.info.status for run in runs)


def finish_sweep(record: SweepRecord, statuses: Counter[str], note: str | None = None,
                 status: str | None = None) -> str:
    """End the parent run (by default FINISHED when every job's run finished, else FAILED);
    returns its status."""
    import mlflow

    client = mlflow.MlflowClient(record.tracking_uri)
    total = sum(statuses.values())
    if status is None:
        status = "FINISHED" if total and statuses["FINISHED"] == total else "FAILED"
    for key, value in {"sweep/jobs": total, "sweep/finished_jobs": statuses["FINISHED"],
                       "sweep/failed_jobs": total - statuses["FINISHED"]}.items():
        client.log_metric(record.parent_run_id, key, value)
    if note:
        client.set_tag(record.parent_run_id, "error", note)
    client.set_terminated(record.parent_run_id, status)
    return status


def end_interrupted_sweep(record: SweepRecord, reason: str) -> None:
    """A sweep stopped by Ctrl-C or SIGTERM: its jobs' runs that their ended processes left
    RUNNING become KILLED (tagged ``calo/repaired``), then the parent is KILLED too."""
    import mlflow

    from calo.tracking.owner import repair_orphaned_runs

    repair_orphaned_runs(mlflow.MlflowClient(record.tracking_uri), [record.experiment_id])
    finish_sweep(record, child_statuses(record), note=f"the sweep was interrupted ({reason})",
                 status="KILLED")


def log_to_run(uri: str, run_id: str, folder: Path, artifact_path: str,
               tags: Mapping[str, Any] | None = None) -> None:
    """Log the files of ``folder`` as artifacts of an existing (possibly ended) run."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    client.log_artifacts(run_id, str(folder), artifact_path)
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, str(value))
