"""The main job end to end on the tiny model: what it records, and how it fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from calo.errors import CaloError
from calo.run import run
from calo.tracking import Tracker

from .conftest import TINY


def finished_run(store: Path, run_id: str) -> mlflow.entities.Run:
    return mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}").get_run(run_id)


def test_run_records_params_tags_metrics_and_config(compose_run, store: Path) -> None:
    run_id = run(compose_run(*TINY))
    record = finished_run(store, run_id)
    assert record.info.status == "FINISHED"
    params, tags, metrics = record.data.params, record.data.tags, record.data.metrics
    assert params["model.name"] == "tiny" and params["precision.backend"] == "fp32"
    assert params["hw/threads"] == str(len(os.sched_getaffinity(0)))
    assert tags["choice/model"] == "tiny" and "model=tiny" in tags["overrides"]
    assert tags["generator_trained"] == "false"
    assert tags["machine/cpu_model"] and tags["git/commit"]
    for sample in ("reference", "fp32", "engine"):
        for key in ("x_mean", "y_std", "z_mean", "z_std", "sf_100_200", "ecal_ep_corr"):
            assert f"physics/{sample}/{key}" in metrics
    assert metrics["physics/reference/z_mean"] == pytest.approx(13.85, rel=0.05)
    assert metrics["engine/disk_mb"] > 0
    artifacts = {a.path for a in mlflow.MlflowClient(
        f"sqlite:///{store / 'mlflow.db'}").list_artifacts(run_id)}
    assert {"config.yaml", "engine", "engine_dtypes.json"} <= artifacts


def test_same_seed_same_record(compose_run, store: Path) -> None:
    first = finished_run(store, run(compose_run(*TINY))).data.metrics
    second = finished_run(store, run(compose_run(*TINY))).data.metrics
    assert first["physics/engine/z_mean"] == second["physics/engine/z_mean"]


def test_failed_run_is_marked_failed_and_keeps_what_it_logged(compose_run, store: Path,
                                                              tmp_path: Path) -> None:
    cfg = compose_run(*TINY, "data=eleescan", f"data.path={tmp_path / 'absent.h5'}")
    with pytest.raises(CaloError, match="absent.h5"):
        run(cfg)
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    (failed,) = client.search_runs([client.get_experiment_by_name("calo").experiment_id])
    assert failed.info.status == "FAILED"
    assert "absent.h5" in failed.data.tags["error"]
    assert failed.data.params["hw/threads"]  # logged before the failure, kept


def cli(*overrides: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "calo.run", *TINY,
               f"tracking.store_dir={tmp_path / 'mlruns'}", f"data.cache_dir={tmp_path / 'c'}",
               f"hydra.run.dir={tmp_path / 'out'}", *overrides]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("hw.threads=abc", "hw.threads"),
        ("data.n_showers=-3", "data.n_showers must be a positive"),
        ("precision=int4", "Available options"),
    ],
)
def test_cli_bad_override_is_a_clear_error(tmp_path: Path, override: str, message: str) -> None:
    result = cli(override, tmp_path=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_cascadelake_is_scaled_down_and_logged(tmp_path: Path) -> None:
    result = cli("hw=cascadelake", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "asks for 56 threads x 7 streams" in result.stderr + result.stdout
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    (record,) = client.search_runs([client.get_experiment_by_name("calo").experiment_id])
    assert record.data.params["hw/requested_threads"] == "56"
    assert record.data.params["hw/requested_streams"] == "7"
    assert record.data.params["hw/max_isa"] == "AVX512_CORE_VNNI"  # the paper's CPU, no AMX
    assert "capped at AVX512_CORE_VNNI" in result.stderr + result.stdout
    assert int(record.data.params["hw/threads"]) <= len(os.sched_getaffinity(0))
    # run from another folder: Hydra composed the project's conf/ and recorded the job where
    # hydra.run.dir says, and nothing else was written into the working folder
    composed = yaml.safe_load((tmp_path / "out" / ".hydra" / "config.yaml").read_text())
    assert composed["hw"]["name"] == "cascadelake" and composed["model"]["name"] == "tiny"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c", "mlruns", "out"]


def test_a_logged_figure_is_closed_even_with_tracking_off() -> None:
    import matplotlib.pyplot as plt

    figure = plt.figure()
    Tracker(None).log_figure(figure, "figure.png")
    assert not plt.fignum_exists(figure.number)
