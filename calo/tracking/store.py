"""Tracking stores: a sqlite database under the project (default) or a tracking server."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from urllib.parse import urlparse

from calo.config import TrackingConfig
from calo.errors import CaloError
from calo.paths import resolve

__all__ = ["artifact_location", "check_server", "configure_store", "tracking_uri"]

# MLflow retries an unreachable server for minutes by default; a run should fail fast instead.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


def tracking_uri(cfg: TrackingConfig) -> str:
    """``cfg.uri`` or ``sqlite:///<root>/<store_dir>/mlflow.db``."""
    if cfg.uri:
        return cfg.uri
    return f"sqlite:///{resolve(cfg.store_dir) / 'mlflow.db'}"


def artifact_location(cfg: TrackingConfig) -> str | None:
    """Artifacts of the local store live beside its database; a server chooses its own."""
    return None if cfg.uri else (resolve(cfg.store_dir) / "artifacts").as_uri()


def check_server(uri: str) -> None:
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5) as response:
            response.read()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise CaloError(
            f"cannot reach the MLflow tracking server at {uri} ({reason}): start it "
            "(mlflow server --host 127.0.0.1) or set tracking.uri"
        ) from error


def configure_store(cfg: TrackingConfig) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns its ID."""
    import mlflow

    uri = tracking_uri(cfg)
    if urlparse(uri).scheme in ("http", "https"):
        check_server(uri)
    else:
        resolve(cfg.store_dir).mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(cfg.experiment)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(cfg.experiment, artifact_location=artifact_location(cfg))
