"""Hydra multiruns as sweeps: ``python -m calo.run -m precision=fp32,int8_inc hw=local``.

:class:`SweepCallback` (registered in ``conf/run.yaml``) opens a parent MLflow run before the
first job, so every job's run becomes its child; after the last job it ends the parent
(FAILED if any job failed), writes the comparison report into the sweep folder and logs it to
the parent. :func:`run_sweep_job` runs one job so that bad input ends that job only (one line,
a FAILED run), not the whole sweep.

A sweep that times its engines (``bench.enabled`` or ``precision.profile``) refuses launchers
that run its jobs at the same time on the same cores: each job's numbers would measure the
others' load.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from calo.cli import exit_on_user_error
from calo.config import TrackingConfig, to_settings
from calo.errors import CaloError

__all__ = ["SweepCallback", "check_benchmark_launcher", "concurrency_reason", "is_sweep_job",
           "run_sweep_job", "sweep_name"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def concurrency_reason(launcher: Mapping[str, Any]) -> str | None:
    """Why ``launcher`` (a ``hydra.launcher`` config) may run jobs at the same time on the same
    cores, or None when it runs them one at a time or on whole nodes of their own."""
    target = str(launcher.get("_target_", ""))
    kind = target.rsplit(".", 1)[-1]
    if kind == "BasicLauncher":
        return None
    if kind == "JoblibLauncher":
        n_jobs = launcher.get("n_jobs")
        if n_jobs == 1:
            return None
        at_once = f"{n_jobs} jobs" if n_jobs and n_jobs > 0 else "one job per core"
        return f"hydra/launcher=joblib runs {at_once} at once on this machine"
    if kind in ("SlurmLauncher", "CaloSlurmLauncher"):
        extra = launcher.get("additional_parameters") or {}
        if extra.get("exclusive") or launcher.get("array_parallelism") == 1:
            return None
        return ("SLURM may place several of its jobs on one node: set "
                "hydra.launcher.additional_parameters.exclusive=true (hydra/launcher=calo_slurm "
                "does)")
    if kind == "LocalLauncher":
        return "hydra/launcher=submitit_local starts every job at once on this machine"
    return f"the launcher {target or '(unknown)'} may run jobs concurrently"


def check_benchmark_launcher(cfg: DictConfig, launcher: Mapping[str, Any]) -> None:
    """Refuse a config that times something (a benchmark, an op-by-op profile) under a
    launcher that runs jobs side by side."""
    timed = [key for key in ("bench.enabled", "precision.profile")
             if OmegaConf.select(cfg, key, default=False)]
    if not timed:
        return
    reason = concurrency_reason(launcher)
    if reason:
        raise CaloError(
            f"this sweep times its engines ({timed[0]}=true) but {reason}: jobs sharing cores "
            "slow each other down and every speed number would be wrong. Use the default "
            f"launcher (one job at a time), or {timed[0]}=false for a physics-only sweep")


def sweep_name(config: DictConfig) -> str:
    """The experiment (``+experiment=...``) or, for an ad-hoc multirun, the swept keys."""
    experiment = config.hydra.runtime.choices.get("experiment")
    if experiment:
        return str(experiment)
    arguments = [f"{key}={value}" for key, value in (config.hydra.sweeper.get("params") or {})
                 .items()] + list(config.hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(arguments)
    swept = dict.fromkeys(o.get_key_element() for o in overrides if o.is_sweep_override())
    return ",".join(swept) or "multirun"


def _tracking(cfg: DictConfig) -> TrackingConfig | None:
    """The config's tracking settings (checked), or None when it has none or they are off."""
    node = OmegaConf.select(cfg, "tracking")
    if node is None:
        return None
    settings = to_settings(node)
    return settings if isinstance(settings, TrackingConfig) and settings.enabled else None


class SweepCallback(Callback):
    """Opens and closes a multirun's parent MLflow run, and writes its report.

    While the sweep runs, the parent's heartbeat is kept, and Ctrl-C or SIGTERM (which reaches
    only this process, not the launcher's workers) ends it: the workers get SIGTERM (then
    SIGKILL), the runs they leave RUNNING and the parent end KILLED.
    """

    def __init__(self) -> None:
        self._record = None  # calo.tracking.sweep.SweepRecord while the sweep runs
        self._heartbeat = None
        self._interrupted: str | None = None

    def __getstate__(self) -> dict:
        """What a launcher's workers receive (Hydra ships the callbacks to them): nothing of the
        parent's sweep, which the parent alone ends (and a heartbeat thread cannot be pickled)."""
        return {"_record": None, "_heartbeat": None, "_interrupted": None}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_on_user_error(self._start, config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        exit_on_user_error(self._finish, config)

    def _start(self, config: DictConfig) -> None:
        check_benchmark_launcher(config, config.hydra.launcher)
        tracking = _tracking(config)
        if tracking is None:
            return
        from calo.tracking.sweep import start_sweep

        name = sweep_name(config)
        tags = {"sweep/overrides": " ".join(config.hydra.overrides.task) or "(none)",
                "sweep/launcher": str(config.hydra.launcher.get("_target_", "")),
                "sweep/dir": str(Path(config.hydra.sweep.dir).resolve())}
        self._record = start_sweep(tracking, name, Path(config.hydra.sweep.dir), tags)
        self._keep_alive()
        atexit.register(self._abandon)

    def _keep_alive(self) -> None:
        import mlflow

        from calo.tracking.owner import Heartbeat

        self._heartbeat = Heartbeat(mlflow.MlflowClient(self._record.tracking_uri),
                                    self._record.parent_run_id).__enter__()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._interrupt)

    def _interrupt(self, signum: int, frame: Any) -> None:
        self._interrupted = f"signal {signal.Signals(signum).name}"
        raise KeyboardInterrupt(self._interrupted)

    def _stop_keeping_alive(self) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if self._heartbeat is not None:
            self._heartbeat.__exit__(None, None, None)
            self._heartbeat = None

    def _finish(self, config: DictConfig) -> None:
        if self._record is None:
            return
        from calo.report import ReportSource, build_report, write_report
        from calo.tracking.sweep import child_statuses, finish_sweep, log_to_run

        record, self._record = self._record, None
        self._stop_keeping_alive()
        statuses = child_statuses(record)
        status = finish_sweep(record, statuses)
        folder = Path(config.hydra.sweep.dir).resolve() / "report"
        report = build_report(ReportSource(record.tracking_uri, record.experiment,
                                           record.parent_run_id))
        html, _ = write_report(report, folder)
        log_to_run(record.tracking_uri, record.parent_run_id, folder, "report")
        log.info("sweep %s %s: %s; report %s", record.name, status.lower(),
                 ", ".join(f"{n} {s.lower()}" for s, n in sorted(statuses.items())), html)
        failed = sum(statuses.values()) - statuses["FINISHED"]
        if failed:
            raise CaloError(f"sweep {record.name}: {failed} of {sum(statuses.values())} jobs "
                            f"failed (their errors are in the report {html} and in MLflow)")

    def _abandon(self) -> None:
        """At exit, a sweep that never reached its end: KILLED after Ctrl-C or SIGTERM (its
        workers ended first), FAILED after a crash."""
        if self._record is None:
            return
        from calo.tracking.sweep import child_statuses, end_interrupted_sweep, finish_sweep

        record, self._record = self._record, None
        self._stop_keeping_alive()
        if self._interrupted:
            _end_child_processes()
            end_interrupted_sweep(record, self._interrupted)
        else:
            finish_sweep(record, child_statuses(record),
                         note="the sweep stopped before its last job ended")


def _end_child_processes(grace_s: float = 30.0) -> None:
    """SIGTERM to every process this one started (a launcher's workers end their runs KILLED),
    SIGKILL to those still alive after ``grace_s``."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=grace_s)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def is_sweep_job() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_sweep_job(function: Callable[[DictConfig], T], cfg: DictConfig) -> T | None:
    """Run one job of a sweep: bad input fails this job only (one line on stderr, a FAILED run
    in the sweep) and the sweep goes on; the callback reports the failures at the end."""
    hydra_cfg = HydraConfig.get()
    _reset_loky_start_method()
    try:
        check_benchmark_launcher(cfg, hydra_cfg.launcher)
        return function(cfg)
    except CaloError as error:
        overrides = " ".join(hydra_cfg.overrides.task)
        log.error("job %s (%s) failed: %s", hydra_cfg.job.num, overrides, error)
        _record_failure(cfg, error)
        return None


def _reset_loky_start_method() -> None:
    """A joblib worker (loky) sets multiprocessing's start method to "loky", which the processes
    a job spawns itself (reference simulation, benchmark streams) cannot resolve: reset it."""
    if multiprocessing.get_start_method(allow_none=True) == "loky":
        multiprocessing.set_start_method(None, force=True)


def _record_failure(cfg: DictConfig, error: CaloError) -> None:
    from calo.tracking.sweep import record_failed_job

    try:
        tracking = _tracking(cfg)
    except CaloError:  # the tracking settings were the bad input: nowhere to record it
        return
    if tracking is not None:
        record_failed_job(tracking, error)
