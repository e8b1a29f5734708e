"""What the tracking layer guarantees: registered models are read as weights (a pickle in one is
refused, never run), stores open safely (several first runs at once, broken stores as one-line
errors), and no run stays RUNNING after its process is terminated or killed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import psutil
import pytest

from calo.config import TrackingConfig
from calo.errors import CaloError
from calo.model.generator import build_generator
from calo.model.weights import load_weights
from calo.tracking.owner import REPAIRED, orphan_reason, owner_tags, repair_orphaned_runs
from calo.tracking.store import configure_store, open_client, tracking_uri

from .conftest import TINY, TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]


class _RunsCode:
    """Unpickling this writes a file: the proof that a loader ran code from the store."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def _register_with_pickle(store: Path, name: str, payload: object) -> str:
    """A generator registered with a custom object, which MLflow stores as a pickle."""
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    mlflow.set_experiment("registry-test")
    with mlflow.start_run():
        mlflow.tensorflow.log_model(build_generator(TINY_MODEL), name="generator",
                                    registered_model_name=name,
                                    custom_objects={"payload": payload})
    return f"models:/{name}/1"


def test_registered_weights_load_without_mlflow_loader(store: Path) -> None:
    import calo.model.discriminator  # noqa: F401  (registers EcalSum: a global custom object)
    from calo.tracking import Tracker

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    mlflow.set_experiment("registry-test")
    with mlflow.start_run() as run:  # as a training registers its generator
        Tracker(run.info.run_id).log_keras_model(build_generator(TINY_MODEL), "generator",
                                                 np.zeros((2, 200), np.float32), "plain")
    uri = "models:/plain/1"
    model = build_generator(TINY_MODEL)
    load_weights(model, uri, "generator")
    reference = mlflow.tensorflow.load_model(uri)
    for ours, theirs in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(ours, theirs)


def test_registered_model_with_a_pickle_is_refused_and_not_run(store: Path,
                                                               tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    uri = _register_with_pickle(store, "evil", _RunsCode(marker))
    marker.unlink(missing_ok=True)  # MLflow itself loads the pickle once while logging
    with pytest.raises(CaloError, match=r"holds a pickle \(.*cloudpickle\)"):
        load_weights(build_generator(TINY_MODEL), uri, "generator")
    assert not marker.exists()


def test_store_failures_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "mlflow.db").write_bytes(os.urandom(4096))
    (tmp_path / "folder" / "mlflow.db").mkdir(parents=True)
    cases = {
        f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}": "is a file, not a folder",
        f"sqlite:///{tmp_path / 'garbage' / 'mlflow.db'}": "move it aside",
        f"sqlite:///{tmp_path / 'folder' / 'mlflow.db'}": "is a folder",
        "foo://bar": "cannot store runs at a 'foo:' address",
    }
    for uri, message in cases.items():
        with pytest.raises(CaloError, match=message):
            configure_store(TrackingConfig(name="t", uri=uri, experiment="e"))


def test_relative_sqlite_uri_resolves_against_the_project_root() -> None:
    uri = tracking_uri(TrackingConfig(name="t", uri="sqlite:///x/y.db"))
    assert uri == f"sqlite:///{ROOT / 'x' / 'y.db'}"


def test_four_first_runs_at_once_on_an_empty_store(tmp_path: Path) -> None:
    store = tmp_path / "empty-store"
    command = [sys.executable, "-m", "calo.run", *TINY, "data.n_showers=60", "batch_size=30",
               "physics.figures=false", f"tracking.store_dir={store}",
               f"data.cache_dir={tmp_path / 'cache'}"]
    # the reference cache first, so that the four runs race on the store, not the simulation
    subprocess.run([*command, "tracking=off", f"hydra.run.dir={tmp_path / 'h0'}"], check=True,
                   capture_output=True, timeout=600)
    runs = [subprocess.Popen([*command, f"hydra.run.dir={tmp_path / f'h{i + 1}'}"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(4)]
    outputs = [run.communicate(timeout=900) for run in runs]
    for run, (_, err) in zip(runs, outputs):
        assert run.returncode == 0, err[-2000:]
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    finished = client.search_runs([client.get_experiment_by_name("calo").experiment_id])
    assert sorted(r.info.status for r in finished) == ["FINISHED"] * 4


def test_a_store_another_program_creates_meanwhile_opens(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Programs that take no lock (the MLflow UI, a plain MlflowClient) may create the same
    empty store at the same moment, and MLflow's first look then fails on a table that appeared
    under its feet: calo looks again once they are done instead of failing the run."""
    import sqlalchemy.exc

    from calo.tracking import store as tracking_store

    search = mlflow.MlflowClient.search_experiments
    calls = []

    def created_meanwhile(client, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise sqlalchemy.exc.OperationalError("CREATE TABLE experiments", {},
                                                  Exception("table experiments already exists"))
        return search(client, *args, **kwargs)

    monkeypatch.setattr(mlflow.MlflowClient, "search_experiments", created_meanwhile)
    monkeypatch.setattr(tracking_store, "STORE_OPEN_WAIT_S", 0.0)
    client = open_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(calls) == 2  # the failed first look and the second
    assert [experiment.name for experiment in client.search_experiments()] == ["Default"]


def _start_long_run(store: Path, tmp_path: Path) -> subprocess.Popen:
    """A calo.run that waits in its physics stage long enough to be killed in it."""
    command = [sys.executable, "-m", "calo.run", *TINY, "data.n_showers=5000", "batch_size=30",
               f"tracking.store_dir={store}", f"data.cache_dir={tmp_path / 'cache'}",
               f"hydra.run.dir={tmp_path / 'hydra'}"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for_running_run(client: mlflow.MlflowClient, deadline_s: float = 300):
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        experiment = client.get_experiment_by_name("calo")
        if experiment is not None:
            runs = client.search_runs([experiment.experiment_id], "attributes.status='RUNNING'")
            if runs:
                return runs[0]
        time.sleep(1)
    raise AssertionError("no RUNNING run appeared")


@pytest.mark.parametrize("kill", [signal.SIGTERM, signal.SIGKILL])
def test_no_run_left_running_after_a_kill(kill: signal.Signals, store: Path,
                                          tmp_path: Path) -> None:
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    process = _start_long_run(store, tmp_path)
    run = _wait_for_running_run(client)
    process.send_signal(kill)
    _, err = process.communicate(timeout=120)
    if kill == signal.SIGTERM:
        assert process.returncode == 130 and "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith("interrupted (signal SIGTERM)")
    if kill == signal.SIGKILL:  # nothing ran in the killed process: the next entry point repairs
        assert client.get_run(run.info.run_id).info.status == "RUNNING"
        result = subprocess.run([sys.executable, "-m", "calo.tracking", "repair", "--uri",
                                 f"sqlite:///{store / 'mlflow.db'}"], capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert f"{run.info.run_id}: KILLED" in result.stdout
    ended = client.get_run(run.info.run_id)
    assert ended.info.status == "KILLED"
    assert (REPAIRED in ended.data.tags) == (kill == signal.SIGKILL)


def _processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.environ().get("CALO_TEST_MARKER") == marker:
                found.append(process)
    return found


def test_a_terminated_parallel_sweep_ends_its_workers_and_runs(store: Path,
                                                              tmp_path: Path) -> None:
    """SIGTERM reaches the sweep's parent process only: it ends the joblib workers, and the
    parent run and every job's run end KILLED (they all stayed RUNNING, the workers ran on).
    The store is made before the sweep starts: this test's own client must not create its tables
    while the sweep does (it takes no lock, as any MLflow client)."""
    marker = str(tmp_path)
    command = [sys.executable, "-m", "calo.run", "-m", *TINY, "data.n_showers=3000",
               "physics.figures=false", f"tracking.store_dir={store}",
               f"data.cache_dir={tmp_path / 'c'}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
               "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "precision=fp32,fp16_tflite"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "CALO_TEST_MARKER": marker})
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    deadline = time.monotonic() + 300
    while len(_running(client)) < 3:  # the parent and both jobs
        if process.poll() is not None:
            err = process.stderr.read()
            raise AssertionError(f"the sweep ended before its jobs started: {err[-3000:]}")
        assert time.monotonic() < deadline, "the jobs never started"
        time.sleep(1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("interrupted (signal SIGTERM)")
    runs = client.search_runs([client.get_experiment_by_name("calo").experiment_id])
    assert len(runs) == 3 and {run.info.status for run in runs} == {"KILLED"}
    assert not _processes_with(marker)


def _running(client: mlflow.MlflowClient) -> list:
    experiment = client.get_experiment_by_name("calo")
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], "attributes.status='RUNNING'")


def test_orphan_rules(store: Path) -> None:
    mine = owner_tags()
    assert orphan_reason(mine) is None  # this process is alive
    assert orphan_reason({}) is None  # no owner recorded: not ours to judge
    gone = {**mine, "calo/owner": "host:999999999"}
    assert "has ended" in orphan_reason(gone)
    elsewhere = {**mine, "calo/owner_machine": "another-machine"}
    assert orphan_reason(elsewhere) is None  # fresh heartbeat
    assert "no heartbeat" in orphan_reason(elsewhere, now=time.time() + 3600)

    client = open_client(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.create_experiment("orphans")
    alive = client.create_run(experiment, tags=mine).info.run_id
    dead = client.create_run(experiment, tags=gone).info.run_id
    untagged = client.create_run(experiment).info.run_id
    assert [run_id for run_id, _ in repair_orphaned_runs(client)] == [dead]
    statuses = {r: client.get_run(r).info.status for r in (alive, dead, untagged)}
    assert statuses == {alive: "RUNNING", dead: "KILLED", untagged: "RUNNING"}


def test_a_registered_engine_loads_as_data_and_a_pickle_in_it_is_refused(store: Path,
                                                                       tmp_path: Path) -> None:
    from calo.config import Backend, PrecisionConfig
    from calo.model.io import NetworkIO
    from calo.precision import build_engine, load_engine
    from calo.precision.pyfunc import log_engine_model
    from calo.tracking import Tracker

    io = NetworkIO()
    engine = build_engine(build_generator(TINY_MODEL), io,
                          PrecisionConfig(name="fp32", backend=Backend.fp32))
    clean = engine.save(tmp_path / "clean")
    dirty = engine.save(tmp_path / "dirty")
    (dirty / "extra.pkl").write_bytes(b"\x80\x04N.")
    example = np.zeros((2, io.latent_dim + 1), np.float32)
    example[:, -1] = 200.0
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    mlflow.set_experiment("engines")
    with mlflow.start_run() as run:
        tracker = Tracker(run.info.run_id)
        log_engine_model(tracker, clean, "clean", example, "engine-clean")
        log_engine_model(tracker, dirty, "dirty", example, "engine-dirty")
    loaded = load_engine("models:/engine-clean/1")
    network_input = io.network_input(np.ones((2, io.latent_dim)), np.full(2, 200.0))
    np.testing.assert_array_equal(loaded.predict(network_input), engine.predict(network_input))
    with pytest.raises(CaloError, match=r"holds a pickle \(.*extra\.pkl\)"):
        load_engine("models:/engine-dirty/1")
