"""python -m calo.train on the tiny model: end to end, exact resume, bad input, two workers,
and the JAX backend's weights loaded back under TensorFlow."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

from calo.errors import CaloError
from calo.hw import Machine, detect_machine
from calo.model.bf16 import BF16_ROUNDING_BOUND
from calo.train.checkpoint import latest_checkpoint
from calo.train.loop import BEST_GENERATOR, train

from .conftest import TINY_MODEL, TINY_TRAIN


@pytest.fixture
def compose_train(compose_run, tmp_path: Path):
    def _compose(*overrides: str):
        return compose_run(*TINY_TRAIN, f"train.checkpoint_root={tmp_path / 'ckpt'}",
                           *overrides, config_name="train")

    return _compose


def checkpoint_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as stored:
        return {key: stored[key] for key in stored.files if key != "state"}


def test_train_end_to_end_logs_registers_and_resumes(compose_train, compose_run,
                                                     store: Path) -> None:
    first = train(compose_train("train.epochs=1"))
    assert first.steps == 5 and first.best_epoch == 0
    assert (first.folder / BEST_GENERATOR).exists()
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(first.run_id, "train/g_loss")] == [0, 1, 2,
                                                                                        3, 4]
    assert "train/val_score" in run.data.metrics and "val/z_mean" in run.data.metrics
    assert run.data.metrics["val/targets_met"] in range(11)  # issue 11's targets, per validation
    assert run.data.metrics["val/separation_mean"] > 0 and run.data.metrics["val/svn"] > 0
    assert client.get_registered_model("calo-generator").name == "calo-generator"

    from calo.run import run as main_run

    version = max(int(v.version) for v in client.search_model_versions("name='calo-generator'"))
    run_id = main_run(compose_run("model=tiny", "data.n_showers=60", "batch_size=30",
                                  f"model.weights=models:/calo-generator/{version}",
                                  "physics.figures=false", "bench.enabled=false"))
    assert client.get_run(run_id).data.tags["generator_trained"] == "true"

    second = train(compose_train("train.epochs=2", "train.resume=true"))
    assert second.steps == 10 and second.run_id == first.run_id
    history = client.get_metric_history(first.run_id, "train/g_loss")
    assert sorted(m.step for m in history) == list(range(10))


def test_resume_continues_exactly(compose_train, trained: Path) -> None:
    straight = train(compose_train("train.max_steps=6", "train.name=straight", "tracking=off"))
    resumed = train(compose_train("train.max_steps=6", "tracking=off", "train.resume=true"))
    assert straight.steps == resumed.steps == 6
    expected = checkpoint_arrays(latest_checkpoint(straight.folder))
    actual = checkpoint_arrays(latest_checkpoint(resumed.folder))
    for key, value in expected.items():
        np.testing.assert_allclose(actual[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


def test_checkpoint_of_another_config_is_refused(compose_train, trained: Path) -> None:
    with pytest.raises(CaloError, match="another model, data or recipe"):
        train(compose_train("train.max_steps=6", "tracking=off", "train.resume=true",
                            "train.real_label=0.8"))


def test_corrupt_checkpoint_is_refused(compose_train, trained: Path) -> None:
    checkpoint = latest_checkpoint(trained)
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(CaloError, match="not a readable checkpoint"):
        train(compose_train("train.max_steps=6", "tracking=off", f"train.resume={checkpoint}"))


def test_interrupted_checkpoint_write_leaves_the_previous_one(compose_train, trained: Path,
                                                             monkeypatch) -> None:
    before = sorted(trained.glob("*.ckpt.npz"))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        train(compose_train("train.max_steps=6", "tracking=off", "train.resume=true"))
    assert sorted(trained.glob("*.ckpt.npz")) == before
    assert not list(trained.glob(".part-*"))


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.batch_size=500"], "larger than the"),
    (["train.resume=true", "train.name=never-trained"], "no checkpoint"),
    (["train.strategy=multi_worker"], "TF_CONFIG"),
])
def test_bad_training_input_is_a_clear_error(compose_train, overrides, message,
                                             monkeypatch) -> None:
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(CaloError, match=message):
        train(compose_train("tracking=off", *overrides))


def _losses(result) -> list[dict]:
    lines = (result.folder / "history.jsonl").read_text().splitlines()
    records = (json.loads(line) for line in lines)
    return [r for r in records if "train/g_loss" in r and "finished" not in r]


@pytest.mark.skipif(not detect_machine().has_bf16,
                    reason="this CPU has no AVX512_BF16 or AMX-BF16: bf16 training is refused")
def test_bf16_training_follows_float32_and_resumes_in_float32(compose_train) -> None:
    float32 = train(compose_train("train.max_steps=1", "train.name=fp32", "tracking=off",
                                  "model.dropout=0"))
    bf16 = train(compose_train("train.max_steps=1", "train.name=bf16", "tracking=off",
                               "model.dropout=0", "train.precision=bf16"))
    keys = ("train/d_loss_real", "train/d_loss_fake", "train/g_loss")
    expected, actual = ([_losses(result)[0][key] for key in keys] for result in (float32, bf16))
    assert actual == pytest.approx(expected, rel=0.05)
    assert actual != expected  # computed in bf16 indeed
    # float32 variables: the bf16 checkpoint continues in float32
    resumed = train(compose_train("train.max_steps=2", "train.name=bf16", "tracking=off",
                                  "model.dropout=0", "train.resume=true"))
    assert resumed.steps == 2


@pytest.mark.skipif(not detect_machine().has_bf16,
                    reason="this CPU has no AVX512_BF16 or AMX-BF16: bf16 training is refused")
def test_bf16_kernels_that_compute_another_network_are_refused(compose_train,
                                                               monkeypatch) -> None:
    from calo.config import TrainPrecision
    from calo.model.generator import build_generator
    from calo.train import mixed_precision

    model = TINY_MODEL
    with mixed_precision.dtype_policy(TrainPrecision.bf16):
        generator = build_generator(model, "linear")
    disagreement = mixed_precision.bf16_disagreement(generator, model)
    assert 0 < disagreement < BF16_ROUNDING_BOUND
    monkeypatch.setattr(mixed_precision, "bf16_disagreement", lambda *args: 0.97)
    with pytest.raises(CaloError, match="97% away from float32"):
        train(compose_train("train.max_steps=1", "tracking=off", "train.precision=bf16"))


def test_physics_losses_join_the_generator_loss(compose_train) -> None:
    plain = _losses(train(compose_train("train.max_steps=1", "train.name=plain", "tracking=off",
                                        "model.dropout=0")))[0]
    physics = _losses(train(compose_train("train.max_steps=1", "train.name=physics",
                                          "tracking=off", "model.dropout=0",
                                          "train.physics_loss_weights=[1,2,3]")))[0]
    assert "train/g_shape" not in plain  # the paper's recipe computes none
    parts = [physics[f"train/g_{name}"] for name in ("shape", "energy", "hits")]
    assert all(part > 0 for part in parts)
    adversarial = physics["train/g_loss"] - (parts[0] + 2 * parts[1] + 3 * parts[2])
    assert adversarial == pytest.approx(plain["train/g_loss"], rel=1e-4)  # same first step


def test_bf16_training_is_refused_on_a_cpu_without_bf16(compose_train, monkeypatch) -> None:
    plain = Machine("old CPU", (0, 1), ("avx2",))
    monkeypatch.setattr("calo.hw.topology.detect_machine", lambda: plain)
    with pytest.raises(CaloError, match="train.precision=bf16 needs a CPU with AVX512_BF16"):
        train(compose_train("tracking=off", "train.precision=bf16"))


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _train_command(tmp_path: Path, name: str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "calo.train", *TINY_TRAIN, "model.dropout=0",
            "train.max_steps=3", f"train.name={name}", f"train.checkpoint_root={tmp_path}",
            f"data.cache_dir={tmp_path / 'cache'}", "tracking=off",
            f"hydra.run.dir={tmp_path / ('hydra-' + name)}", *overrides]


# Training across processes is cluster work: it runs with the cluster tests (make test-cluster,
# which CI runs too), beside the same two workers launched as one SLURM job.
@pytest.mark.cluster
def test_two_workers_train_like_one_process(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("TF_CONFIG", None)
    single = subprocess.run(_train_command(tmp_path, "single"), env=env, capture_output=True,
                            text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]

    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers = []
    for index in range(2):
        config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        workers.append(subprocess.Popen(
            _train_command(tmp_path, "multi", "train.strategy=multi_worker"),
            env={**env, "TF_CONFIG": json.dumps(config)}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
        assert "trained 3 steps" in out  # both workers made progress
    assert latest_checkpoint(tmp_path / "multi") is not None  # the chief wrote it
    expected = checkpoint_arrays(latest_checkpoint(tmp_path / "single"))
    actual = checkpoint_arrays(latest_checkpoint(tmp_path / "multi"))
    for key, value in expected.items():
        if key.startswith(("generator/", "discriminator/")):
            _assert_same_training(actual[key], value, key)


def _assert_same_training(actual: np.ndarray, expected: np.ndarray, key: str) -> None:
    """Equal up to float noise. Adam scales a step by 1/sqrt(v), so a weight whose gradient is
    nearly zero can move by up to one learning rate on rounding alone: allow that for a few
    weights in a thousand (rounded up, so a 500-weight kernel may have two), and require the
    rest to agree tightly."""
    differ = np.count_nonzero(~np.isclose(actual, expected, rtol=1e-3, atol=1e-4))
    assert differ <= math.ceil(3e-3 * actual.size), f"{key}: {differ} of {actual.size} differ"
    np.testing.assert_allclose(actual, expected, atol=2 * 5e-4, err_msg=key)


PREDICT = """
import sys, numpy as np
from calo.config import ModelConfig
from calo.model import build_generator
generator = build_generator(ModelConfig(name="tiny", path_filters=[4, 8, 8, 4, 8, 8, 4, 4]))
generator.load_weights(sys.argv[1])
x = np.random.default_rng(0).standard_normal((3, 200)).astype(np.float32)
np.save(sys.argv[2], np.asarray(generator.predict(x, verbose=0)))
"""


@pytest.mark.slow
def test_jax_trained_weights_load_under_tensorflow(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    jax_env = {**os.environ, "KERAS_BACKEND": "jax"}
    command = _train_command(tmp_path, "jax", "train.max_steps=null", "train.epochs=1",
                             "train.physics_loss_weights=[1,1,1]")
    result = subprocess.run(command, env=jax_env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    weights = tmp_path / "jax" / BEST_GENERATOR
    on_jax = tmp_path / "jax.npy"
    subprocess.run([sys.executable, "-c", PREDICT, str(weights), str(on_jax)], env=jax_env,
                   check=True, timeout=300)
    on_tensorflow = tmp_path / "tf.npy"
    subprocess.run([sys.executable, "-c", PREDICT, str(weights), str(on_tensorflow)],
                   env={**os.environ, "KERAS_BACKEND": "tensorflow"}, check=True, timeout=300)
    np.testing.assert_allclose(np.load(on_tensorflow), np.load(on_jax), rtol=1e-4, atol=1e-5)
    assert np.load(on_jax).any()


def test_training_without_mlflow_is_published_into_the_registry(compose_train, store: Path,
                                                                tmp_path: Path) -> None:
    from calo.train.publish import publish

    result = train(compose_train("train.epochs=1", "tracking=off"))
    publish(result.folder, [*TINY_TRAIN, f"tracking.store_dir={store}",
                            "train.register_name=published"])
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    (version,) = client.search_model_versions("name='published'")
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/val_score")] == [0]
    with pytest.raises(CaloError, match="no history.jsonl"):
        publish(tmp_path, TINY_TRAIN)


def test_averaged_checkpoints_hold_the_mean_of_their_networks(compose_train, trained: Path,
                                                              tmp_path: Path) -> None:
    from calo.model.generator import build_generator
    from calo.train.average import average_checkpoints

    train(compose_train("train.max_steps=6", "tracking=off", "train.resume=true"))
    checkpoints = sorted(trained.glob("step-*.ckpt.npz"))
    assert [path.name[:13] for path in checkpoints] == ["step-00000003", "step-00000006"]
    out = average_checkpoints(tmp_path / "mean", checkpoints, [*TINY_TRAIN])
    generator = build_generator(TINY_MODEL)
    generator.load_weights(out / "generator.weights.h5")
    stored = [checkpoint_arrays(path) for path in checkpoints]
    keys = sorted(key for key in stored[0] if key.startswith("generator/")
                  and np.issubdtype(stored[0][key].dtype, np.floating))
    averaged = [np.asarray(v) for v in generator.variables
                if np.issubdtype(np.dtype(v.dtype), np.floating)]
    assert len(averaged) == len(keys)
    assert any(not np.allclose(stored[0][key], stored[1][key]) for key in keys)  # they trained
    for key, value in zip(keys, averaged):
        expected = (stored[0][key] + stored[1][key]) / 2
        np.testing.assert_allclose(value, expected, rtol=1e-6, atol=1e-7, err_msg=key)
    assert (out / "discriminator.weights.h5").exists()
    with pytest.raises(CaloError, match="at least two checkpoints"):
        average_checkpoints(tmp_path / "one", checkpoints[:1], [*TINY_TRAIN])
