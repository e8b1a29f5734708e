"""``python -m calo.services start|stop|status [--folder services] [--slurm]`` (``make services``,
``make services-stop``): a PostgreSQL server with the databases ``mlflow`` (MLflow's runs) and
``optuna`` (the searches' studies), an MLflow tracking server on it serving the artifacts from
the same folder, and with ``--slurm`` a one-node SLURM cluster (root only). Data and logs stay in
the folder: ``stop`` then ``start`` again continues with the same runs and studies.

``start`` prints the overrides that send calo's runs and searches there, and writes them with
``SLURM_CONF`` to ``<folder>/env.sh`` (``source services/env.sh``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from calo.cli import exit_on_user_error
from calo.paths import resolve
from calo.services.common import ServiceError, port_open
from calo.services.mlflow_server import MlflowServer
from calo.services.postgres import PostgresServer
from calo.services.slurm import SlurmCluster

STATE = "services.json"


def _servers(folder: Path, state: dict) -> tuple[PostgresServer, MlflowServer]:
    postgres = PostgresServer(folder / "postgres", port=state["postgres_port"])
    mlflow = MlflowServer(folder / "mlflow", postgres.url("mlflow"), port=state["mlflow_port"])
    return postgres, mlflow


def start(folder: Path, pg_port: int, mlflow_port: int, slurm: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / STATE
    state = json.loads(path.read_text()) if path.is_file() else {
        "postgres_port": pg_port, "mlflow_port": mlflow_port}
    postgres, mlflow = _servers(folder, state)
    missing = PostgresServer.missing()
    if missing:
        raise ServiceError(f"PostgreSQL programs missing: {', '.join(missing)} (Debian: "
                           "apt-get install postgresql)")
    if not postgres.running() and port_open(postgres.port):
        raise ServiceError(f"port {postgres.port} is taken: choose another with --pg-port")
    postgres.start()
    state["tracking_backend"] = postgres.create_database("mlflow")
    state["search_storage"] = postgres.create_database("optuna")
    if not mlflow.running() and port_open(mlflow.port):
        raise ServiceError(f"port {mlflow.port} is taken: choose another with --mlflow-port")
    mlflow.start()
    state["tracking_uri"] = mlflow.uri
    if slurm:
        cluster = SlurmCluster(folder / "slurm")
        if not cluster.running():
            cluster.start()
        state["slurm_conf"] = str(cluster.conf)
    path.write_text(json.dumps(state, indent=1) + "\n")
    exports = {"CALO_TRACKING_URI": state["tracking_uri"],
               "CALO_SEARCH_STORAGE": state["search_storage"]}
    if "slurm_conf" in state:
        exports["SLURM_CONF"] = state["slurm_conf"]
    (folder / "env.sh").write_text("".join(f"export {k}={v}\n" for k, v in exports.items()))
    print(f"PostgreSQL   {postgres.url('<database>', 'postgresql')} (log {postgres.log})")
    print(f"MLflow       {mlflow.uri} on {state['tracking_backend']}, artifacts in "
          f"{mlflow.artifacts} (log {mlflow.log})")
    if "slurm_conf" in state:
        print(f"SLURM        export SLURM_CONF={state['slurm_conf']}")
    print(f"\nrun against them:  tracking=server tracking.uri={state['tracking_uri']} "
          f"search.storage={state['search_storage']}")
    print(f"(the same as shell variables: source {folder / 'env.sh'})\nstop them: "
          f"python -m calo.services stop --folder {folder} (make services-stop)")


def _started(folder: Path) -> dict | None:
    """What ``start`` recorded in ``folder``; None (and a line saying so) if nothing."""
    path = folder / STATE
    if not path.is_file():
        print(f"nothing started in {folder}")
        return None
    return json.loads(path.read_text())


def stop(folder: Path) -> None:
    state = _started(folder)
    if state is None:
        return
    postgres, mlflow = _servers(folder, state)
    if "slurm_conf" in state:
        SlurmCluster(folder / "slurm").stop()
        state.pop("slurm_conf")
    mlflow.stop()
    postgres.stop()
    (folder / STATE).write_text(json.dumps(state, indent=1) + "\n")
    print(f"stopped; data kept in {folder}")


def status(folder: Path) -> None:
    state = _started(folder)
    if state is None:
        return
    postgres, mlflow = _servers(folder, state)
    print(f"PostgreSQL   {'running' if postgres.running() else 'stopped'} on port {postgres.port}")
    print(f"MLflow       {'running' if mlflow.healthy() else 'stopped'} at {mlflow.uri}")
    if "slurm_conf" in state:
        cluster = SlurmCluster(folder / "slurm")
        print(f"SLURM        {'running' if cluster.running() else 'stopped'}: "
              f"SLURM_CONF={cluster.conf}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m calo.services", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--folder", default="services",
                        help="where data, logs and PID files live (default: services/ under "
                             "the project)")
    parser.add_argument("--pg-port", type=int, default=5433, help="PostgreSQL's port (5433)")
    parser.add_argument("--mlflow-port", type=int, default=5000, help="MLflow's port (5000)")
    parser.add_argument("--slurm", action="store_true",
                        help="also a one-node SLURM cluster (root only)")
    arguments = parser.parse_args()
    folder = resolve(arguments.folder)
    if arguments.command == "start":
        exit_on_user_error(start, folder, arguments.pg_port, arguments.mlflow_port,
                           arguments.slurm)
    elif arguments.command == "stop":
        exit_on_user_error(stop, folder)
    else:
        exit_on_user_error(status, folder)


if __name__ == "__main__":
    main()
