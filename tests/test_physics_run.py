"""The physics stage of the main job: what one run logs, and the fp32 twin of a quantized
engine generated from the same inputs."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest

from calo.config import Backend, to_settings
from calo.data import load_reference
from calo.model.io import NetworkIO
from calo.model.weights import load_generator
from calo.precision.fp32 import FP32Engine
from calo.run import _generation_stage, run

from .conftest import TINY

pytestmark = pytest.mark.filterwarnings("ignore:.*binned physics metrics will be noisy")


def test_a_run_logs_the_physics_metrics_figures_and_table(compose_run, store: Path) -> None:
    run_id = run(compose_run(*TINY, "bench.enabled=false"))
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    metrics = client.get_run(run_id).data.metrics
    for key in ("physics/svn", "physics/svn_floor", "physics/reference/z_mean",
                "physics/fp32/svn", "physics/engine/analysis_metric", "physics/floor/sep_mean",
                "physics/engine/sf_fit_rel_dev", "physics/engine/hits_100_200"):
        assert key in metrics, key
    assert metrics["physics/fp32/svn"] == metrics["physics/engine/svn"]  # one fp32 sample
    assert not any(key.startswith("physics/engine_vs_fp32/") for key in metrics)
    artifacts = {a.path for a in client.list_artifacts(run_id, "physics")}
    assert {"physics/profile_x.png", "physics/profile_y.png", "physics/profile_z.png",
            "physics/sampling_fraction.png", "physics/moments_hits.png",
            "physics/features_engine.png", "physics/table.md", "physics/targets.md"} <= artifacts
    table = Path(client.download_artifacts(run_id, "physics/table.md")).read_text()
    assert table.count("\n") == 4 and "| fp32 |" in table
    targets = Path(client.download_artifacts(run_id, "physics/targets.md")).read_text()
    assert f"{metrics['targets/met']:.0f} of 10 targets met" in targets and "| SVN" in targets
    assert metrics["targets/svn"] == metrics["physics/engine/svn"]  # each target's own value


def test_a_quantized_engine_gets_an_fp32_twin_on_the_same_inputs(compose_run) -> None:
    settings = to_settings(compose_run(*TINY, "data.n_showers=20"))
    reference = load_reference(settings.data)
    generator, _ = load_generator(settings.model)
    engine = FP32Engine.from_keras(generator, NetworkIO.from_config(settings.model))

    generated, fp32 = _generation_stage(generator, engine, reference, settings)
    assert fp32 is generated  # precision=fp32: generated once

    settings.precision.backend = Backend.int8_tflite  # any engine that is not fp32
    generated, fp32 = _generation_stage(generator, engine, reference, settings)
    assert fp32 is not generated
    np.testing.assert_array_equal(fp32.energy, generated.energy)
    np.testing.assert_allclose(fp32.ecal, generated.ecal, rtol=1e-5, atol=1e-7)
