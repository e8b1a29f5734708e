"""``mlflow server`` on a database backend (PostgreSQL for a team) with the artifacts it serves
itself (``--artifacts-destination``), started in the background with its PID and log in a folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from calo.services.common import ServiceError, free_port, pid_from_file, stop_pid, wait_for

__all__ = ["MlflowServer"]

START_SECONDS = 180  # a new PostgreSQL store runs MLflow's migrations first


class MlflowServer:
    def __init__(self, folder: Path, backend_uri: str, port: int | None = None,
                 artifacts: Path | None = None) -> None:
        self.folder = Path(folder).resolve()
        self.backend_uri = backend_uri
        self.port = port or free_port()
        self.artifacts = Path(artifacts or self.folder / "artifacts").resolve()
        self.log = self.folder / "mlflow.log"
        self.pid_file = self.folder / "mlflow.pid"

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def running(self) -> bool:
        return pid_from_file(self.pid_file) is not None

    def start(self) -> None:
        if self.running() and self.healthy():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "mlflow", "server",
                   "--backend-store-uri", self.backend_uri,
                   "--artifacts-destination", str(self.artifacts),
                   "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        # MLflow 3's job runner (GenAI evaluation jobs, seven processes) is not used by tracking
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with self.log.open("a") as log:
            server = subprocess.Popen(command, cwd=self.folder, env=env, stdout=log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        self.pid_file.write_text(f"{server.pid}\n")
        try:
            wait_for(self.healthy, START_SECONDS, f"mlflow server on port {self.port}",
                     self.log, server)
        except ServiceError:
            self.stop()
            raise

    def stop(self) -> None:
        stop_pid(self.pid_file, group=True)
        self.pid_file.unlink(missing_ok=True)
