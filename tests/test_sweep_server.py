"""tracking=server: a sweep and its report against a locally started MLflow tracking server
(sqlite backend, artifacts served by the server, 127.0.0.1 on a free port)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from calo.report.__main__ import main as report_main

from .test_sweep import runs_of, sweep

SERVER_START_SECONDS = 120


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """``mlflow server`` on a sqlite database in tmp_path; yields its URI."""
    folder = tmp_path / "server"
    folder.mkdir()
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "mlflow"), "server",
               "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
               "--artifacts-destination", str(folder / "artifacts"),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = (folder / "server.log").open("w")
    # The server's job runner (GenAI evaluation jobs, seven worker processes) is not needed
    # for tracking and would double the start-up time on a small machine.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(command, cwd=folder, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while not _healthy(uri):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("mlflow server did not start: "
                            + (folder / "server.log").read_text()[-2000:])
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


def test_sweep_and_report_on_a_tracking_server(mlflow_server: str, tmp_path: Path,
                                               capsys) -> None:
    result = sweep(tmp_path, "tracking=server", f"tracking.uri={mlflow_server}",
                   "precision=fp32")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = runs_of(mlflow_server)
    (parent,) = [run for run in runs if run.data.tags.get("sweep/role") == "parent"]
    (child,) = [run for run in runs if run is not parent]
    assert parent.info.status == child.info.status == "FINISHED"
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.metrics["physics/reference/z_mean"] > 0
    assert not (tmp_path / "mlruns").exists()  # nothing went to a local store

    report_main(["--tracking-uri", mlflow_server, "--out", str(tmp_path / "report")])
    capsys.readouterr()
    page = (tmp_path / "report" / "report.md").read_text()
    assert f"sweep parent run {parent.info.run_id} (FINISHED)" in page
    assert f"{mlflow_server}/#/experiments/" in page  # run links point at the server's UI
    assert (tmp_path / "report" / "figure5.png").is_file()  # profiles read through the server
    logged = {a.path for a in mlflow.MlflowClient(mlflow_server).list_artifacts(
        parent.info.run_id, "report")}
    assert "report/report.html" in logged
