"""Reading tracked runs back: the runs of one sweep, as plain records, for the report.

Nothing here raises for a store that is unreachable, an experiment or sweep that does not
exist or a run without some metric: what could not be read is listed in ``problems``, in
words a reader can act on, and the rest is returned.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from calo.config import TrackingConfig
from calo.errors import CaloError, one_line
from calo.tracking.store import check_server, configure_store
from calo.tracking.tags import PARENT_TAG

__all__ = ["RunRecord", "SweepRuns", "load_sweep", "read_artifact", "read_json_artifact",
           "run_exists", "run_record"]

log = logging.getLogger(__name__)

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one per artifact read


@dataclass(frozen=True)
class RunRecord:
    """One MLflow run: what the report reads of it."""

    run_id: str
    name: str
    status: str
    start_time: int  # ms since the epoch
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, float]

    @property
    def error(self) -> str | None:
        return self.tags.get("error")


@dataclass
class SweepRuns:
    """A sweep's parent run and its jobs' runs (oldest first), or what kept them from being
    read."""

    tracking_uri: str
    experiment: str
    experiment_id: str | None = None
    parent: RunRecord | None = None
    runs: list[RunRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def run_record(run: Any) -> RunRecord:
    return RunRecord(run.info.run_id, run.info.run_name or "", run.info.status,
                     run.info.start_time or 0, dict(run.data.params), dict(run.data.tags),
                     dict(run.data.metrics))




def _reachable(uri: str) -> str | None:
    """Why the store at ``uri`` cannot be read, or None. A missing sqlite file is reported,
    not created."""
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        try:
            check_server(uri)
        except CaloError as error:
            return str(error)
    elif scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            return f"no MLflow store at {path} (nothing has been tracked there yet)"
    return None


def load_sweep(uri: str, experiment: str, sweep: str = "latest") -> SweepRuns:
    """The runs of ``sweep`` in ``experiment``: ``latest`` (the newest sweep there), a parent
    run ID, or a sweep name (its newest sweep). Any parent run works, ``make bench``'s too."""
    result = SweepRuns(uri, experiment)
    problem = _reachable(uri)
    if problem:
        result.problems.append(problem)
        return result
    import mlflow

    client = mlflow.MlflowClient(uri)
    try:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            result.problems.append(f"no experiment named {experiment!r} in {uri}")
            return result
        result.experiment_id = found.experiment_id
        parent = _find_parent(client, found.experiment_id, sweep)
        if parent is None:
            what = "no sweep" if sweep == "latest" else f"no sweep {sweep!r}"
            result.problems.append(f"{what} in experiment {experiment!r}: run one with "
                                   "python -m calo.run -m ... or +experiment=...")
            return result
        result.parent = run_record(parent)
        children = client.search_runs([found.experiment_id],
                                      f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'",
                                      max_results=10_000, order_by=["attributes.start_time ASC"])
    except Exception as error:  # MLflow raises many types for a broken store
        result.problems.append(f"cannot read {uri}: {one_line(error, 300)}")
        return result
    result.runs = [run_record(run) for run in children]
    if not result.runs:
        result.problems.append(f"sweep {result.parent.name} ({parent.info.run_id}) has no runs")
    return result


def _find_parent(client: Any, experiment_id: str, sweep: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    if sweep != "latest":
        try:
            run = client.get_run(sweep)
        except MlflowException:
            run = None
        if run is not None and run.info.experiment_id == experiment_id:
            return run
    query = "tags.`sweep/role` = 'parent'"
    if sweep != "latest":
        query += f" and tags.`sweep/name` = '{sweep}'"
    newest = client.search_runs([experiment_id], query, max_results=1,
                                order_by=["attributes.start_time DESC"])
    return newest[0] if newest else None


def read_artifact(uri: str, run_id: str, path: str) -> bytes | None:
    """The bytes of a run's artifact, or None when it cannot be read. Why not is logged at
    WARNING (what is drawn from it leaves the run out): the run logged no such artifact, or
    the store could not give it."""
    import mlflow

    with tempfile.TemporaryDirectory() as folder:
        try:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path,
                                                        dst_path=folder, tracking_uri=uri)
        except Exception as error:  # MLflow raises many types for an absent artifact
            log.warning("run %s: cannot read %s: %s", run_id, path,
                        _missing_reason(uri, run_id, path, error))
            return None
        return Path(local).read_bytes()


def read_json_artifact(uri: str, run_id: str, path: str) -> dict[str, Any] | None:
    """A JSON artifact of a run, or None when it cannot be read (:func:`read_artifact`), or
    is not JSON (logged at WARNING too)."""
    data = read_artifact(uri, run_id, path)
    if data is None:
        return None
    try:
        return json.loads(data.decode())
    except ValueError as error:  # json.JSONDecodeError and UnicodeDecodeError are ones
        log.warning("run %s: cannot read %s: not a JSON file (%s)", run_id, path,
                    one_line(error, 200))
        return None


def _missing_reason(uri: str, run_id: str, path: str, error: Exception) -> str:
    """Why the store did not give ``path`` of a run, in words: absent, or its error."""
    try:
        import mlflow

        parent = os.path.dirname(path) or None
        listed = {item.path for item in mlflow.MlflowClient(uri).list_artifacts(run_id, parent)}
    except Exception as listing:  # the store itself is unreadable: say what it answered
        return f"the store cannot list the run's artifacts ({one_line(listing, 200)})"
    if path not in listed:
        near = sorted(listed)
        return "the run logged no such artifact" + (
            f" (it has {', '.join(near[:5])}{', ...' if len(near) > 5 else ''})" if near else "")
    return one_line(error, 300)


def run_exists(tracking: TrackingConfig, run_id: str) -> bool:
    """Whether the store holds the run ``run_id`` (a study may outlive the store it was
    first tracked in)."""
    import mlflow

    if not tracking.enabled:
        return False
    configure_store(tracking)
    try:
        mlflow.MlflowClient().get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return False
    return True
