"""Multirun sweeps: jobs grouped under a parent run, failures kept to their job, launchers
that would share cores refused for speed sweeps, and the ready-made experiments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from submitit.core.utils import FailedJobError, UncompletedJobError

from calo.errors import CaloError
from calo.multirun import check_benchmark_launcher, concurrency_reason, sweep_name
from calo.paths import CONFIG_DIR, PROJECT_ROOT
from hydra_plugins.calo_launchers import job_error_line

from .conftest import TINY

EXPERIMENTS = sorted(p.stem for p in (PROJECT_ROOT / "experiments" / "experiment").glob("*.yaml"))


def compose_with_hydra(*overrides: str):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return compose("run", overrides=list(overrides), return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def sweep(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``python -m calo.run -m`` on the tiny model, everything under tmp_path, run from there."""
    command = [sys.executable, "-m", "calo.run", "-m", *TINY, "physics.figures=false",
               f"tracking.store_dir={tmp_path / 'mlruns'}", f"data.cache_dir={tmp_path / 'c'}",
               f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def runs_of(uri: str, experiment: str = "calo") -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


@pytest.mark.parametrize(("launcher", "refused"), [
    ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, None),
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
      "n_jobs": 1}, None),
    ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
      "n_jobs": -1}, "one job per core at once"),
    ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"},
     "every job at once"),
    ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
      "additional_parameters": {}}, "exclusive=true"),
    ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
      "additional_parameters": {"exclusive": True}}, None),
    ({"_target_": "hydra_plugins.calo_launchers.CaloSlurmLauncher",
      "additional_parameters": {"exclusive": True}}, None),
    ({"_target_": "somebody.else.RayLauncher"}, "may run jobs concurrently"),
])
def test_launchers_that_share_cores_are_named(launcher: dict, refused: str | None) -> None:
    reason = concurrency_reason(launcher)
    assert reason is None if refused is None else refused in reason


@pytest.mark.parametrize(("error", "expected"), [
    (UncompletedJobError("Job 12_0 (task: 0) with path /s/12_0_0_result.pkl\nhas not produced "
                         "any output (state: CANCELLED by 0)\nError stream produced:\n----\n"
                         "slurmstepd: *** JOB 12 CANCELLED ***"),
     "ended without a result: Job 12_0 (task: 0) with path /s/12_0_0_result.pkl has not "
     "produced any output (state: CANCELLED by 0). Jobs"),
    (FailedJobError("Job (task=0) failed during processing with trace:\n----\nTraceback (most "
                    "recent call last):\n  File \"x.py\", line 1"),
     "crashed: Job (task=0) failed during processing with trace. Jobs"),
])
def test_a_job_slurm_ended_is_one_line_naming_it(error: Exception, expected: str) -> None:
    line = job_error_line(error)
    assert expected in line and "\n" not in line and "Traceback" not in line


def test_calo_slurm_preset_uses_the_one_line_launcher() -> None:
    from hydra.core.plugins import Plugins
    from hydra.plugins.launcher import Launcher

    cfg = compose_with_hydra("+experiment=shower_shapes", "hydra/launcher=calo_slurm")
    assert cfg.hydra.launcher._target_ == "hydra_plugins.calo_launchers.CaloSlurmLauncher"
    assert "CaloSlurmLauncher" in [c.__name__ for c in Plugins.instance().discover(Launcher)]


def test_only_benchmarking_configs_are_refused() -> None:
    joblib = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
              "n_jobs": 2}
    check_benchmark_launcher(OmegaConf.create({"bench": {"enabled": False}}), joblib)
    with pytest.raises(CaloError, match="times its engines .* jobs sharing cores"):
        check_benchmark_launcher(OmegaConf.create({"bench": {"enabled": True}}), joblib)
    with pytest.raises(CaloError, match=r"precision.profile=true.* jobs sharing cores"):
        check_benchmark_launcher(OmegaConf.create({"precision": {"profile": True}}), joblib)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiments_are_multirun_sweeps_into_their_own_experiment(experiment: str) -> None:
    cfg = compose_with_hydra(f"+experiment={experiment}")
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert "precision" in cfg.hydra.sweeper.params
    assert cfg.tracking.experiment == experiment
    check_benchmark_launcher(cfg, cfg.hydra.launcher)  # each one's launcher suits it


def test_a_sweep_is_named_after_its_experiment() -> None:
    assert sweep_name(compose_with_hydra("+experiment=threads_streams")) == "threads_streams"


def test_experiment_set_is_the_papers_study() -> None:
    assert EXPERIMENTS == ["op_breakdown", "paper_tables", "shower_shapes", "threads_streams"]
    tables = compose_with_hydra("+experiment=paper_tables")
    assert tables.bench.enabled and tables.hydra.sweeper.params.precision == (
        "fp32,int8_inc,fp16_tflite,int8_tflite")
    shapes = compose_with_hydra("+experiment=shower_shapes")
    assert not shapes.bench.enabled and shapes.hydra.launcher.n_jobs == 2
    assert compose_with_hydra("+experiment=threads_streams").bench.grid


def test_experiments_are_found_from_any_directory(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "calo.run", "+experiment=threads_streams",
                             "--cfg", "job"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "experiment: threads_streams" in result.stdout


def test_slurm_preset_asks_slurm_for_whole_nodes(tmp_path: Path) -> None:
    from submitit.slurm.slurm import _make_sbatch_string  # what submitit hands to sbatch

    cfg = compose_with_hydra("+experiment=paper_tables", "hydra/launcher=calo_slurm")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and concurrency_reason(launcher) is None
    script = _make_sbatch_string(
        command="python -m calo.run", folder=tmp_path, nodes=launcher.nodes,
        ntasks_per_node=launcher.tasks_per_node, cpus_per_task=launcher.cpus_per_task,
        additional_parameters=OmegaConf.to_container(launcher.additional_parameters))
    assert "#SBATCH --exclusive" in script and "#SBATCH --cpus-per-task=56" in script


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_on_the_slurm_preset(experiment: str) -> None:
    """hydra/launcher=calo_slurm replaces an experiment's own launcher whole (shower_shapes'
    joblib settings have no place in a SLURM launcher's config)."""
    cfg = compose_with_hydra(f"+experiment={experiment}", "hydra/launcher=calo_slurm")
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert "n_jobs" not in cfg.hydra.launcher
    assert cfg.hydra.sweeper.params.precision  # still the experiment's sweep


def test_speed_sweep_on_a_parallel_launcher_is_refused(tmp_path: Path) -> None:
    result = sweep(tmp_path, "hydra/launcher=joblib", "bench.enabled=true",
                   "precision=fp32,int8_inc")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: this sweep times its engines (bench.enabled=true) but hydra/launcher=joblib")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # refused before any job


def test_parallel_sweep_groups_its_jobs_and_keeps_failures_to_their_job(tmp_path: Path) -> None:
    result = sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                   "precision=fp32,int8_tflite", "data.n_showers=200,-3")
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: sweep precision,data.n_showers: 2 of 4 jobs failed")
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    runs = runs_of(uri)
    (parent,) = [run for run in runs if run.data.tags.get("sweep/role") == "parent"]
    children = [run for run in runs if run is not parent]
    assert parent.info.status == "FAILED" and parent.data.metrics["sweep/jobs"] == 4
    assert {run.data.tags["mlflow.parentRunId"] for run in children} == {parent.info.run_id}
    assert sorted(run.data.tags["sweep/job"] for run in children) == ["0", "1", "2", "3"]
    failed = [run for run in children if run.info.status == "FAILED"]
    assert len(failed) == 2
    assert all("data.n_showers must be a positive" in run.data.tags["error"] for run in failed)
    finished = {run.data.params["precision.name"] for run in children
                if run.info.status == "FINISHED"}
    assert finished == {"fp32", "int8_tflite"}
    logged = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(parent.info.run_id,
                                                                      "report")}
    assert "report/report.html" in logged
    page = (tmp_path / "sweep" / "report" / "report.md").read_text()
    assert page.count("data.n_showers must be a positive") >= 2  # missing list and runs table
    assert "| int8_tflite, untrained" in page  # the finished int8 job's Table 3-5 rows
