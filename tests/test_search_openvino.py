"""The search over int8_ov on the tiny model: NNCF's nodes as the switches, OpenVINO's default
int8 as a comparison point, and the chosen set written as an int8_ov option that keeps the
study's activations. Runs where OpenVINO does, AVX2 included (int8_inc's search needs
AVX-512: tests/test_search_run.py)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from calo.config import to_settings
from calo.precision.inc import select_nodes
from calo.report.__main__ import main as report_main
from calo.report.markers import read_marked
from calo.search.pipeline import run_search
from calo.search.study import SETUP_ATTR, SPACE_ATTR

from .test_precision import needs_openvino
from .test_report_readme import _page
from .test_search_run import CHOOSE_CLOSEST, QUICK, load, runs_by_role

pytestmark = [needs_openvino,
              pytest.mark.filterwarnings("ignore:.*binned physics metrics will be noisy",
                                         "ignore::optuna.exceptions.ExperimentalWarning")]

STUDY = "tiny-int8_ov-node-multi@local"


def test_a_search_over_int8_ov_compares_with_openvino_default_int8(compose_run, store: Path,
                                                                   tmp_path: Path) -> None:
    option = tmp_path / "precision"
    option.mkdir()
    compose = functools.partial(compose_run, config_name="search")
    cfg = compose(*QUICK, *CHOOSE_CLOSEST, "precision=int8_ov", "precision.activations=asymmetric",
                  "search.n_trials=2", "search.compare_with=[int8_ov]", "search.autotune=true")
    parent_id = run_search(cfg)

    study = load(store, STUDY)
    assert study.user_attrs[SETUP_ATTR]["backend"] == "int8_ov"
    assert study.user_attrs[SETUP_ATTR]["activations"] == "asymmetric"
    quantizable = [tuple(pair) for pair in study.user_attrs[SPACE_ATTR]["space"]["quantizable"]]
    assert ("xy1_conv/conv2d_transpose", "Conv2DBackpropInput") in quantizable  # NNCF's nodes
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2 and trials[1].user_attrs["keep_fp32"]
    for trial in trials:
        assert select_nodes(trial.user_attrs["keep_fp32"], quantizable) == \
            trial.user_attrs["kept_nodes"]

    roles = runs_by_role(store)
    assert "autotune" not in roles  # Neural Compressor's, not run for int8_ov
    (comparison,) = roles["comparison"]
    assert comparison.data.params["precision.activations"] == "symmetric"  # OpenVINO's default
    assert comparison.data.params["precision.keep_fp32"] == "[]"
    for record in roles["trial"]:
        assert record.data.tags["mlflow.parentRunId"] == parent_id
        assert record.data.tags["search/reproduce"].startswith("precision=int8_ov ")
        assert "precision.activations=asymmetric" in record.data.tags["search/reproduce"]
    (parent,) = roles["search"]
    assert parent.data.metrics["search/chosen/trial"] == 1

    from calo.search.export import save_study_option

    settings = to_settings(compose(*QUICK, *CHOOSE_CLOSEST, "precision=int8_ov",
                                   "search.save_as=int8_ov_best"))
    fields = yaml.safe_load(save_study_option(settings, option).read_text())
    assert (fields["backend"], fields["activations"]) == ("int8_ov", "asymmetric")
    assert fields["keep_fp32"] == trials[1].user_attrs["keep_fp32"]

    # make results: the int8_ov search fills its own block, not int8_inc's
    root = tmp_path / "project"
    page = _page(root, "search", "search-ov")
    report_main(["--readme", "--root", str(root), "--tracking-uri",
                 f"sqlite:///{store / 'mlflow.db'}"])
    marked = read_marked(page)
    assert marked.content("search") == "\nold content of search\n"
    block = marked.content("search-ov")
    assert f"search {STUDY} `{parent_id[:8]}`" in block and "Chosen point: trial 1" in block
    assert "| compared with |" in block and "| int8_ov " in block
    assert (root / "docs" / "search_int8_ov_pareto_front.png").stat().st_size > 0
