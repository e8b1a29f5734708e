"""The main job: python -m calo.run precision=int8_inc hw=cascadelake

compose config -> apply hardware -> reference showers -> generator -> precision engine
-> generate -> physics -> MLflow. Each stage lives in its own module; this file only wires them.
"""

from __future__ import annotations

import logging
import tempfile

import hydra
import numpy as np
from omegaconf import DictConfig

from calo.cli import exit_on_user_error
from calo.config import Backend, RunConfig, to_settings
from calo.data import Showers, load_reference
from calo.hw import Topology, apply_topology, resolve_topology
from calo.multirun import is_sweep_job, run_sweep_job
from calo.paths import CONFIG_DIR
from calo.tracking import Tracker, tracked_run

__all__ = ["main", "run"]

log = logging.getLogger("calo.run")


def run(cfg: DictConfig) -> str:
    """Run one job from a composed config; returns the MLflow run ID."""
    settings: RunConfig = to_settings(cfg)
    name = f"{settings.precision.name}@{settings.hw.name}"
    with tracked_run(cfg, settings.tracking, run_name=name) as tracker:
        topology = _hardware_stage(settings, tracker)
        reference = _data_stage(settings, tracker)
        generator, engine = _precision_stage(settings, tracker)
        _bench_stage(generator, engine, topology, settings, tracker)
        generated, fp32 = _generation_stage(generator, engine, reference, settings)
        _physics_stage(reference, generated, fp32, settings, tracker)
        return tracker.run_id


def _hardware_stage(settings: RunConfig, tracker: Tracker) -> Topology:
    topology = resolve_topology(settings.hw)
    log.info("hw=%s: %d threads x %d streams", topology.name, topology.threads, topology.streams)
    apply_topology(topology)
    tracker.log_params(topology.as_params())

    import keras

    keras.utils.set_random_seed(settings.seed)
    return topology


def _data_stage(settings: RunConfig, tracker: Tracker) -> Showers:
    reference = load_reference(settings.data)
    tracker.log_metrics({"data/n_showers": len(reference),
                         "data/energy_min": float(reference.energy.min()),
                         "data/energy_max": float(reference.energy.max())})
    return reference


def _precision_stage(settings: RunConfig, tracker: Tracker):
    from calo.model.io import NetworkIO
    from calo.model.weights import load_generator
    from calo.precision import build_engine, folder_size

    generator, trained = load_generator(settings.model)
    tracker.set_tags({"generator_trained": str(trained).lower()})
    tracker.log_params({"model/parameters": generator.count_params()})
    log.info("building the %s engine", settings.precision.name)
    engine = build_engine(generator, NetworkIO.from_config(settings.model), settings.precision,
                          latent_distribution=settings.model.latent_distribution)
    with tempfile.TemporaryDirectory() as folder:
        engine.save(folder)
        tracker.log_metrics({"engine/disk_mb": folder_size(folder) / 2**20,
                             "engine/memory_mb": engine.memory_bytes() / 2**20})
        tracker.log_artifacts(folder, "engine")
    tracker.log_dict({"nodes": engine.dtype_table()}, "engine_dtypes.json")
    tracker.log_params({f"engine/{key}": value for key, value in engine.counts().items()})
    tracker.log_dict(engine.details, "engine_details.json")  # e.g. INC's quantizable nodes
    if settings.precision.profile:
        _profile_stage(engine, settings, tracker)
    return generator, engine


def _profile_stage(engine, settings: RunConfig, tracker: Tracker) -> None:
    from calo.precision.profile import op_breakdown

    log.info("profiling the %s engine op by op at batch size %d", settings.precision.name,
             settings.batch_size)
    breakdown = op_breakdown(engine, settings.batch_size)
    tracker.log_metrics(breakdown.metrics())
    tracker.log_text(breakdown.markdown(), "engine_profile.md")


def _bench_stage(generator, engine, topology: Topology, settings: RunConfig,
                 tracker: Tracker) -> None:
    if not settings.bench.enabled:
        return
    from calo.bench import bench_engine, log_report

    log.info("benchmarking the %s engine: %d stream(s) x %d thread(s)", settings.precision.name,
             topology.streams, topology.threads_per_stream)
    log_report(bench_engine(generator, engine, settings, topology), tracker)


def _generation_stage(generator, engine, reference: Showers,
                      settings: RunConfig) -> tuple[Showers, Showers]:
    """The engine's showers, and the fp32 generator's from the same latents and energies (the
    same object when the engine is fp32: it is not generated twice)."""
    from calo.model.io import sample_latent

    count = settings.n_generated or len(reference)
    energy = reference.energy[np.arange(count) % len(reference)]
    rng = np.random.default_rng(settings.seed)
    latent = sample_latent(count, settings.model.latent_dim,
                           settings.model.latent_distribution, rng)
    log.info("generating %d showers with the %s engine", count, settings.precision.name)
    showers = Showers(engine.generate(latent, energy, settings.batch_size, progress=True), energy)
    if settings.precision.backend is Backend.fp32:
        return showers, showers
    from calo.precision.fp32 import FP32Engine

    log.info("generating the same %d showers with the fp32 generator", count)
    fp32 = FP32Engine.from_keras(generator, engine.io)
    return showers, Showers(fp32.generate(latent, energy, settings.batch_size, progress=True),
                            energy)


def _physics_stage(reference: Showers, generated: Showers, fp32: Showers, settings: RunConfig,
                   tracker: Tracker) -> None:
    from calo.physics import validate
    from calo.physics.table import render_run_table
    from calo.report.profiles import PROFILES_ARTIFACT, profile_record

    log.info("physics validation of %d %s showers against %d reference showers",
             len(generated), settings.precision.name, len(reference))
    result = validate(reference, generated, fp32=fp32, settings=settings.physics, progress=True)
    metrics = result.metrics()
    tracker.log_metrics(metrics)
    tracker.log_text(render_run_table(metrics, settings.precision.name), "physics/table.md")
    tracker.log_dict(profile_record(result), PROFILES_ARTIFACT)  # for the report's figures
    log.info("physics: svn %.4g (statistical floor %.4g)", metrics["physics/svn"],
             metrics["physics/svn_floor"])
    _targets_stage(result, tracker)
    if settings.physics.figures:
        from calo.physics.plots import validation_figures

        for artifact, figure in validation_figures(result, settings.precision.name).items():
            tracker.log_figure(figure, artifact)


def _targets_stage(result, tracker: Tracker) -> None:
    """The generator's physics targets (issue 11) for this sample: a table and one line."""
    from calo.physics.targets import generator_targets, targets_table

    checks = generator_targets(result)
    tracker.log_metrics({"targets/met": sum(check.met for check in checks),
                         "targets/count": len(checks),
                         **{f"targets/{check.key}": check.generated for check in checks}})
    tracker.log_text(targets_table(checks), "physics/targets.md")
    missed = [check.measure for check in checks if not check.met]
    log.info("physics targets: %d of %d met%s", len(checks) - len(missed), len(checks),
             f" (missed: {'; '.join(missed)})" if missed else "")


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="run")
def main(cfg: DictConfig) -> None:
    if is_sweep_job():  # -m: bad input ends this job, not the sweep
        run_sweep_job(run, cfg)
    else:
        exit_on_user_error(run, cfg)


if __name__ == "__main__":
    exit_on_user_error(main)  # a sweep's parent stopped by Ctrl-C or SIGTERM: one line, 130
