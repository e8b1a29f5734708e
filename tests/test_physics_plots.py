"""Every physics figure renders, from a validation result or from arrays on a given axis."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.figure import Figure

from calo.data import Showers
from calo.physics import validate
from calo.physics.plots import (
    plot_profiles,
    sampling_fraction_figure,
    validation_figures,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*binned physics metrics will be noisy")


def render(figure: Figure) -> int:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return len(buffer.getvalue())


@pytest.fixture(scope="module")
def samples(reference_sample) -> tuple[Showers, Showers, Showers]:
    reference = Showers(reference_sample.ecal[:200], reference_sample.energy[:200])
    fp32 = Showers(reference_sample.ecal[200:], reference_sample.energy[200:])
    engine = Showers(np.round(fp32.ecal, 2), fp32.energy)  # a coarse "quantized" copy
    return reference, fp32, engine


def test_a_quantized_run_draws_every_figure(samples) -> None:
    reference, fp32, engine = samples
    figures = validation_figures(validate(reference, engine, fp32=fp32), "int8_inc")
    assert set(figures) == {
        "physics/profile_x.png", "physics/profile_y.png", "physics/profile_z.png",
        "physics/sampling_fraction.png", "physics/moments_hits.png",
        "physics/features_engine.png", "physics/features_fp32.png", "physics/pixelwise.png",
    }
    for name, figure in figures.items():
        assert render(figure) > 10_000, name
    legend = figures["physics/profile_z.png"].axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["reference", "fp32", "int8_inc"]


def test_an_fp32_run_draws_the_engine_once(samples) -> None:
    reference, fp32, _ = samples
    figures = validation_figures(validate(reference, fp32, fp32=fp32), "fp32")
    assert "physics/pixelwise.png" not in figures and "physics/features_fp32.png" not in figures
    legend = figures["physics/profile_y.png"].axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["reference", "fp32"]


def test_panels_draw_on_a_given_axis(samples) -> None:
    reference, fp32, _ = samples
    result = validate(reference, fp32)
    figure = Figure()
    ax = figure.subplots()
    drawn = plot_profiles({"reference": result.samples["reference"].profiles["x"],
                           "generated": result.samples["engine"].profiles["x"]}, "x", ax=ax,
                          log=True)
    assert drawn is figure and ax.get_yscale() == "log"
    other = Figure().subplots()
    assert sampling_fraction_figure(result, ax=other) is other.figure
    assert render(figure) > 0 and render(other.figure) > 0
