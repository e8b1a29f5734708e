"""Searches on the tiny model: every trial a child run of one parent, a rerun that resumes the
study, two processes sharing it, crashed trials and a foreign study. Kept small: a trial
quantizes, generates 64 showers and times a few batches in stream worker processes."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from calo.config import to_settings
from calo.errors import CaloError
from calo.precision.inc import select_nodes
from calo.search.export import save_study_option
from calo.search.pipeline import run_search
from calo.search.study import SPACE_ATTR, open_storage

from .conftest import needs_int8_kernels

pytestmark = [needs_int8_kernels,
              pytest.mark.filterwarnings("ignore:.*binned physics metrics will be noisy",
                                         "ignore::optuna.exceptions.ExperimentalWarning")]

# One short timed round per trial; no comparisons unless a test asks for them.
QUICK = ["model=tiny", "data.n_showers=200", "precision.calibration_size=32", "search.n_showers=64",
         "search.batch_size=16", "search.bench_seconds=0", "search.bench_rounds=1",
         "bench.warmup_batches=1", "bench.min_batches=2", "search.population_size=2",
         "search.compare_with=[]", "search.autotune=false", "search.register_name=null"]


@pytest.fixture
def search_config(compose_run):
    """conf/search.yaml composed with overrides (store and cache in the test's folder)."""
    return functools.partial(compose_run, config_name="search")


def client(store: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")


def runs_by_role(store: Path) -> dict[str, list]:
    experiment = client(store).get_experiment_by_name("calo")
    runs = client(store).search_runs([experiment.experiment_id]) if experiment else []
    roles: dict[str, list] = {}
    for record in runs:
        roles.setdefault(record.data.tags.get("search_role"), []).append(record)
    return roles


def load(store: Path, name: str = "tiny-int8_inc-node-multi@local") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{store / 'optuna.db'}")


# Where a test is not about speed-ups: trials timed alone, without an fp32 engine alternating
# (half the benchmark's worker processes).
ABSOLUTE_SPEED = ["search.speed=latency"]

# Any trial meets the chosen point's conditions, so the closest to fp32 pixel by pixel is
# chosen: one that keeps nodes in fp32, whose speed is then confirmed against plain int8_inc.
CHOOSE_CLOSEST = ["search.physics=pixel", "search.physics_tolerance=1000",
                  "search.min_speed_fraction=0.01"]


def test_a_rerun_resumes_the_study_under_the_same_parent(search_config, store: Path,
                                                         tmp_path: Path) -> None:
    parent_id = run_search(search_config(*QUICK, *CHOOSE_CLOSEST, "search.n_trials=1"))
    study = load(store)
    assert [t.number for t in study.get_trials(states=(TrialState.COMPLETE,))] == [0]
    assert study.trials[0].user_attrs["keep_fp32"] == []  # every search starts at plain int8

    again = run_search(search_config(*QUICK, *CHOOSE_CLOSEST, "search.n_trials=2",
                            "search.autotune=true", "search.register_name=calo-search-test"))
    assert again == parent_id
    trials = load(store).get_trials(states=(TrialState.COMPLETE,))
    assert [t.number for t in trials] == [0, 1]  # resumed: one more, none redone
    assert trials[1].user_attrs["keep_fp32"]  # sampled: something kept in fp32

    roles = runs_by_role(store)
    (parent,) = roles["search"]
    assert parent.info.run_id == parent_id and parent.info.status == "FINISHED"
    assert len(roles["trial"]) == 2 and len(roles["autotune"]) == 1
    for trial in roles["trial"] + roles["autotune"]:
        assert trial.data.tags["mlflow.parentRunId"] == parent_id
    by_run = {t.user_attrs["mlflow_run_id"]: t for t in trials}
    for record in roles["trial"]:
        trial = by_run[record.info.run_id]
        assert record.data.metrics["search/distance"] == pytest.approx(trial.values[0])
        assert record.data.metrics["bench/speedup_b16"] == pytest.approx(trial.values[1])
        assert record.data.params["precision.keep_fp32"] == str(trial.user_attrs["keep_fp32"])
        assert "precision=int8_inc precision.keep_fp32=" in record.data.tags["search/reproduce"]
    quantizable = [tuple(pair) for pair in study.user_attrs[SPACE_ATTR]["space"]["quantizable"]]
    for trial in trials:  # precision=int8_inc precision.keep_fp32=<trial's> keeps its nodes
        kept = select_nodes(trial.user_attrs["keep_fp32"], quantizable)
        assert kept == trial.user_attrs["kept_nodes"]

    metrics = parent.data.metrics
    assert metrics["search/n_complete"] == 2 and metrics["search/fp32_svn"] > 0
    pixel = [trial.user_attrs["measurement"]["pixel"] for trial in trials]
    assert pixel[1] < pixel[0]  # keeping nodes in fp32 brings the engine closer to fp32
    assert metrics["search/chosen/trial"] == 1
    assert metrics["search/chosen/speed_vs_plain"] > 0  # measured side by side
    assert metrics["search/autotune/evaluated"] >= 1
    artifacts = {a.path for a in client(store).list_artifacts(parent_id, "search")}
    assert {"search/pareto_front.png", "search/front.md", "search/trials.md",
            "search/chosen.json", "search/int8_inc_best.yaml",
            "search/chosen_engine"} <= artifacts
    (version,) = client(store).search_model_versions("name='calo-search-test'")
    assert version.run_id == parent_id
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"models:/calo-search-test/{version.version}")
    inputs = np.hstack([np.zeros((2, 200)), [[100.0], [400.0]]]).astype(np.float32)
    assert model.predict(inputs).shape == (2, 25, 25, 25)  # showers from the registered engine

    chosen = int(metrics["search/chosen/trial"])
    settings = to_settings(search_config(*QUICK, *CHOOSE_CLOSEST,
                                         "search.save_as=int8_inc_best"))
    path = save_study_option(settings, tmp_path)
    saved = yaml.safe_load(path.read_text())
    assert saved["name"] == "int8_inc_best" and saved["calibration_size"] == 32
    assert saved["keep_fp32"] == trials[chosen].user_attrs["keep_fp32"]
    with pytest.raises(CaloError, match=r"no completed trial 7; completed: \[0, 1\]"):
        save_study_option(replace(settings, search=replace(settings.search, save_trial=7)),
                          tmp_path)


def test_crashed_trials_fail_alone_until_the_failure_budget_is_spent(
        search_config, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from calo.search.evaluate import Evaluator

    measure = Evaluator.measure

    def crash_unless_plain(self, precision, engine):
        if precision.keep_fp32:
            raise CaloError("injected crash")
        return measure(self, precision, engine)

    monkeypatch.setattr(Evaluator, "measure", crash_unless_plain)
    cfg = search_config(*QUICK, "search.n_trials=3", "search.max_failure_rate=0.34",
                        *ABSOLUTE_SPEED)
    with pytest.raises(CaloError, match=r"search stopped: 2 trials failed, more than "
                                        r"search.max_failure_rate=0.34 of search.n_trials=3"):
        run_search(cfg)
    study = load(store)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]  # none lost
    assert study.trials[1].user_attrs["error"] == "injected crash"
    roles = runs_by_role(store)
    assert sorted(r.info.status for r in roles["trial"]) == ["FAILED", "FAILED", "FINISHED"]
    (parent,) = roles["search"]
    assert parent.info.status == "FAILED"
    assert "search stopped" in parent.data.tags["error"]
    assert parent.data.metrics["search/n_failed"] == 2  # the summary was still recorded


def test_a_study_of_another_space_is_refused(search_config, store: Path) -> None:
    storage = open_storage(f"sqlite:///{store / 'optuna.db'}", heartbeat_s=60)
    other = optuna.create_study(study_name="taken", storage=storage,
                                directions=["minimize", "maximize"])
    other.set_user_attr(SPACE_ATTR, {"fingerprint": "0", "space": {"granularity": "path",
                                                                     "switches": {"a": []}}})
    with pytest.raises(CaloError, match="study 'taken' in sqlite:///.* belongs to another "
                                        "search space"):
        run_search(search_config(*QUICK, "search.study=taken"))
    assert len(other.trials) == 0 and "search" not in runs_by_role(store)


def cli(tmp_path: Path, store: Path, *overrides: str,
        barrier: tuple[Path, int] | None = None) -> subprocess.Popen:
    """``python -m calo.search`` on the tiny search; with ``barrier`` (folder, count), through
    search_barrier_worker.py: its first trial waits until ``count`` processes reach theirs."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    entry = ["-m", "calo.search"] if barrier is None else [
        str(Path(__file__).with_name("search_barrier_worker.py")), str(barrier[0]),
        str(barrier[1])]
    command = [sys.executable, *entry, *QUICK,
               f"tracking.store_dir={store}", f"data.cache_dir={tmp_path / 'c'}",
               f"hydra.run.dir={tmp_path / 'out'}", *overrides]
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_two_processes_share_one_study(tmp_path: Path, store: Path) -> None:
    # both create the (new) study storage at once; the MLflow store exists already. Each
    # process's first trial waits for the other's, so both run one whatever the load
    (tmp_path / "barrier").mkdir()
    workers = [cli(tmp_path, store, "search.n_trials=2", "search.speed=latency",
                   barrier=(tmp_path / "barrier", 2)) for _ in range(2)]
    outputs = [worker.communicate(timeout=900)[0] for worker in workers]
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-3000:]
    assert len(list((tmp_path / "barrier").iterdir())) == 2
    study = load(store)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) >= 2  # each worker stops once the study holds 2
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2  # both ran trials
    assert all(t.state is TrialState.COMPLETE for t in study.trials)
    roles = runs_by_role(store)
    (parent,) = roles["search"]  # one parent for the study, whichever process started it
    assert {r.data.tags["mlflow.parentRunId"] for r in roles["trial"]} == {parent.info.run_id}
    assert len(roles["trial"]) == len(study.trials)


def test_an_unreachable_storage_is_a_one_line_error(tmp_path: Path, store: Path) -> None:
    worker = cli(tmp_path, store, "search.storage=postgresql://calo:secret@127.0.0.1:1/studies")
    output = worker.communicate(timeout=600)[0]
    assert worker.returncode == 2
    assert ("error: cannot open the Optuna storage postgresql://calo:***@127.0.0.1:1/studies"
            in output)
    assert "Traceback" not in output and "secret" not in output


def test_the_plain_baseline_is_measured_before_the_summary(search_config, store: Path,
                                                           monkeypatch) -> None:
    """A worker killed in the plain int8_inc trial leaves it failed and its retry queued behind
    the other trials: the study must still measure plain int8_inc before it is summarised."""
    from calo.search import trials

    measure = trials._measure_trial
    failed: list[int] = []

    def killed_once(state, trial, patterns):
        if not patterns and not failed:
            failed.append(trial.number)
            raise RuntimeError("worker killed")
        return measure(state, trial, patterns)

    monkeypatch.setattr(trials, "_measure_trial", killed_once)
    run_search(search_config(*QUICK, "search.n_trials=2", "search.max_failure_rate=0.5",
                             *ABSOLUTE_SPEED))
    study = load(store)
    assert failed == [0] and study.trials[0].state is TrialState.FAIL
    plain = [t for t in study.get_trials(states=(TrialState.COMPLETE,))
             if t.user_attrs["keep_fp32"] == []]
    assert len(plain) == 1 and plain[0].user_attrs["mlflow_run_id"]
