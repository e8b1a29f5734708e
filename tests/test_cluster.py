"""Past one machine, with the real programs: a PostgreSQL server, an MLflow tracking server on
it, and a one-node SLURM cluster (slurmctld + slurmd, accounting through slurmdbd), all started
on this machine by the session's fixtures (tests/conftest.py, calo.services).

- tracking=server on PostgreSQL: a registered generator, a sweep that loads it, the report;
- the search's study on PostgreSQL: two workers started at once share it, a worker killed with
  SIGKILL has its trial failed by the heartbeat and run again by the other;
- SLURM: a sweep through hydra/launcher=calo_slurm (submitit -> sbatch), a search whose workers
  are the tasks of a job array, a job cancelled with scancel (its run ends KILLED), and one
  training as a job of two tasks (TF_CONFIG from SLURM's environment) that matches one process.

Kept small (tiny models, few showers, few trials): `pytest -m cluster` runs just these.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from calo.config import to_settings
from calo.paths import PROJECT_ROOT
from calo.report.__main__ import main as report_main
from calo.services import MlflowServer, PostgresServer, SlurmCluster
from calo.train.checkpoint import latest_checkpoint
from calo.train.distribute import slurm_tf_config

from .conftest import TINY, TINY_MODEL, needs_int8_kernels
from .test_search_run import QUICK
from .test_train import _assert_same_training, _train_command, checkpoint_arrays

pytestmark = [pytest.mark.cluster,
              pytest.mark.filterwarnings("ignore:.*binned physics metrics will be noisy",
                                         "ignore::optuna.exceptions.ExperimentalWarning")]

SEARCH = [*QUICK, "search.speed=latency"]
SLURM_SWEEP = ["hydra/launcher=calo_slurm", "hydra.launcher.cpus_per_task=1",
               "hydra.launcher.mem_gb=null", "hydra.launcher.timeout_min=20",
               # physics only: the jobs may share the node (speed sweeps keep --exclusive)
               "~hydra.launcher.additional_parameters.exclusive"]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CALO_PYTHON": sys.executable, **extra}
    env.pop("TF_CONFIG", None)
    return env


def _server(tracking: MlflowServer, experiment: str) -> list[str]:
    return ["tracking=server", f"tracking.uri={tracking.uri}", f"tracking.experiment={experiment}"]


def _runs(uri: str, experiment: str) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def _wait(check: Callable[[], object], seconds: float, what: str) -> object:
    deadline = time.monotonic() + seconds
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {seconds:.0f} s")
        time.sleep(0.5)
    return value


def _calo_run(tmp_path: Path, *overrides: str, multirun: bool = False,
              run_dir: str = "run", program: str = "calo.run") -> list[str]:
    return [sys.executable, "-m", program, *(["-m"] if multirun else []), *overrides,
            "physics.figures=false", f"data.cache_dir={tmp_path / 'cache'}",
            f"tracking.store_dir={tmp_path / 'local-store'}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}", f"hydra.run.dir={tmp_path / run_dir}"]


# --- PostgreSQL: the tracking server, the report, the registry --------------------------------

def test_runs_report_and_registry_on_a_postgresql_tracking_server(
        mlflow_on_postgres: MlflowServer, compose_run, tmp_path: Path, capsys) -> None:
    from calo.model import build_generator
    from calo.model.io import NetworkIO
    from calo.tracking import tracked_run

    uri = mlflow_on_postgres.uri
    server = _server(mlflow_on_postgres, "cluster-server")
    cfg = compose_run(*TINY, *server)
    io = NetworkIO.from_config(TINY_MODEL)
    example = io.network_input(np.zeros((2, io.latent_dim), np.float32), np.array([100, 500]))
    with tracked_run(cfg, to_settings(cfg).tracking, run_name="register") as tracker:
        tracker.log_keras_model(build_generator(TINY_MODEL), "generator", example,
                                registered_name="calo-cluster-generator")
    client = mlflow.MlflowClient(uri)
    (version,) = client.search_model_versions("name='calo-cluster-generator'")

    sweep = subprocess.run(
        _calo_run(tmp_path, *TINY, *server, "precision=fp32",
                  f"model.weights=models:/calo-cluster-generator/{version.version}",
                  multirun=True),
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    runs = _runs(uri, "cluster-server")
    (parent,) = [r for r in runs if r.data.tags.get("sweep/role") == "parent"]
    (job,) = [r for r in runs if r.data.tags.get("sweep/role") == "job"]
    assert parent.info.status == job.info.status == "FINISHED"
    assert job.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert job.data.tags["generator_trained"] == "true"  # the registered weights, read back
    assert job.data.metrics["physics/reference/z_mean"] > 0
    assert not (tmp_path / "local-store").exists()  # nothing went to a local store
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "report")} >= {
        "report/report.html", "report/report.md"}  # the sweep's own report, on the server

    report_main(["--tracking-uri", uri, "--experiment", "cluster-server",
                 "--out", str(tmp_path / "report"), "--no-log"])
    capsys.readouterr()
    page = (tmp_path / "report" / "report.md").read_text()
    assert f"sweep parent run {parent.info.run_id} (FINISHED)" in page
    assert (tmp_path / "report" / "figure5.png").is_file()  # profiles read through the server


# --- PostgreSQL: a shared search, a worker killed -------------------------------------------

def _trial_runs(uri: str, experiment: str) -> list[mlflow.entities.Run]:
    return [r for r in _runs(uri, experiment) if r.data.tags.get("search_role") == "trial"]


@needs_int8_kernels
def test_search_workers_share_a_study_on_postgresql_and_survive_a_sigkill(
        postgres: PostgresServer, mlflow_on_postgres: MlflowServer, tmp_path: Path) -> None:
    storage = postgres.create_database("optuna")
    name = "cluster-postgres-kill"
    overrides = [*SEARCH, "search.n_trials=2", f"search.study={name}", f"search.storage={storage}",
                 "search.heartbeat_s=1", *_server(mlflow_on_postgres, "cluster-search")]
    workers, logs = [], []
    for index in range(2):  # started at once; each in its own process group (its streams too)
        logs.append((tmp_path / f"worker{index}.log").open("w"))
        workers.append(subprocess.Popen(
            _calo_run(tmp_path, *overrides, run_dir=f"run{index}", program="calo.search"),
            cwd=tmp_path, env=_env(),
            stdout=logs[-1], stderr=subprocess.STDOUT, start_new_session=True))
    by_pid = {f"{socket.gethostname()}:{w.pid}": w for w in workers}

    def running_trial() -> optuna.trial.FrozenTrial | None:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            return None
        return next((t for t in study.get_trials(states=(TrialState.RUNNING,))
                     if t.user_attrs.get("worker") in by_pid), None)

    killed = _wait(running_trial, 600, "a worker running a trial")
    victim = by_pid[killed.user_attrs["worker"]]
    # as a node that dies: nothing runs after it. Not reaped: a zombie's run is repaired too
    os.killpg(victim.pid, signal.SIGKILL)
    (survivor,) = [w for w in workers if w is not victim]
    survivor.wait(timeout=900)
    for log in logs:
        log.close()
    output = (tmp_path / f"worker{workers.index(survivor)}.log").read_text()
    assert survivor.returncode == 0, output[-3000:]

    study = optuna.load_study(study_name=name, storage=storage)
    states = {t.number: t.state for t in study.trials}
    assert states[killed.number] is TrialState.FAIL  # failed by the survivor's heartbeat check
    (retry,) = [t for t in study.trials if t.number != killed.number and
                optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t)
                == killed.number]
    assert retry.state is TrialState.COMPLETE and retry.params == killed.params
    assert retry.user_attrs["worker"] == f"{socket.gethostname()}:{survivor.pid}"
    assert sum(s is TrialState.COMPLETE for s in states.values()) >= 2
    # every trial measured exactly once: one MLflow run per trial number, none left RUNNING
    runs = _trial_runs(mlflow_on_postgres.uri, "cluster-search")
    runs = [r for r in runs if r.data.tags.get("search/study") == name]
    numbers = [int(r.data.tags["search/trial"]) for r in runs]
    assert sorted(numbers) == sorted(states)
    status = {int(r.data.tags["search/trial"]): r.info.status for r in runs}
    assert status[killed.number] == "KILLED"  # repaired: its owner process is gone
    assert all(status[n] == "FINISHED" for n, s in states.items() if s is TrialState.COMPLETE)


# --- SLURM -------------------------------------------------------------------------------------

def _submitit_jobs(sweep_dir: Path) -> list[str]:
    """The SLURM IDs of a sweep's jobs: the tasks of one array (a folder for the array, one
    per task), or one plain job."""
    folder = sweep_dir / ".submitit"
    names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    return [name for name in names if "_" in name] or names


def test_a_sweep_runs_as_slurm_jobs_into_the_postgresql_server(
        slurm_cluster: SlurmCluster, mlflow_on_postgres: MlflowServer, tmp_path: Path) -> None:
    sweep = subprocess.run(
        _calo_run(tmp_path, "+experiment=shower_shapes", *TINY, *SLURM_SWEEP,
                  "hydra.sweeper.params.precision='fp32,int8_tflite'",
                  *_server(mlflow_on_postgres, "cluster-slurm-sweep")),
        cwd=tmp_path, env=_env(**slurm_cluster.env), capture_output=True, text=True,
        timeout=900)
    assert sweep.returncode == 0, sweep.stderr[-3000:] + slurm_cluster.logs_tail()
    jobs = _submitit_jobs(tmp_path / "sweep")
    assert len(jobs) == 2  # one SLURM job (array task) per precision
    assert all(slurm_cluster.job_state(job) == "COMPLETED" for job in jobs)
    runs = _runs(mlflow_on_postgres.uri, "cluster-slurm-sweep")
    (parent,) = [r for r in runs if r.data.tags.get("sweep/role") == "parent"]
    children = [r for r in runs if r.data.tags.get("sweep/role") == "job"]
    assert sorted(r.data.params["precision.name"] for r in children) == ["fp32", "int8_tflite"]
    assert all(r.info.status == "FINISHED" for r in [parent, *children])
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    assert parent.data.tags["sweep/launcher"].endswith("SlurmLauncher")
    assert (tmp_path / "sweep" / "report" / "report.html").is_file()


def test_a_job_cancelled_by_slurm_ends_its_run_killed(
        slurm_cluster: SlurmCluster, mlflow_on_postgres: MlflowServer, tmp_path: Path) -> None:
    experiment = "cluster-slurm-cancel"
    launcher = subprocess.Popen(
        _calo_run(tmp_path, "+experiment=shower_shapes", *TINY, *SLURM_SWEEP,
                  "hydra.sweeper.params.precision=fp32", "data.n_showers=4000",
                  *_server(mlflow_on_postgres, experiment)),
        cwd=tmp_path, env=_env(**slurm_cluster.env), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        run = _wait(lambda: next((r for r in _runs(mlflow_on_postgres.uri, experiment)
                                  if r.data.tags.get("sweep/role") == "job"
                                  and r.info.status == "RUNNING"), None), 600,
                    "the job's run")
        (job,) = _submitit_jobs(tmp_path / "sweep")
        subprocess.run(["scancel", job], env=_env(**slurm_cluster.env), check=True, timeout=60)
        output = launcher.communicate(timeout=600)[0]
    finally:
        launcher.kill()
    ended = mlflow.MlflowClient(mlflow_on_postgres.uri).get_run(run.info.run_id)
    assert ended.info.status == "KILLED"  # SIGTERM from SLURM, handled as Ctrl-C
    assert "calo/repaired" not in ended.data.tags  # ended by its own process, not repaired
    assert slurm_cluster.job_state(job).startswith("CANCELLED")
    assert launcher.returncode != 0  # the sweep says which job, in one line
    (line,) = [line for line in output.splitlines() if line.startswith("error:")]
    assert f"Job {job}" in line and "CANCELLED" in line
    assert "Traceback" not in output
    (parent,) = [r for r in _runs(mlflow_on_postgres.uri, experiment)
                 if r.data.tags.get("sweep/role") == "parent"]
    assert parent.info.status == "FAILED"


def _sbatch(cluster: SlurmCluster, tmp_path: Path, *arguments: str) -> str:
    """``sbatch --wait``: the job's ID once it has ended (a failed job fails the test)."""
    result = subprocess.run(["sbatch", "--wait", "--parsable", *arguments], cwd=tmp_path,
                            env=_env(**cluster.env), capture_output=True, text=True,
                            timeout=900)
    outputs = "".join(p.read_text()[-3000:] for p in sorted(tmp_path.glob("*.out")))
    assert result.returncode == 0, result.stderr[-2000:] + outputs + cluster.logs_tail()
    return result.stdout.strip().split(";")[0]


@needs_int8_kernels
def test_search_workers_as_a_slurm_job_array_share_one_study(
        slurm_cluster: SlurmCluster, postgres: PostgresServer,
        mlflow_on_postgres: MlflowServer, tmp_path: Path) -> None:
    storage = postgres.create_database("optuna")
    name = "cluster-slurm-search"
    job = _sbatch(slurm_cluster, tmp_path, "--array=0-1", "--oversubscribe", "--cpus-per-task=1",
                  f"--output={tmp_path}/search-%A_%a.out", str(PROJECT_ROOT / "cluster" /
                                                                 "search.sbatch"),
                  *SEARCH, "search.n_trials=2", f"search.study={name}",
                  f"search.storage={storage}",
                  *_server(mlflow_on_postgres, "cluster-slurm-search"),
                  f"data.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert [slurm_cluster.job_state(f"{job}_{task}") for task in (0, 1)] == ["COMPLETED"] * 2
    for task in (0, 1):  # both workers opened the same study on PostgreSQL
        output = (tmp_path / f"search-{job}_{task}.out").read_text()
        assert f"study {name} in {storage}" in output
    study = optuna.load_study(study_name=name, storage=storage)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) >= 2
    assert all(t.state is TrialState.COMPLETE for t in study.trials)
    runs = [r for r in _runs(mlflow_on_postgres.uri, "cluster-slurm-search")
            if r.data.tags.get("search/study") == name]
    (parent,) = [r for r in runs if r.data.tags["search_role"] == "search"]
    trials = [r for r in runs if r.data.tags["search_role"] == "trial"]
    assert sorted(int(r.data.tags["search/trial"]) for r in trials) == [
        t.number for t in study.trials]  # each trial measured once, by one of the workers
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}
    assert parent.info.status == "FINISHED"


def test_slurm_tf_config_places_tasks_node_by_node() -> None:
    environ = {"SLURM_STEP_NUM_TASKS": "5", "SLURM_STEP_NODELIST": "n[9-10],m1",
               "SLURM_STEP_TASKS_PER_NODE": "2(x2),1", "SLURM_JOB_ID": "1234",
               "SLURM_PROCID": "3", "SLURMD_NODENAME": "n10", "SLURM_LOCALID": "1"}
    config = slurm_tf_config(environ)
    base = 20000 + 32 * 234
    assert config == {"cluster": {"worker": [f"n9:{base}", f"n9:{base + 1}", f"n10:{base}",
                                             f"n10:{base + 1}", f"m1:{base}"]},
                      "task": {"type": "worker", "index": 3}}
    assert slurm_tf_config({**environ, "SLURM_STEP_NUM_TASKS": "1"}) is None
    with pytest.raises(Exception, match="block distribution"):
        slurm_tf_config({**environ, "SLURMD_NODENAME": "n9"})  # a cyclic layout


def test_two_workers_as_one_slurm_job_train_like_one_process(
        slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    # the reference process runs beside the job: the comparison is of results, not speed
    single = subprocess.Popen(_train_command(tmp_path, "single"), env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    overrides = _train_command(tmp_path, "multi")[3:]  # after python -m calo.train
    job = _sbatch(slurm_cluster, tmp_path, "--nodes=1", "--ntasks-per-node=2",
                  "--cpus-per-task=1", f"--output={tmp_path}/train-%j.out",
                  str(PROJECT_ROOT / "cluster" / "train.sbatch"), *overrides)
    assert single.wait(timeout=900) == 0, single.stderr.read()[-3000:]
    output = (tmp_path / f"train-{job}.out").read_text()
    assert output.count("trained 3 steps") == 2  # both tasks were workers of one training
    assert "num_workers = 2" in output
    expected = checkpoint_arrays(latest_checkpoint(tmp_path / "single"))
    actual = checkpoint_arrays(latest_checkpoint(tmp_path / "multi"))
    for key, value in expected.items():
        if key.startswith(("generator/", "discriminator/")):
            _assert_same_training(actual[key], value, key)
