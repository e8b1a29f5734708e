"""The mixed-precision search's parts on known inputs: the space and its switches, the Pareto
front and the chosen point, the precision option it writes, the study checks and the storage
errors. No quantization here (tests/test_search_run.py runs searches)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from calo.config import ActivationScheme, Backend, PrecisionConfig
from calo.errors import CaloError
from calo.precision.inc import select_nodes
from calo.search.export import MARKER, option_text, reproduce_overrides, save_option
from calo.search.pareto import TrialRow, pareto_front, plain_int8, select
from calo.search.settings import (
    SearchConfig,
    SearchGranularity,
    SearchMode,
    SearchPhysics,
    SearchSpeed,
)
from calo.search.space import SearchSpace
from calo.search.study import (
    SETUP_ATTR,
    SPACE_ATTR,
    check_study,
    open_storage,
    open_study,
    search_setup,
)

from .conftest import GENERATOR_NODES


def space(granularity: str = "node") -> SearchSpace:
    return SearchSpace.from_nodes(GENERATOR_NODES, SearchGranularity(granularity))


@pytest.mark.parametrize(("granularity", "switches"), [
    ("node", 30),
    ("path", ["seed_dense", "path_xy", "path_zx", "path_yz", "paths", "combine_conv"]),
    ("depth", ["seed_dense", *[f"block_{b}" for b in range(9)], "paths", "combine_conv"]),
])
def test_switches_cover_every_quantizable_node_once(granularity: str, switches) -> None:
    found = space(granularity).switches
    names = [switch.name for switch in found]
    assert names == switches if isinstance(switches, list) else len(names) == switches
    nodes = [node for switch in found for node in switch.nodes]
    assert sorted(nodes) == sorted(name for name, _ in GENERATOR_NODES)


def test_a_path_switch_keeps_its_nine_blocks_and_nothing_else() -> None:
    path = space("path")
    params = {**path.plain_params(), "keep_fp32/path_zx": True, "keep_fp32/combine_conv": True}
    kept = path.kept_nodes(params)
    assert kept == [f"zx{b}_conv/Conv2D" for b in range(9)] + ["combine_conv/Conv2D"]
    assert path.kept_nodes(path.plain_params()) == []


def test_keep_patterns_select_exactly_the_kept_nodes() -> None:
    # a layer with two quantizable nodes
    nodes = [*GENERATOR_NODES, ("combine_conv/BiasAdd", "BiasAdd")]
    searched = SearchSpace.from_nodes(nodes, SearchGranularity.node)
    kept = ["xy4_conv/Conv2D", "paths/concat", "combine_conv/BiasAdd"]
    patterns = searched.keep_patterns(kept)
    assert patterns == ["xy4_conv", "paths", "combine_conv/BiasAdd"]
    assert select_nodes(patterns, nodes) == kept  # what precision=int8_inc builds
    assert "combine_conv/Conv2D" in [s.name for s in searched.switches]


def test_the_fingerprint_tells_spaces_apart() -> None:
    assert space().fingerprint() == space().fingerprint()
    assert space().fingerprint() != space("path").fingerprint()
    fewer = SearchSpace.from_nodes(GENERATOR_NODES[1:], "node")
    assert space().fingerprint() != fewer.fingerprint()
    with pytest.raises(CaloError, match="no quantizable node"):
        SearchSpace.from_nodes([], SearchGranularity.node)


def row(number: int, distance: float, speed: float, svn: float = 1.0,
        keep: tuple[str, ...] = ("xy0_conv",)) -> TrialRow:
    return TrialRow(number, keep, svn=svn, pixel=distance, latency_ms=100.0 / speed,
                    throughput=10.0 * speed, speedup=speed, distance=distance, speed=speed)


def test_the_front_plot_names_the_searched_precision_and_its_comparisons() -> None:
    from calo.search.front_plot import plot_front

    search = SearchConfig(physics=SearchPhysics.pixel)
    rows = [row(0, 0.06, 2.5, keep=()), row(1, 0.01, 2.2)]
    selection = select(rows, plain_int8(rows), fp32_svn=1.0, search=search)
    others = {"int8_ov": {"speed": 2.1, "pixel": 0.08, "svn": 1.0}}
    figure = plot_front(rows, pareto_front(rows, search.speed), selection, search, others,
                        searched="int8_ov")
    labels = [text.get_text() for ax in figure.axes for text in ax.get_legend().get_texts()]
    assert "plain int8_ov (no node kept)" in labels and "int8_ov" in labels
    assert "80 % of plain int8_ov (no node kept)'s speed" in labels


def test_pareto_front_keeps_the_undominated_fastest_first() -> None:
    rows = [row(0, 0.030, 6.0), row(1, 0.020, 5.0), row(2, 0.025, 4.0),  # 2: beaten by 1
            row(3, 0.010, 2.0), row(4, 0.030, 6.0)]  # 4 ties 0: neither dominates
    assert [r.number for r in pareto_front(rows, SearchSpeed.speedup)] == [0, 4, 1, 3]
    # latency is minimised: the same rows read as latencies put the slowest "speed" first
    assert [r.number for r in pareto_front(rows, SearchSpeed.latency)] == [3]


def test_the_chosen_point_is_the_most_accurate_of_those_meeting_both_conditions() -> None:
    search = SearchConfig(physics_tolerance=0.1, min_speed_fraction=0.8)
    plain = row(0, 0.030, 6.0, svn=1.05, keep=())
    rows = [plain, row(1, 0.020, 5.0, svn=1.08), row(2, 0.010, 4.0, svn=1.02),
            row(3, 0.005, 5.5, svn=1.2)]  # 3: most accurate pixel-wise but SVN > 1.1
    chosen = select(rows, plain, fp32_svn=1.0, search=search)
    assert chosen.row.number == 1  # trial 2 keeps only 67 % of plain's speed
    assert chosen.meets_physics and chosen.meets_speed
    assert chosen.speed_fraction == pytest.approx(5.0 / 6.0)
    assert chosen.svn_ratio == pytest.approx(1.08)
    assert "meets both conditions" in chosen.sentence(search)


def test_without_a_point_meeting_both_the_closest_is_named_and_said_so() -> None:
    search = SearchConfig()
    plain = row(0, 0.030, 6.0, svn=1.5, keep=())
    chosen = select([plain, row(1, 0.020, 5.0, svn=1.3)], plain, fp32_svn=1.0, search=search)
    assert chosen.row.number == 1 and not chosen.meets_physics and chosen.meets_speed
    assert "no trial meets both conditions" in chosen.sentence(search)
    assert "SVN condition missed" in chosen.sentence(search)


def test_plain_int8_speed_is_the_median_of_its_trials() -> None:
    rows = [row(0, 0.03, 7.0, keep=()), row(1, 0.02, 5.0), row(2, 0.03, 5.2, keep=()),
            row(3, 0.03, 6.1, keep=())]
    plain = plain_int8(rows)
    assert plain.number == 0 and plain.speed == 6.1 and plain.speedup == 6.1
    assert plain_int8(rows[1:2]) is None


def test_single_mode_chooses_within_the_latency_budget() -> None:
    search = SearchConfig(mode=SearchMode.single, latency_budget_ms=22.0)
    rows = [row(0, 0.030, 6.0, keep=()), row(1, 0.010, 4.0), row(2, 0.020, 5.0)]  # 16.7/25/20 ms
    assert select(rows, rows[0], fp32_svn=1.0, search=search).row.number == 2


def test_the_option_file_reproduces_the_set_and_its_calibration(tmp_path: Path) -> None:
    calibration = {"size": 128, "energy": [100.0, 500.0], "seed": 3, "rewrite": True}
    text = option_text("int8_inc_best", ["xy4_conv", "combine_conv"],
                       {"calibration": calibration}, "trial 7")  # before studies named backends
    path = save_option("int8_inc_best", text, tmp_path)
    assert path.read_text().startswith(MARKER)
    fields = yaml.safe_load(path.read_text())
    assert fields.pop("defaults") == ["precision_schema", "_self_"]
    precision = PrecisionConfig(**fields)  # every field is one of the schema's
    assert precision.keep_fp32 == ["xy4_conv", "combine_conv"]
    assert (precision.calibration_size, precision.calibration_seed) == (128, 3)
    save_option("int8_inc_best", text, tmp_path)  # the search may overwrite its own file


def test_the_option_file_of_an_int8_ov_study_keeps_its_backend_and_activations() -> None:
    setup = {"backend": "int8_ov", "activations": "asymmetric",
             "calibration": {"size": 256, "energy": [100.0, 500.0], "seed": 0, "rewrite": False}}
    fields = yaml.safe_load(option_text("int8_ov_best", [r"xy8_conv"], setup, "trial 3"))
    fields.pop("defaults")
    precision = PrecisionConfig(**fields)
    assert precision.backend is Backend.int8_ov
    assert precision.activations is ActivationScheme.asymmetric
    assert (precision.keep_fp32, precision.rewrite) == (["xy8_conv"], False)


def test_an_option_not_written_by_the_search_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "int8_inc.yaml").write_text("name: int8_inc\n")
    with pytest.raises(CaloError, match="was not written by the search"):
        save_option("int8_inc", "x", tmp_path)
    with pytest.raises(CaloError, match="lower-case letters"):
        save_option("../evil", "x", tmp_path)
    assert (tmp_path / "int8_inc.yaml").read_text() == "name: int8_inc\n"


def test_reproduce_overrides_name_what_differs_from_the_defaults() -> None:
    precision = PrecisionConfig(name="int8_inc", backend=Backend.int8_inc, calibration_size=32)
    assert reproduce_overrides(precision, ["xy4_conv", "paths"]) == (
        "precision=int8_inc precision.keep_fp32=[xy4_conv,paths] precision.calibration_size=32")
    # int8_ov's own option does not rewrite: only what differs from it is named
    precision = PrecisionConfig(name="x", backend=Backend.int8_ov, rewrite=False,
                                activations=ActivationScheme.asymmetric)
    assert reproduce_overrides(precision, ["combine_conv"]) == (
        "precision=int8_ov precision.keep_fp32=[combine_conv] precision.activations=asymmetric")


@pytest.mark.parametrize(("url", "shown", "hidden"), [
    ("sqlite:////nonexistent-folder/deeper/optuna.db", "sqlite:////nonexistent-folder", None),
    ("postgresql://calo:secret@127.0.0.1:1/studies", "postgresql://calo:***@127.0.0.1:1",
     "secret"),
    ("not a url", "not a url", None),
])
def test_a_storage_that_cannot_be_opened_is_one_line(url: str, shown: str, hidden) -> None:
    with pytest.raises(CaloError, match="cannot open the Optuna storage") as error:
        open_storage(url, heartbeat_s=60)
    message = str(error.value)
    assert shown in message and "\n" not in message and "search.storage" in message
    assert hidden is None or hidden not in message


def test_a_storage_another_process_is_creating_is_opened_again(tmp_path: Path,
                                                               monkeypatch) -> None:
    from sqlalchemy.exc import OperationalError

    import calo.search.study as study_module

    opened = study_module._rdb_storage
    attempts = []

    def collides_once(url: str, heartbeat_s: int):
        attempts.append(url)
        if len(attempts) == 1:  # what sqlite says when the other process created it first
            raise OperationalError("CREATE TABLE studies", {}, Exception("table studies "
                                                                         "already exists"))
        return opened(url, heartbeat_s)

    monkeypatch.setattr(study_module, "_rdb_storage", collides_once)
    monkeypatch.setattr(study_module.time, "sleep", lambda seconds: None)
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_s=60)
    assert len(attempts) == 2 and storage.get_all_studies() == []


@pytest.fixture
def storage(tmp_path: Path) -> optuna.storages.RDBStorage:
    return open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_s=60)


def test_a_study_remembers_its_space_and_refuses_another(storage) -> None:
    search = SearchConfig()
    study, created = open_study(storage, "s", search)
    node = {"fingerprint": space().fingerprint(), "space": space().describe()}
    check_study(study, node, {"n_showers": 100}, search, "sqlite:///x")
    assert created and study.user_attrs[SPACE_ATTR] == node
    again, created = open_study(storage, "s", search)
    assert not created
    check_study(again, node, {"n_showers": 100}, search, "sqlite:///x")  # the same: resumes
    path = {"fingerprint": space("path").fingerprint(), "space": space("path").describe()}
    with pytest.raises(CaloError, match=r"study 's' in sqlite:///x belongs to another search "
                                        r"space \(granularity node, 30 switches; here path, 6\)"):
        check_study(again, path, {"n_showers": 100}, search, "sqlite:///x")
    with pytest.raises(CaloError, match=r"other settings \(n_showers: 100 there, 200 here\)"):
        check_study(again, node, {"n_showers": 200}, search, "sqlite:///x")
    assert again.user_attrs[SETUP_ATTR] == {"n_showers": 100}


def test_a_study_recorded_before_setups_named_the_precision_resumes_as_int8_inc(storage) -> None:
    search = SearchConfig()
    study, _ = open_study(storage, "old", search)
    node = {"fingerprint": space().fingerprint(), "space": space().describe()}
    check_study(study, node, {"n_showers": 100}, search, "sqlite:///x")  # an older setup
    now = {"n_showers": 100, "backend": "int8_inc", "activations": "symmetric",
           "float_dtype": "fp32"}
    check_study(study, node, now, search, "sqlite:///x")
    with pytest.raises(CaloError, match="backend: 'int8_inc' there, 'int8_ov' here"):
        check_study(study, node, {**now, "backend": "int8_ov"}, search, "sqlite:///x")


def test_the_setup_knows_the_weights_by_their_content_and_the_isa_cap(compose_run,
                                                                       tmp_path: Path) -> None:
    """Retrained weights saved under the same path, or oneDNN capped, make another study."""
    from calo.config import to_settings

    weights = tmp_path / "generator.weights.h5"

    def setup(*overrides: str) -> dict:
        return search_setup(to_settings(compose_run(f"model.weights={weights}", *overrides,
                                                    config_name="search")))

    weights.write_bytes(b"first training")
    first = setup()
    assert setup() == first
    weights.write_bytes(b"second training")
    assert setup()["weights_sha256"] != first["weights_sha256"]
    assert setup("hw.max_isa=AVX2")["hw"]["max_isa"] == "AVX2"
    assert setup()["hw"]["max_isa"] is None


def test_a_study_with_other_objectives_is_refused(storage) -> None:
    study, _ = open_study(storage, "s", SearchConfig())
    single = SearchConfig(mode=SearchMode.single, latency_budget_ms=10.0)
    node = {"fingerprint": "f", "space": space().describe()}
    with pytest.raises(CaloError, match="1 objective|2 objective"):
        check_study(study, node, {}, single, "sqlite:///x")


@pytest.mark.parametrize(("override", "message"), [
    ("search.n_trials=0", "search.n_trials must be positive"),
    ("search.max_failure_rate=1.5", "search.max_failure_rate must be in [0, 1]"),
    ("search.mode=single", "search.mode=single needs search.latency_budget_ms"),
    ("search.granularity=layer", "search.granularity"),
])
def test_bad_search_settings_are_one_line_errors(compose_run, override: str,
                                                 message: str) -> None:
    from hydra.errors import ConfigCompositionException

    from calo.config import to_settings

    with pytest.raises((CaloError, ConfigCompositionException)) as error:
        to_settings(compose_run(override, config_name="search"))
    assert message in str(error.value)


def test_the_search_needs_an_int8_inc_or_int8_ov_precision(compose_run) -> None:
    from hydra.errors import ConfigCompositionException

    from calo.config import to_settings

    with pytest.raises(CaloError, match="needs precision=int8_inc or int8_ov"):
        to_settings(compose_run("precision=int8_tflite", config_name="search"))
    settings = to_settings(compose_run(config_name="search"))
    assert settings.precision.backend.value == "int8_inc"
    assert settings.precision.calibration_size == 256  # int8_inc's own settings
    settings = to_settings(compose_run("precision=int8_ov", config_name="search"))
    assert settings.precision.rewrite is False  # int8_ov's own settings
    with pytest.raises(ConfigCompositionException, match="search"):  # not a run's setting
        compose_run("search.n_trials=3")


def test_the_first_generation_starts_next_to_plain_int8() -> None:
    searched = space()
    sets = searched.sparse_params(9, 2, seed=0)
    kept = [searched.kept_nodes(params) for params in sets]
    assert len(sets) == 9 and len({tuple(k) for k in kept}) == 9  # distinct
    assert all(1 <= len(k) <= 2 for k in kept)
    assert sets == searched.sparse_params(9, 2, seed=0)  # seeded
    assert len(space("path").sparse_params(100, 1, seed=0)) == 6  # every single switch, once
    assert searched.sparse_params(9, 0, seed=0) == []


def test_an_enqueued_first_generation_is_nsga2s_first_generation() -> None:
    from calo.search.study import EnqueuedFirstNSGAII

    sampler = EnqueuedFirstNSGAII(population_size=3, seed=0)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    for on in ("a", "b", "c"):
        study.enqueue_trial({name: name == on for name in "abcdef"})

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        values = [trial.suggest_categorical(name, [False, True]) for name in "abcdef"]
        return -sum(values), -sum(values)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=6)
    key = f"{EnqueuedFirstNSGAII.__name__}:generation"
    assert [t.system_attrs[key] for t in study.trials] == [0, 0, 0, 1, 1, 1]
