"""Tracking stores: a sqlite database under the project (default) or a tracking server.

Opening a store is the one place where a missing, broken or misnamed store is turned into a
one-line error, and where several processes starting on an empty store are serialised: MLflow
creates and migrates a sqlite database on first use, and two processes doing that at the same
moment leave it half-migrated. The first open of a store in a process also marks the runs whose
owner is gone as KILLED (:mod:`calo.tracking.owner`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from calo.config import TrackingConfig
from calo.errors import CaloError, one_line
from calo.paths import resolve

__all__ = ["artifact_location", "check_server", "configure_store", "open_client",
           "repair_runs", "sqlite_path", "tracking_uri"]

log = logging.getLogger(__name__)

# MLflow retries an unreachable server for minutes by default; a run should fail fast instead.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

SQLITE_PREFIX = "sqlite:///"
_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
_SERVER_SCHEMES = ("http", "https")
_repaired: set[str] = set()  # stores whose orphaned runs this process has already repaired


def tracking_uri(cfg: TrackingConfig) -> str:
    """``cfg.uri`` (a relative sqlite path resolved against the project root, like the
    default store) or ``sqlite:///<root>/<store_dir>/mlflow.db``."""
    if not cfg.uri:
        return f"{SQLITE_PREFIX}{resolve(cfg.store_dir) / 'mlflow.db'}"
    scheme = urlparse(cfg.uri).scheme.split("+")[0]
    if scheme not in (*_DATABASE_SCHEMES, *_SERVER_SCHEMES):
        raise CaloError(f"tracking.uri={cfg.uri}: MLflow cannot store runs at a '{scheme}:' "
                        "address; use sqlite:///path/to.db, http://host:port or "
                        "postgresql://user@host/db")
    if scheme == "sqlite":
        if not cfg.uri.startswith(SQLITE_PREFIX):
            raise CaloError(f"tracking.uri={cfg.uri}: a sqlite store is written "
                            "sqlite:///relative/path.db or sqlite:////absolute/path.db")
        return f"{SQLITE_PREFIX}{resolve(cfg.uri[len(SQLITE_PREFIX):])}"
    return cfg.uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores)."""
    return Path(uri[len(SQLITE_PREFIX):]) if uri.startswith(SQLITE_PREFIX) else None


def artifact_location(cfg: TrackingConfig) -> str | None:
    """A sqlite store keeps its artifacts beside its database; a server chooses its own."""
    database = sqlite_path(tracking_uri(cfg))
    return (database.parent / "artifacts").as_uri() if database else None


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


def _prepare_sqlite(database: Path) -> None:
    """The database's folder exists and the database, if any, is a file."""
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise CaloError(f"cannot create the tracking store {database}: {error.filename} is a "
                        "file, not a folder; move it aside or set tracking.uri") from error
    except OSError as error:
        raise CaloError(f"cannot create the tracking store's folder {database.parent} "
                        f"({error.strerror}): set tracking.uri to a writable place") from error
    if database.exists() and not database.is_file():
        raise CaloError(f"the tracking store {database} is a folder, not a sqlite database: "
                        "move it aside or set tracking.uri")


@contextlib.contextmanager
def _store_lock(database: Path | None) -> Iterator[None]:
    """An inter-process lock on a sqlite store (a file beside it) while it is created,
    migrated and its experiment made; nothing to lock for a server."""
    if database is None:
        yield
        return
    with open(database.with_name(database.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# Programs that take no lock (the MLflow UI, a plain MlflowClient) may be creating the same
# empty store: its tables then appear under our feet, and a second look finds them complete.
STORE_OPEN_ATTEMPTS = 4
STORE_OPEN_WAIT_S = 2.0
_CREATION_RACE = ("already exists", "duplicate column", "database is locked")


def _created_meanwhile(error: Exception) -> bool:
    text = str(error).lower()
    return any(sign in text for sign in _CREATION_RACE)


def open_client(uri: str):
    """An MlflowClient on ``uri``, with the store created (or migrated) under the lock, or a
    CaloError that says what is wrong with the store."""
    import mlflow

    database = sqlite_path(uri)
    if database is not None:
        _prepare_sqlite(database)
    elif urlparse(uri).scheme in _SERVER_SCHEMES:
        check_server(uri)
    mlflow.set_tracking_uri(uri)
    with _store_lock(database):
        for attempt in range(1, STORE_OPEN_ATTEMPTS + 1):
            try:
                client = mlflow.MlflowClient()
                client.search_experiments(max_results=1)  # opens (and creates) the store
                return client
            except Exception as error:  # SQLAlchemy, MLflow and OS errors
                if attempt == STORE_OPEN_ATTEMPTS or not _created_meanwhile(error):
                    raise CaloError(_store_error(uri, database, error)) from error
                log.info("the tracking store %s is being created by another program; "
                         "opening it again", uri)
                time.sleep(STORE_OPEN_WAIT_S)


def _store_error(uri: str, database: Path | None, error: Exception) -> str:
    if database is None:
        return f"cannot open the tracking store {uri} ({one_line(error, 200)}): check tracking.uri"
    return (f"cannot open the tracking store {database} ({one_line(error, 200)}): if it is not "
            "an MLflow database, move it aside (a new one is made); or set tracking.uri")


def configure_store(cfg: TrackingConfig) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns its ID. The first
    time in a process, runs whose owner is gone are marked KILLED."""
    from mlflow.exceptions import MlflowException

    from calo.tracking.owner import repair_orphaned_runs

    uri = tracking_uri(cfg)
    client = open_client(uri)
    if uri not in _repaired:
        _repaired.add(uri)
        repair_orphaned_runs(client)
    with _store_lock(sqlite_path(uri)):
        experiment = client.get_experiment_by_name(cfg.experiment)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(cfg.experiment,
                                            artifact_location=artifact_location(cfg))
        except MlflowException:  # another process (on a server) made it first
            experiment = client.get_experiment_by_name(cfg.experiment)
            if experiment is None:
                raise
            return experiment.experiment_id


def repair_runs(cfg: TrackingConfig) -> list[tuple[str, str]]:
    """Mark the store's runs whose owner is gone as KILLED, now (not only at the first open
    in this process); returns (run ID, reason) pairs."""
    from calo.tracking.owner import repair_orphaned_runs

    return repair_orphaned_runs(open_client(tracking_uri(cfg)))
