"""Services for running calo past one machine, started on this one: a PostgreSQL server, an
MLflow tracking server on it, and a one-node SLURM cluster (``python -m calo.services``,
``make services``; the tests start the same ones)."""

from calo.services.common import ServiceError
from calo.services.mlflow_server import MlflowServer
from calo.services.postgres import PostgresServer
from calo.services.slurm import SlurmCluster

__all__ = ["MlflowServer", "PostgresServer", "ServiceError", "SlurmCluster"]
