"""The Optuna study behind a search: RDB storage, the study's name and objectives, its sampler,
and the checks that a study found under a name belongs to this search.

The study lives in RDB storage (sqlite beside the MLflow store by default, any SQLAlchemy URL
such as PostgreSQL by ``search.storage``), so an interrupted search resumes and several worker
processes or machines share one study. A heartbeat marks the trials of a process that died as
failed, and the next process reruns them once with the same parameters.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from calo.config import TrackingConfig
from calo.errors import CaloError, one_line
from calo.paths import file_sha256, resolve
from calo.search.settings import (
    SearchConfig,
    SearchJobConfig,
    SearchMode,
    SearchSampler,
    SearchSpeed,
)
from calo.tracking.registry import is_registry_uri

__all__ = ["FP32_SVN_ATTR", "PARENT_RUN_ATTR", "SETUP_ATTR", "SPACE_ATTR", "EnqueuedFirstNSGAII",
           "check_study", "count", "directions", "make_sampler", "open_storage", "open_study",
           "safe_url", "search_setup", "storage_url", "study_name", "wait_for_attr"]

log = logging.getLogger(__name__)

SPACE_ATTR = "search_space"  # the space's fingerprint and description
SETUP_ATTR = "search_setup"  # what the trials' numbers depend on besides the space
# What a study recorded before its setup named the precision was measured with.
SETUP_BEFORE_PRECISION = {"backend": "int8_inc", "activations": "symmetric",
                          "float_dtype": "fp32"}
PARENT_RUN_ATTR = "mlflow_parent_run_id"
FP32_SVN_ATTR = "fp32_svn"  # fp32's SVN on the trials' inputs, the chosen point's yardstick
STORAGE_ATTEMPTS = 3  # processes that create a new storage together collide once


def storage_url(search: SearchConfig, tracking: TrackingConfig) -> str:
    """``search.storage``, or ``sqlite:///<tracking.store_dir>/optuna.db``."""
    if search.storage:
        return search.storage
    folder = resolve(tracking.store_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _rdb_storage(url: str, heartbeat_s: int) -> optuna.storages.RDBStorage:
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # several processes share one file: wait for a write lock instead of failing at once
        engine_kwargs["connect_args"] = {"timeout": 60}
    with warnings.catch_warnings():  # the heartbeat is "experimental" since Optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s,
            grace_period=3 * heartbeat_s,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=1))


def _creating_concurrently(error: Exception) -> bool:
    """Whether another process was creating the same tables at the same moment: a duplicate
    row (IntegrityError), or, on sqlite, a table that appeared between check and create."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    return isinstance(error, IntegrityError) or (
        isinstance(error, OperationalError) and "already exists" in str(error))


def open_storage(url: str, heartbeat_s: int) -> optuna.storages.RDBStorage:
    """RDB storage at ``url``, or a one-line CaloError saying why it cannot be opened."""
    for attempt in range(STORAGE_ATTEMPTS):
        try:
            return _rdb_storage(url, heartbeat_s)
        except Exception as error:  # SQLAlchemy, a missing driver, a bad URL: all the same
            failure: Exception = error
            if not _creating_concurrently(error) or attempt + 1 == STORAGE_ATTEMPTS:
                break
            time.sleep(2.0)
    raise CaloError(f"cannot open the Optuna storage {safe_url(url)} ({one_line(failure, 300)}): "
                    "check search.storage (an SQLAlchemy URL such as "
                    "sqlite:///path/optuna.db or postgresql://user@host/db)") from failure


def study_name(settings: SearchJobConfig) -> str:
    """``search.study``, or ``<model>-<precision>-<granularity>-<mode>@<hw>``."""
    search = settings.search
    return search.study or (f"{settings.model.name}-{settings.precision.name}-"
                            f"{search.granularity.value}-{search.mode.value}@{settings.hw.name}")


def directions(search: SearchConfig) -> list[str]:
    """Physics distance (minimised), then speed unless the mode is single-objective."""
    if search.mode is SearchMode.single:
        return ["minimize"]
    return ["minimize", "minimize" if search.speed is SearchSpeed.latency else "maximize"]


def _latency_constraint(budget_ms: float):
    def constraints(trial: FrozenTrial) -> list[float]:
        """Feasible (<= 0) when the trial's median batch latency fits the budget."""
        return [trial.user_attrs["measurement"]["latency_ms"] - budget_ms]

    return constraints


class EnqueuedFirstNSGAII(optuna.samplers.NSGAIISampler):
    """NSGA-II whose generations count enqueued trials too.

    Optuna gives a trial its generation when it samples the trial's parameters; an enqueued
    trial has them already, stays outside every generation and is never a parent, and a
    random first generation follows it. Here every trial gets its generation when it starts,
    so the enqueued first generation (plain int8 and sparse sets) is the first generation.
    """

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        super().before_trial(study, trial)
        self.get_trial_generation(study, trial)


def make_sampler(search: SearchConfig) -> optuna.samplers.BaseSampler:
    constraints = (_latency_constraint(search.latency_budget_ms)
                   if search.mode is SearchMode.single else None)
    kind = search.sampler
    if kind is SearchSampler.auto:
        kind = SearchSampler.tpe if search.mode is SearchMode.single else SearchSampler.nsga2
    if kind is SearchSampler.nsga2:
        return EnqueuedFirstNSGAII(population_size=search.population_size, seed=search.seed,
                                   constraints_func=constraints)
    if kind is SearchSampler.tpe:
        return optuna.samplers.TPESampler(seed=search.seed, constraints_func=constraints,
                                          multivariate=True, group=True)
    return optuna.samplers.RandomSampler(seed=search.seed)


def search_setup(settings: SearchJobConfig) -> dict[str, Any]:
    """Everything a trial's numbers depend on besides its fallback set: a study measured with
    other values is another study."""
    search, precision = settings.search, settings.precision
    return {
        "model": settings.model.name, "weights": settings.model.weights,
        "weights_sha256": _weights_sha256(settings.model.weights),
        "latent_distribution": settings.model.latent_distribution.value,
        "data": {"source": settings.data.source.value, "n_showers": settings.data.n_showers,
                 "seed": settings.data.seed, "path": settings.data.path},
        "physics": search.physics.value, "speed": search.speed.value, "mode": search.mode.value,
        "latency_budget_ms": search.latency_budget_ms,
        "n_showers": search.n_showers, "batch_size": search.batch_size, "seed": settings.seed,
        "hw": {"threads": settings.hw.threads, "streams": settings.hw.streams,
               "max_isa": settings.hw.max_isa},
        "backend": precision.backend.value, "activations": precision.activations.value,
        "float_dtype": precision.float_dtype.value,
        "calibration": {"size": precision.calibration_size,
                        "energy": list(precision.calibration_energy),
                        "seed": precision.calibration_seed, "rewrite": precision.rewrite},
        "energy_bins": list(settings.physics.energy_bins),
    }


def _weights_sha256(location: str | None) -> str | None:
    """The content of a weights file, so that retrained weights under the same path make another
    study; None for a registry version (immutable), no weights or a file not there (loading it
    then says what is wrong)."""
    if location is None or is_registry_uri(location):
        return None
    path = resolve(location)
    return file_sha256(path) if path.is_file() else None


def _differences(found: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    return [f"{key}: {found.get(key)!r} there, {expected.get(key)!r} here"
            for key in sorted(set(found) | set(expected)) if found.get(key) != expected.get(key)]


def open_study(storage: optuna.storages.BaseStorage, name: str, search: SearchConfig
               ) -> tuple[optuna.Study, bool]:
    """The study ``name``, created if absent; and whether this process created it (exactly
    one process does, even when several start together)."""
    sampler = make_sampler(search)
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler), False
    except KeyError:
        pass
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                    directions=directions(search))
        return study, True
    except optuna.exceptions.DuplicatedStudyError:  # another process created it just now
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler), False


def check_study(study: optuna.Study, space: dict[str, Any], setup: dict[str, Any],
                search: SearchConfig, url: str) -> None:
    """Record the space and setup on a new study; refuse a study recorded with others."""
    where = f"study {study.study_name!r} in {safe_url(url)}"
    found_space = study.user_attrs.get(SPACE_ATTR)
    if found_space is not None and found_space["fingerprint"] != space["fingerprint"]:
        switches = len(found_space["space"]["switches"])
        raise CaloError(f"{where} belongs to another search space (granularity "
                        f"{found_space['space']['granularity']}, {switches} switches; here "
                        f"{space['space']['granularity']}, {len(space['space']['switches'])}): "
                        "choose another search.study")
    found_setup = study.user_attrs.get(SETUP_ATTR)
    if found_setup is not None:
        found_setup = {**{key: value for key, value in SETUP_BEFORE_PRECISION.items()
                          if key in setup}, **found_setup}
    if found_setup is not None and found_setup != setup:
        differences = "; ".join(_differences(found_setup, setup))
        raise CaloError(f"{where} was measured with other settings ({differences}): choose "
                        "another search.study or use the same settings")
    if [d.name.lower() for d in study.directions] != directions(search):
        raise CaloError(f"{where} optimises {len(study.directions)} objective(s) in other "
                        "directions: choose another search.study")
    if found_space is None:
        study.set_user_attr(SPACE_ATTR, space)
    if found_setup is None:
        study.set_user_attr(SETUP_ATTR, setup)


def wait_for_attr(study: optuna.Study, key: str, seconds: float) -> Any:
    """A study attribute another process is about to set, or None after ``seconds``."""
    deadline = time.monotonic() + seconds
    while (value := study.user_attrs.get(key)) is None and time.monotonic() < deadline:
        time.sleep(1.0)
    return value


def count(study: optuna.Study, state: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=(state,)))
