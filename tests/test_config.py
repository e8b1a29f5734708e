"""Every option of every config group composes into valid typed settings; bad values are
refused with messages that name the key."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException

from calo.config import Backend, DataSource, FloatDtype, RunConfig, to_settings
from calo.errors import CaloError, one_line
from calo.model.generator import PERMUTATIONS
from calo.paths import CONFIG_DIR
from calo.precision.inc import select_nodes

from .conftest import GENERATOR_NODES

GROUPS = ["model", "precision", "hw", "data", "tracking"]
REQUIRED = {"data/eleescan": ["data.path=/some/files/*.h5"],
            "tracking/server": ["tracking.uri=http://127.0.0.1:5000"]}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes(compose_run, group: str) -> None:
    for option in options(group):
        extra = REQUIRED.get(f"{group}/{option}", [])
        settings = to_settings(compose_run(f"{group}={option}", *extra))
        assert isinstance(settings, RunConfig)
        assert getattr(settings, group).name == option


def test_every_option_naming_nodes_selects_nodes_of_the_full_generator(compose_run) -> None:
    for option in options("precision"):
        precision = to_settings(compose_run(f"precision={option}")).precision
        for patterns in (precision.keep_fp32, precision.split_weights):
            assert len(select_nodes(patterns, GENERATOR_NODES)) >= len(patterns)


def test_bf16_ov_accurate_splits_the_combining_convolution(compose_run) -> None:
    precision = to_settings(compose_run("precision=bf16_ov_accurate")).precision
    assert precision.backend is Backend.bf16_ov and not precision.rewrite
    assert select_nodes(precision.split_weights, GENERATOR_NODES) == ["combine_conv/Conv2D"]


def test_int8_ov_accurate_bf16_keeps_the_last_seven_convolutions_in_bf16(compose_run) -> None:
    precision = to_settings(compose_run("precision=int8_ov_accurate_bf16")).precision
    kept = select_nodes(precision.keep_fp32, GENERATOR_NODES)
    assert sorted(name.split("/")[0] for name in kept) == sorted(
        ["combine_conv", *(f"{path}{index}_conv" for path in PERMUTATIONS for index in (7, 8))])
    assert precision.backend is Backend.int8_ov and precision.float_dtype is FloatDtype.bf16


def test_defaults_are_the_papers_model_in_fp32_on_this_machine(compose_run) -> None:
    settings = to_settings(compose_run())
    assert settings.model.name == "full"
    assert settings.precision.backend is Backend.fp32
    assert settings.hw.name == "local" and settings.hw.threads is None
    assert settings.data.source is DataSource.reference


def test_cascadelake_is_the_papers_topology(compose_run) -> None:
    hw = to_settings(compose_run("hw=cascadelake")).hw
    assert (hw.threads, hw.streams, hw.sockets, hw.cores_per_socket) == (56, 7, 2, 28)
    assert "avx512_vnni" in hw.isa


def test_wrong_type_is_refused_when_composing(compose_run) -> None:
    with pytest.raises(ConfigCompositionException, match="hw.threads"):
        compose_run("hw.threads=abc")


def test_misspelled_option_lists_the_available_ones(compose_run) -> None:
    with pytest.raises(ConfigCompositionException, match="cascadelake"):
        compose_run("hw=cascadelak")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.n_showers=-5", "data.n_showers must be a positive"),
        ("data.energy_min=600", "0 < min < max"),
        ("hw.streams=0", "hw.streams must be positive"),
        ("hw.threads=2", None),
        ("batch_size=0", "batch_size must be positive"),
        ("precision.calibration_size=0", "calibration_size must be positive"),
        ("physics.energy_bins=[300,200]", "increasing"),
        ("precision.activations=asymmetric", "is an int8_ov option, not"),
        ("precision.float_dtype=bf16", "float_dtype=bf16 is an int8_ov option"),
        ("precision.keep_fp32=[combine_conv]",
         "keep_fp32 is an option of int8_inc, int8_ov, int8_ort, not fp32's: drop it$"),
        ("precision.split_weights=[combine_conv]", "split_weights is a bf16_ov option, not fp32"),
    ],
)
def test_bad_values_are_one_line_errors(compose_run, override: str, message: str | None) -> None:
    cfg = compose_run(override)
    if message is None:
        to_settings(cfg)
        return
    with pytest.raises(CaloError, match=message) as error:
        to_settings(cfg)
    assert "\n" not in str(error.value)


def test_keep_fp32_on_bf16_ov_points_to_split_weights(compose_run) -> None:
    with pytest.raises(CaloError, match="not bf16_ov's: drop it or use precision.split_weights"):
        to_settings(compose_run("precision=bf16_ov", "precision.keep_fp32=[combine_conv]"))


def test_more_streams_than_threads_is_refused(compose_run) -> None:
    with pytest.raises(CaloError, match="cannot exceed"):
        to_settings(compose_run("hw.threads=2", "hw.streams=3"))


def test_eleescan_needs_a_path(compose_run) -> None:
    with pytest.raises(CaloError, match="data.path"):
        to_settings(compose_run("data=eleescan"))


def test_one_line_keeps_the_first_non_blank_line_and_names_a_silent_error() -> None:
    assert one_line(ValueError("\n  first line\nsecond line")) == "first line"
    assert one_line(ValueError("abcdef"), 3) == "abc"
    assert one_line(KeyError()) == "KeyError"
