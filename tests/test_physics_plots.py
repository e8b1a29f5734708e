"""Every physics figure is drawn as its baseline image says, from a validation result or from
arrays on a given axis: pytest-mpl compares each against tests/baseline/ (RMS tolerance below;
``--mpl`` is in the project's pytest options, so ``make test`` compares).

After a deliberate change of a figure, regenerate the baselines and look at them:

    .venv/bin/python -m pytest tests/test_physics_plots.py --mpl-generate-path=tests/baseline

The images do not depend on the machine's fonts: the mplhep style's text font (TeX Gyre Heros)
comes with the mplhep_data package and the maths font is matplotlib's own DejaVu Sans
(``test_fonts_come_from_python_packages``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import mplhep
import numpy as np
import pytest
from matplotlib import font_manager
from matplotlib.figure import Figure

from calo.data import Showers
from calo.physics import validate
from calo.physics.plots import (
    plot_profiles,
    sampling_fraction_figure,
    validation_figures,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*binned physics metrics will be noisy")

# RMS difference (0-255 grey levels) allowed: anti-aliasing noise passes, a moved curve,
# a missing point or another label does not.
TOLERANCE = 2
FIGURES = ("profile_x", "profile_y", "profile_z", "sampling_fraction", "moments_hits",
           "features_engine", "features_fp32", "pixelwise")


@pytest.fixture(scope="module")
def samples(reference_sample) -> tuple[Showers, Showers, Showers]:
    reference = Showers(reference_sample.ecal[:200], reference_sample.energy[:200])
    fp32 = Showers(reference_sample.ecal[200:], reference_sample.energy[200:])
    engine = Showers(np.round(fp32.ecal, 2), fp32.energy)  # a coarse "quantized" copy
    return reference, fp32, engine


@pytest.fixture(scope="module")
def quantized_figures(samples) -> dict[str, Figure]:
    reference, fp32, engine = samples
    return validation_figures(validate(reference, engine, fp32=fp32), "int8_inc")


def test_a_quantized_run_draws_every_figure(quantized_figures) -> None:
    assert set(quantized_figures) == {f"physics/{name}.png" for name in FIGURES}
    legend = quantized_figures["physics/profile_z.png"].axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["reference", "fp32", "int8_inc"]


@pytest.mark.parametrize("name", FIGURES)
@pytest.mark.mpl_image_compare(tolerance=TOLERANCE)
def test_a_quantized_run_figure_matches_its_baseline(quantized_figures, name: str) -> Figure:
    return quantized_figures[f"physics/{name}.png"]


def test_an_fp32_run_draws_the_engine_once(samples) -> None:
    reference, fp32, _ = samples
    figures = validation_figures(validate(reference, fp32, fp32=fp32), "fp32")
    assert "physics/pixelwise.png" not in figures and "physics/features_fp32.png" not in figures
    legend = figures["physics/profile_y.png"].axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["reference", "fp32"]


@pytest.fixture(scope="module")
def result(samples):
    reference, fp32, _ = samples
    return validate(reference, fp32)


@pytest.mark.mpl_image_compare(tolerance=TOLERANCE)
def test_profiles_draw_on_a_given_axis(result) -> Figure:
    figure = Figure()
    ax = figure.subplots()
    drawn = plot_profiles({"reference": result.samples["reference"].profiles["x"],
                           "generated": result.samples["engine"].profiles["x"]}, "x", ax=ax,
                          log=True)
    assert drawn is figure and ax.get_yscale() == "log"
    return figure


@pytest.mark.mpl_image_compare(tolerance=TOLERANCE)
def test_the_sampling_fraction_draws_on_a_given_axis(result) -> Figure:
    ax = Figure().subplots()
    assert sampling_fraction_figure(result, ax=ax) is ax.figure
    return ax.figure


def test_fonts_come_from_python_packages() -> None:
    """The style's fonts resolve to files installed with pip, not to the machine's fonts."""
    packages = Path(mpl.__file__).parents[1]
    with mpl.rc_context(mplhep.style.ROOT):
        text = font_manager.findfont(font_manager.FontProperties(family=["sans-serif"]),
                                     fallback_to_default=False)
    maths = font_manager.findfont(font_manager.FontProperties(family=["DejaVu Sans"]),
                                  fallback_to_default=False)
    assert Path(text).is_relative_to(packages / "mplhep_data"), text
    assert Path(maths).is_relative_to(Path(mpl.get_data_path())), maths
