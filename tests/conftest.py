"""Shared fixtures: configs composed the way Hydra composes them, a throw-away MLflow store and
data cache per test, small samples of reference showers, and the services of a cluster
started on this machine (PostgreSQL, an MLflow server on it, a one-node SLURM cluster)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from calo.config import ModelConfig
from calo.data import Showers, simulate_reference
from calo.paths import CONFIG_DIR
from calo.precision.inc import has_int8_kernels
from calo.services import MlflowServer, PostgresServer, SlurmCluster

# submitit (imported when Hydra first looks for launcher plugins) calls logging.config.dictConfig
# at import, which closes every logging handler that exists, pytest's own among them: a test
# that composed its first config under capsys then ended with "I/O operation on closed file".
os.environ.setdefault("SUBMITIT_LOG_LEVEL", "NOCONFIG")

# The benchmark (worker processes, seconds of timing) runs only in the tests that ask for it.
TINY = ["model=tiny", "data.n_showers=200", "batch_size=50", "bench.enabled=false"]
# A training of the tiny model on a few showers: one step takes well under a second.
TINY_TRAIN = ["model=tiny", "data.n_showers=120", "train.batch_size=20",
              "train.validation_showers=20", "train.checkpoint_every=3", "train.generator_steps=1"]
# The tiny generator built directly, without composing a run.
TINY_MODEL = ModelConfig(name="tiny", path_filters=[4, 8, 8, 4, 8, 8, 4, 4])
# Neural Compressor's quantizable nodes of the full generator's rewritten graph, in its order.
GENERATOR_NODES = ([("seed_dense/MatMul", "MatMul")]
                   + [(f"{path}{block}_conv/Conv2D", "Conv2D") for path in ("xy", "zx", "yz")
                      for block in range(9)]
                   + [("paths/concat", "ConcatV2"), ("combine_conv/Conv2D", "Conv2D")])
# Neural Compressor's int8 graphs run on TensorFlow's oneDNN int8 kernels, which need AVX-512:
# on an AVX2-only CPU calo refuses int8_inc (calo.precision.inc.require_int8), so the tests that
# build or run one are skipped there, saying why.
needs_int8_kernels = pytest.mark.skipif(
    not has_int8_kernels(), reason="this CPU has no AVX-512: TensorFlow's oneDNN int8 kernels "
    "(precision=int8_inc and its search) cannot run here")


@pytest.fixture(scope="session")
def template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised sqlite MLflow store, made once (it takes seconds) and copied per test."""
    import mlflow

    folder = tmp_path_factory.mktemp("template-store")
    mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
    return folder


@pytest.fixture
def store(template_store: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "mlruns"
    shutil.copytree(template_store, folder)
    return folder


def compose_config(store: Path, cache_dir: Path, *overrides: str,
                   config_name: str = "run") -> DictConfig:
    """Compose a root config with overrides, its MLflow store and data cache in the given
    folders, and make it the current Hydra config (as @hydra.main would)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.tracking.store_dir = str(store)
        if "data" in cfg:
            cfg.data.cache_dir = str(cache_dir)
    return cfg


@pytest.fixture
def compose_run(store: Path, tmp_path: Path) -> Callable[..., DictConfig]:
    """compose_config with the test's own store, and its cache in tmp_path."""

    def _compose(*overrides: str, config_name: str = "run") -> DictConfig:
        return compose_config(store, tmp_path / "cache", *overrides, config_name=config_name)

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def three_steps(template_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of one 3-step tiny training (checkpoint and history), made once: the tests
    that resume, refuse or interrupt a training start from a copy of it."""
    folder = tmp_path_factory.mktemp("three-steps")
    cfg = compose_config(template_store, folder / "cache", *TINY_TRAIN, "train.max_steps=3",
                         "tracking=off", f"train.checkpoint_root={folder / 'ckpt'}",
                         config_name="train")
    from calo.train.loop import train

    return train(cfg).folder


@pytest.fixture
def trained(three_steps: Path, tmp_path: Path) -> Path:
    """A copy of the 3-step training where compose_train's default training (3dgan) lives."""
    folder = tmp_path / "ckpt" / three_steps.name
    shutil.copytree(three_steps, folder)
    return folder


@pytest.fixture(scope="session")
def reference_sample() -> Showers:
    """400 simulated showers, 100-500 GeV."""
    return simulate_reference(400, 100.0, 500.0, seed=7, workers=1, progress=False)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


# Every session's services live under one folder of their own, with the session's process: a
# session killed before its teardown (a timeout, SIGKILL) leaves daemons running, and the next
# session stops them. Directly under /tmp: run as root, PostgreSQL runs as 'postgres', which
# cannot enter pytest's private /tmp/pytest-of-root.
SERVICES_ROOT = Path(tempfile.gettempdir()) / f"calo-test-services-{os.getuid()}"
SESSION_FILE = "session"  # "<pid> <process start time>" of the pytest process


def _session_alive(folder: Path) -> bool:
    try:
        pid, started = (folder / SESSION_FILE).read_text().split()
        return abs(psutil.Process(int(pid)).create_time() - float(started)) < 1.0
    except (OSError, ValueError, psutil.Error):
        return False


def _stop_services(folder: Path) -> None:
    """Stop whatever a session started in ``folder`` (each part only if it is there)."""
    if (folder / "slurm" / "slurm.conf").is_file():
        SlurmCluster(folder / "slurm").stop()
    MlflowServer(folder / "mlflow", "").stop()
    if (folder / "postgres" / "data" / "PG_VERSION").is_file():
        PostgresServer(folder / "postgres").stop()


@pytest.fixture(scope="session")
def services_folder() -> Iterator[Path]:
    """This session's folder for its services; those of sessions that died are stopped first."""
    SERVICES_ROOT.mkdir(mode=0o711, exist_ok=True)
    for folder in SERVICES_ROOT.iterdir():
        if folder.is_dir() and not _session_alive(folder):
            _stop_services(folder)
            shutil.rmtree(folder, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix="session-", dir=SERVICES_ROOT))
    folder.chmod(0o711)
    process = psutil.Process()
    (folder / SESSION_FILE).write_text(f"{process.pid} {process.create_time():.3f}\n")
    try:
        yield folder
    finally:
        _stop_services(folder)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(services_folder: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL server of its own (initdb in a temporary folder, 127.0.0.1 on a free port),
    stopped after the session; skipped only where its programs are missing."""
    missing = PostgresServer.missing()
    if missing:
        pytest.skip(f"PostgreSQL server programs missing: {', '.join(missing)} (Debian: "
                    "apt-get install postgresql; .ci/run installs it)")
    server = PostgresServer(services_folder / "postgres")
    try:
        server.start(fsync=False)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_on_postgres(postgres: PostgresServer, services_folder: Path) -> Iterator[MlflowServer]:
    """``mlflow server`` on the session's PostgreSQL (database ``mlflow``), serving its
    artifacts from its folder."""
    server = MlflowServer(services_folder / "mlflow", postgres.create_database("mlflow"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def slurm_cluster(services_folder: Path) -> Iterator[SlurmCluster]:
    """A one-node SLURM cluster on this machine (MUNGE, MariaDB + slurmdbd, slurmctld,
    slurmd), stopped after the session; skipped only where its programs are missing or this
    is not root (slurmd must be)."""
    reason = SlurmCluster.unavailable()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster(services_folder / "slurm")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
