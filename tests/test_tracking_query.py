"""Reading runs back for the report: an artifact that cannot be read says why."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import pytest

from calo.tracking.query import read_json_artifact


def test_an_unreadable_json_artifact_is_a_warning_that_says_why(
        store: Path, caplog: pytest.LogCaptureFixture) -> None:
    uri = f"sqlite:///{store / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("query", artifact_location=str(store / "artifacts"))
    run_id = client.create_run(experiment).info.run_id
    client.log_dict(run_id, {"y": [1, 2]}, "physics/shapes.json")
    client.log_text(run_id, "{cut off", "physics/profiles.json")
    with caplog.at_level(logging.WARNING, logger="calo.tracking.query"):
        assert read_json_artifact(uri, run_id, "physics/shapes.json") == {"y": [1, 2]}
        assert not caplog.records
        assert read_json_artifact(uri, run_id, "physics/profile.json") is None
        assert read_json_artifact(uri, run_id, "physics/profiles.json") is None
    absent, damaged = (record.getMessage() for record in caplog.records)
    assert absent == (f"run {run_id}: cannot read physics/profile.json: the run logged no such "
                      "artifact (it has physics/profiles.json, physics/shapes.json)")
    assert damaged.startswith(f"run {run_id}: cannot read physics/profiles.json: not a JSON "
                              "file (Expecting property name")
