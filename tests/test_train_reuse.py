"""A training name already in use: a new training is refused instead of mixing with the old one,
pruning never deletes another training's checkpoints, and bad resume input ends in one error
line with the checkpoints left as they were."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from calo.config import to_settings
from calo.errors import CaloError
from calo.train.checkpoint import (
    KEEP,
    TrainState,
    checkpoints,
    read_state,
    save_checkpoint,
)
from calo.train.loop import _build_networks, _fingerprint, _initial_state, train

from .conftest import TINY_TRAIN


@pytest.fixture
def compose_train(compose_run, tmp_path: Path):
    def _compose(*overrides: str):
        return compose_run(*TINY_TRAIN, f"train.checkpoint_root={tmp_path / 'ckpt'}",
                           *overrides, config_name="train")

    return _compose


def fake_networks(size: int = 3) -> dict:
    """Stand-ins for networks and optimizers: anything with ``variables``."""
    return {"generator": SimpleNamespace(variables=[np.arange(size, dtype=np.float32)])}


def write_legacy_checkpoint(path: Path, state: TrainState) -> None:
    """A checkpoint as written before training ids: its state has no ``training_id``."""
    with np.load(path) as stored:
        arrays = {key: stored[key] for key in stored.files}
    legacy = {k: v for k, v in asdict(state).items() if k != "training_id"}
    arrays["state"] = np.frombuffer(json.dumps(legacy).encode(), dtype=np.uint8)
    with open(path, "wb") as stream:
        np.savez(stream, **arrays)


def contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in checkpoints(folder)}


def test_pruning_keeps_other_trainings_checkpoints(tmp_path: Path) -> None:
    legacy = save_checkpoint(tmp_path, fake_networks(), TrainState(step=10))
    write_legacy_checkpoint(legacy, TrainState(step=10))
    for step in (20, 30):
        save_checkpoint(tmp_path, fake_networks(), TrainState(step=step, training_id="other"))
    damaged = tmp_path / "step-00000040.ckpt.npz"
    damaged.write_bytes(b"not a checkpoint")
    for step in range(1, 6):
        save_checkpoint(tmp_path, fake_networks(), TrainState(step=step, training_id="mine"))
    assert [p.name for p in checkpoints(tmp_path)] == [
        "step-00000004.ckpt.npz", "step-00000005.ckpt.npz", "step-00000010.ckpt.npz",
        "step-00000020.ckpt.npz", "step-00000030.ckpt.npz", "step-00000040.ckpt.npz"]
    assert KEEP == 2
    assert read_state(legacy) == TrainState(step=10, training_id=None)


def test_state_of_an_older_or_newer_version_is_read() -> None:
    assert TrainState.from_json('{"step": 4, "fingerprint": "f"}') == TrainState(
        step=4, fingerprint="f")
    assert TrainState.from_json('{"step": 4, "added_later": 1}').step == 4


@pytest.mark.parametrize(("override", "message"), [
    ("train.max_steps=0", "train.max_steps must be a positive number"),
    ("train.max_minutes=0", "train.max_minutes must be a positive number"),
])
def test_zero_budget_is_refused(compose_train, override: str, message: str) -> None:
    with pytest.raises(CaloError, match=message) as error:
        train(compose_train("tracking=off", override))
    assert "\n" not in str(error.value)


def test_reused_name_is_refused_and_a_resumed_old_training_keeps_its_files(
        compose_train, trained: Path) -> None:
    (old,) = checkpoints(trained)
    write_legacy_checkpoint(old, read_state(old))  # as an older calo wrote it
    before = contents(trained)

    with pytest.raises(CaloError, match=r"already holds the checkpoints of a training \(latest "
                       r"step-00000003.ckpt.npz\): continue .* train.resume=true, or start a "
                       r"new one under another train.name"):
        train(compose_train("train.max_steps=6", "tracking=off"))
    assert contents(trained) == before

    resumed = train(compose_train("train.max_steps=8", "train.checkpoint_every=2",
                                  "tracking=off", "train.resume=true"))
    assert resumed.steps == 8
    files = checkpoints(trained)  # 4, 6, 8 written; 4 pruned
    assert [p.name for p in files] == ["step-00000003.ckpt.npz", "step-00000006.ckpt.npz",
                                       "step-00000008.ckpt.npz"]
    assert files[0].read_bytes() == before[old.name]  # the old training's file: not pruned
    new_ids = {read_state(p).training_id for p in files[1:]}
    assert len(new_ids) == 1 and None not in new_ids

    latest = files[-1]
    latest.write_bytes(latest.read_bytes()[:1000])
    before = contents(trained)
    with pytest.raises(CaloError, match=f"not a readable checkpoint .*train.resume={files[1]}"):
        train(compose_train("train.max_steps=10", "tracking=off",
                            "train.resume=true"))
    assert contents(trained) == before


def test_checkpoint_of_another_architecture_is_refused(compose_train, tmp_path: Path) -> None:
    """Same config fingerprint but variables of other shapes (the code changed), or another
    fingerprint: refused before anything is written."""
    cfg = compose_train("train.max_steps=3", "tracking=off")
    folder = tmp_path / "foreign"
    same = save_checkpoint(folder, fake_networks(),
                           TrainState(step=3, fingerprint=_fingerprint(to_settings(cfg)),
                                      training_id="x"))
    other = save_checkpoint(folder, fake_networks(), TrainState(step=6, fingerprint="other",
                                                                training_id="x"))
    before = contents(folder)
    with pytest.raises(CaloError, match="generator variable 0 has shape"):
        train(compose_train("train.max_steps=6", "tracking=off", f"train.resume={same}"))
    with pytest.raises(CaloError, match="another model, data or recipe"):
        train(compose_train("train.max_steps=6", "tracking=off", f"train.resume={other}"))
    assert contents(folder) == before


def test_corrupt_latest_checkpoint_ends_in_one_error_line(tmp_path: Path) -> None:
    folder = tmp_path / "damaged"
    save_checkpoint(folder, fake_networks(), TrainState(step=3, training_id="x"))
    latest = save_checkpoint(folder, fake_networks(), TrainState(step=6, training_id="x"))
    latest.write_bytes(latest.read_bytes()[:100])
    before = contents(folder)
    command = [sys.executable, "-m", "calo.train", *TINY_TRAIN, "train.max_steps=9",
               "train.name=damaged", f"train.checkpoint_root={tmp_path}", "train.resume=true",
               f"data.cache_dir={tmp_path / 'cache'}", "tracking=off",
               f"hydra.run.dir={tmp_path / 'hydra'}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("TF_CONFIG", None)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"{latest} is not a readable checkpoint" in errors[0]
    assert "train.resume=" + str(folder / "step-00000003.ckpt.npz") in errors[0]
    assert contents(folder) == before


def test_resume_auto_starts_a_training_then_continues_it(compose_train) -> None:
    """One prepared command (train.resume=auto) for the first run and every later one."""
    first = train(compose_train("train.max_steps=2", "train.name=auto", "tracking=off",
                                "train.resume=auto"))
    assert first.steps == 2
    second = train(compose_train("train.max_steps=4", "train.name=auto", "tracking=off",
                                 "train.resume=auto"))
    assert second.steps == 4 and second.folder == first.folder


def test_a_training_starts_from_another_trainings_checkpoint(compose_train,
                                                             tmp_path: Path) -> None:
    """model.weights / model.discriminator_weights may name a checkpoint: a new recipe (here
    without dropout, so without the dropout layers' random-generator states) starts from its
    networks; a checkpoint of other networks is refused in one line."""
    source = to_settings(compose_train("tracking=off"))
    written = _build_networks(source, steps_per_epoch=1)
    for weight in written.generator.weights + written.discriminator.weights:
        weight.assign(weight + 0.5)  # unlike any fresh initialisation
    path = save_checkpoint(tmp_path / "source", written.checkpointed(),
                           TrainState(step=7, training_id="x"))
    settings = to_settings(compose_train("tracking=off", "model.dropout=0",
                                         f"model.weights={path}",
                                         f"model.discriminator_weights={path}"))
    started = _build_networks(settings, steps_per_epoch=1)
    state = _initial_state(settings, started, tmp_path / "new")
    assert state.step == 0  # a new training, not a resumed one
    assert len(started.generator.variables) < len(written.generator.variables)  # RNG states
    for name in ("generator", "discriminator"):
        before, after = getattr(written, name).weights, getattr(started, name).weights
        assert len(after) == len(before)
        for old, new in zip(before, after):
            np.testing.assert_array_equal(np.asarray(old), np.asarray(new))
    other = to_settings(compose_train("tracking=off", "model.path_filters=[4,8,8,4,8,8,4,8]",
                                      f"model.weights={path}"))
    with pytest.raises(CaloError, match="does not fit"):
        _initial_state(other, _build_networks(other, steps_per_epoch=1), tmp_path / "other")
