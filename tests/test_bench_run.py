"""The bench stage of calo.run and the make bench suite on the tiny model: what they log to
MLflow, and how bad bench settings are refused."""

from __future__ import annotations

import mlflow
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from calo.bench.__main__ import compose_variants
from calo.bench.suite import run_suite, suite_table
from calo.config import to_settings
from calo.errors import CaloError
from calo.paths import CONFIG_DIR
from calo.run import run

from .conftest import TINY

# Seconds, not minutes: one round of the minimum batches, one grid cell.
QUICK = ["bench.enabled=true", "bench.batch_sizes=[1,4]", "bench.warmup_batches=1",
         "bench.seconds=0", "bench.min_batches=2", "bench.rounds=1", "hw.threads=1"]


def client(store) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")


def test_quantized_run_logs_bench_metrics_with_fp32_side_by_side_and_the_grid(
        compose_run, store) -> None:
    cfg = compose_run(*TINY, *QUICK, "precision=int8_tflite", "precision.fixed_batch_size=4",
                      "precision.calibration_size=16", "bench.grid=true",
                      "bench.grid_threads=[1]", "bench.grid_streams=[1]",
                      "bench.grid_batch_size=4")
    run_id = run(cfg)
    metrics = client(store).get_run(run_id).data.metrics
    for batch in (1, 4):
        for key in ("throughput", "latency_median_ms", "latency_p90_ms"):
            assert metrics[f"bench/{key}_b{batch}"] > 0
            assert metrics[f"bench/fp32_{key}_b{batch}"] > 0
        assert metrics[f"bench/speedup_b{batch}"] > 0
    assert metrics["bench/peak_rss_mb"] > 0 and metrics["bench/fp32_peak_rss_mb"] > 0
    assert 0 < metrics["bench/disk_ratio"] < 1  # int8 weights take less room than fp32
    assert (metrics["bench/threads"], metrics["bench/streams"]) == (1, 1)
    assert metrics["bench/grid/1x1/throughput"] > 0 and metrics["bench/grid/1x1/speedup"] > 0
    artifacts = {a.path for a in client(store).list_artifacts(run_id, "bench")}
    assert {"bench/bench.json", "bench/grid.json", "bench/grid.md", "bench/grid.png"} <= artifacts


def test_suite_runs_each_precision_as_a_child_and_skips_what_is_missing(compose_run,
                                                                      store) -> None:
    probe = "bench.pixelwise_showers=10"
    cfg = compose_run(*TINY, *QUICK, probe, config_name="bench")
    variants = {name: compose_run(*TINY, *QUICK, probe, f"precision={name}",
                                  config_name="bench") for name in ("fp32", "fp16_tflite")}
    rows = run_suite(cfg, variants, {"int4": "no conf/precision/int4.yaml"})
    assert [(row.precision, row.skipped) for row in rows] == [
        ("fp32", None), ("fp16_tflite", None), ("int4", "skipped: no conf/precision/int4.yaml")]
    table = suite_table(rows, [1, 4])
    assert table[0]["showers/s b4"] > 0 and table[0]["note"] == "baseline"
    assert table[0]["pixel-wise"] == 0.0 and table[0]["peak MB"] > 100  # TensorFlow's runtime
    assert 0 < table[1]["pixel-wise"] < 0.01  # float16 weights: rounding, not another network
    assert table[2]["showers/s b4"] is None and "int4" in table[2]["note"]
    runs = client(store).search_runs(
        [client(store).get_experiment_by_name("calo").experiment_id])
    (parent,) = [r for r in runs if r.data.tags["bench_role"] == "summary"]
    fp32_child, fp16_child = sorted(
        (r for r in runs if r.data.tags["bench_role"] == "precision"),
        key=lambda r: r.data.tags["choice/precision"] != "fp32")
    assert fp16_child.data.metrics["physics/engine_vs_fp32/pixel_rel_mean"] == pytest.approx(
        table[1]["pixel-wise"])
    child = fp32_child
    assert child.info.run_id == rows[0].run_id
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.tags["choice/precision"] == "fp32"
    assert parent.info.status == child.info.status == "FINISHED"
    assert parent.data.metrics["bench/fp32/throughput_b4"] == child.data.metrics[
        "bench/throughput_b4"]
    artifacts = {a.path for a in client(store).list_artifacts(parent.info.run_id, "bench")}
    assert {"bench/table.md", "bench/table.json"} <= artifacts


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("bench.batch_sizes=[]", "bench.batch_sizes must be a non-empty list"),
        ("bench.batch_sizes=[1,0]", "bench.batch_sizes must be a non-empty list"),
        ("bench.rounds=0", "bench.rounds must be positive"),
        ("bench.seconds=-1", "bench.seconds cannot be negative"),
        ("bench.pixelwise_showers=-5", "bench.pixelwise_showers cannot be negative"),
    ],
)
def test_bad_bench_settings_are_one_line_errors(compose_run, override: str,
                                                message: str) -> None:
    with pytest.raises(CaloError, match=message) as error:
        to_settings(compose_run(override, config_name="bench"))
    assert "\n" not in str(error.value)


def test_bench_config_composes_the_full_model_in_every_precision(compose_run) -> None:
    settings = to_settings(compose_run(config_name="bench"))
    assert settings.model.name == "full" and settings.bench.enabled
    assert settings.bench.batch_sizes == [1, 64]
    assert {"fp32", "int8_inc", "int8_tflite"} <= set(settings.bench.precisions)


def test_variants_keep_the_command_line_and_swap_the_precision() -> None:
    overrides = ["model=tiny", "bench.rounds=1", "precision=fp32"]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        HydraConfig.instance().set_config(
            compose("bench", overrides=overrides, return_hydra_config=True))
        variants, skipped = compose_variants(["fp32", "int4"])
    assert list(variants) == ["fp32"]
    assert variants["fp32"].model.name == "tiny" and variants["fp32"].bench.rounds == 1
    assert "precision/int4" in skipped["int4"]
