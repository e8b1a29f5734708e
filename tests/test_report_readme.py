"""python -m calo.report --readme: result blocks filled from a store whose runs were logged by
the benchmark suite's own code (the engines and timing replaced by fixed numbers), blocks
without runs kept and reported, malformed markers refused before anything is written; and the
project's own README and docs: every marker well formed, every relative link resolving."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from calo.bench.results import BenchResult, Comparison, Measurement, Round, StreamReport
from calo.bench.stage import BenchReport
from calo.paths import PROJECT_ROOT
from calo.report.__main__ import main as report_main
from calo.report.markers import MarkerError, read_marked
from calo.report.results import BLOCKS, marked_pages, update_docs

from .conftest import needs_int8_kernels
from .test_sweep import sweep

# showers/s at batch 64 of each precision, and of the fp32 rounds that alternate with it
SPEED = {"fp32": 50.0, "int8_inc": 175.0, "int8_tflite": 190.0}
FP32_BESIDE = 47.5


def _measurement(precision: str, batch: int, throughput: float) -> Measurement:
    seconds = batch / throughput
    stream = StreamReport(1, (0,), 1, batch, (seconds,), 0.0, seconds, 2**30)
    return Measurement(precision, batch, (Round((stream,)),))


def _fake_measure(candidate, baseline, topology, cfg, seed) -> BenchReport:
    comparisons = {batch: Comparison(
        _measurement(candidate.name, batch, SPEED[candidate.name]),
        None if baseline is None else _measurement("fp32", batch, FP32_BESIDE))
        for batch in cfg.batch_sizes}
    disk = 8 * 2**20 if candidate.name == "fp32" else 2 * 2**20
    return BenchReport(BenchResult(candidate.name, topology.threads, topology.streams, disk,
                                   comparisons, None if baseline is None else 8 * 2**20))


@pytest.fixture
def suite_store(compose_run, store: Path, monkeypatch: pytest.MonkeyPatch):
    """Runs of ``make bench`` (no overrides) and of Table 1 capped and uncapped, logged by
    calo.bench.suite.run_suite itself. Returns a function that runs one suite."""
    from calo.bench import suite

    monkeypatch.setattr("calo.model.weights.load_generator", lambda model: (None, True))
    monkeypatch.setattr(suite, "save_engines",
                        lambda generator, io, precision, *args, **kwargs: SimpleNamespace(
                            name=precision.name))
    monkeypatch.setattr(suite, "measure", _fake_measure)
    monkeypatch.setattr(suite._PixelProbe, "of", lambda settings, baseline: None)  # no engines
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")  # hw=cascadelake sets it: restored after

    def run(*overrides: str, skipped: dict[str, str] | None = None) -> list[suite.SuiteRow]:
        names = ["fp32", "int8_inc", "int8_tflite"]
        variants = {name: compose_run(*overrides, f"precision={name}", config_name="bench")
                    for name in names}
        cfg = compose_run(*overrides, config_name="bench")  # the Hydra config tags are read from
        return suite.run_suite(cfg, variants, skipped)

    return run


def _page(root: Path, *names: str, text: str = "old content") -> Path:
    (root / "docs").mkdir(parents=True, exist_ok=True)
    page = root / "README.md"
    page.write_text("# page\n\n" + "".join(
        f"<!-- results:{name} -->\n{text} of {name}\n<!-- /results:{name} -->\n\n"
        for name in names) + "the end\n")
    return page


def test_blocks_are_filled_with_the_runs_ids_machine_and_values(
        suite_store, store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = suite_store()
    capped = suite_store("hw=cascadelake", "tracking.experiment=table1-isa",
                         skipped={"bf16_inc": "no bf16 under the cap"})
    uncapped = suite_store("hw=cascadelake", "hw.max_isa=null",
                           "tracking.experiment=table1-isa")
    plain = suite_store("tracking.experiment=rewrites", "precision.rewrite=false")
    rewritten = suite_store("tracking.experiment=rewrites")
    root = tmp_path / "project"
    page = _page(root, "bench", "table1-isa", "rewrites", "search")
    (root / "docs" / "other.md").write_text("<!-- results:bench -->\n<!-- /results:bench -->\n")

    report_main(["--readme", "--root", str(root), "--tracking-uri",
                 f"sqlite:///{store / 'mlflow.db'}"])
    printed = capsys.readouterr().out
    text = page.read_text()

    marked = read_marked(page)
    bench_block, isa_block = marked.content("bench"), marked.content("table1-isa")
    assert all(row.run_id[:8] in bench_block for row in bench)
    assert all(row.run_id[:8] in isa_block for row in [*capped, *uncapped] if row.run_id)
    assert "machine: " in bench_block and "cores, ISA " in bench_block
    # make bench's own table: int8_inc 175 showers/s, 175 / 47.5 = 3.68 x the fp32 beside it
    int8_line = next(line for line in bench_block.splitlines() if "| int8_inc" in line)
    assert "175" in int8_line and "3.68" in int8_line
    # Table 1 both ways: int8_tflite 190 / 47.5 = 4 capped and uncapped; bf16_inc skipped
    row = [cell.strip() for cell in next(line for line in isa_block.splitlines()
                                         if line.startswith("| int8_tflite")).split("|")[1:-1]]
    assert row == ["int8_tflite", "190", "4", "190", "4", "2", "2", "—", "—"]  # no probe here
    assert "bf16_inc, capped: skipped: no bf16 under the cap" in isa_block
    # the rewrites both ways: each suite's runs under its own label
    rewrites_block = marked.content("rewrites")
    assert "rewrites: showers/s" in rewrites_block and "no rewrites: vs fp32" in rewrites_block
    for way, rows in (("rewrites", rewritten), ("no rewrites", plain)):
        assert all(f"{way} {row.precision} `{row.run_id[:8]}`" in rewrites_block for row in rows)
    # no search in the store: its block is kept, and the command that makes one is named
    assert marked.content("search") == "\nold content of search\n"
    assert "kept search as it is" in printed and "python -m calo.search" in printed
    assert "updated bench in README.md" in printed
    assert "updated bench in docs/other.md" in printed
    assert text.startswith("# page\n") and text.endswith("the end\n")

    # a second pass over the same runs changes nothing, and says so
    report_main(["--readme", "--root", str(root), "--tracking-uri",
                 f"sqlite:///{store / 'mlflow.db'}"])
    assert page.read_text() == text
    assert "unchanged bench" in capsys.readouterr().out


@needs_int8_kernels
def test_the_op_breakdown_block_is_the_op_breakdown_experiments_table(tmp_path: Path) -> None:
    """The experiment's own sweep (tiny model, two of its precisions) fills the block: a column
    per engine with and without rewrites, int8 convolutions only where the engine is int8."""
    result = sweep(tmp_path, "+experiment=op_breakdown", "n_generated=50",
                   "precision=fp32,int8_inc")
    assert result.returncode == 0, result.stderr[-2000:]
    page = _page(tmp_path / "project", "op-breakdown")
    summary = update_docs(tmp_path / "project", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert [name for _, name in summary.updated] == ["op-breakdown"]
    block = read_marked(page).content("op-breakdown")
    header, _, *lines = [line for line in block.splitlines() if line.startswith("|")]
    columns = [cell.strip() for cell in header.split("|")[1:-1]]
    assert columns == ["op type", "fp32", "fp32, no rewrites", "int8_inc",
                       "int8_inc, no rewrites"]
    rows = {cells[0]: cells[1:] for cells in
            ([cell.strip() for cell in line.split("|")[1:-1]] for line in lines)}
    assert all(float(ms) > 0 for ms in rows["total (wall, ms per batch of 50)"])
    fp32, _, int8, int8_plain = rows["conv int8"]
    assert fp32 == "—" and int8.endswith("%)") and int8_plain.endswith("%)")
    assert rows["conv fp32"][0].endswith("%)")


def test_an_empty_store_keeps_every_block_and_names_each_command(
        store: Path, tmp_path: Path) -> None:
    names = [block.name for block in BLOCKS]
    page = _page(tmp_path, *names)
    before = page.read_text()
    summary = update_docs(tmp_path, f"sqlite:///{store / 'mlflow.db'}")
    assert page.read_text() == before
    assert [name for name, _ in summary.without_runs] == names
    assert not summary.updated
    commands = dict(summary.without_runs)
    assert commands["paper-tables"] == "python -m calo.run +experiment=paper_tables"
    assert commands["bench"] == "make bench"


@pytest.mark.parametrize(("body", "message"), [
    ("<!-- results:bench -->\nx\n", "<!-- results:bench --> is never closed"),
    ("x\n<!-- /results:bench -->\n", "<!-- /results:bench --> closes a block that is not open"),
    ("<!-- results:bench -->\n<!-- /results:bench -->\n" * 2,
     "<!-- results:bench --> appears twice"),
    ("<!-- results:bench -->\n<!-- results:search -->\n<!-- /results:search -->\n"
     "<!-- /results:bench -->\n", "<!-- results:search --> opens inside block 'bench'"),
    ("<!-- results:nonsense -->\n<!-- /results:nonsense -->\n", "names no result block"),
])
def test_a_malformed_marker_is_one_line_and_nothing_is_written(
        suite_store, store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        body: str, message: str) -> None:
    suite_store()  # a make bench run: the good page below would be filled
    good = _page(tmp_path, "bench")
    broken = tmp_path / "docs" / "broken.md"
    broken.write_text(body)
    before = good.read_text()
    with pytest.raises(SystemExit) as exit_info:
        report_main(["--readme", "--root", str(tmp_path), "--tracking-uri",
                     f"sqlite:///{store / 'mlflow.db'}"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"error: {broken}: ") and message in error
    assert good.read_text() == before and broken.read_text() == body


def test_the_projects_markers_are_well_formed_and_name_known_blocks() -> None:
    known = {block.name for block in BLOCKS}
    found = set()
    for page in marked_pages(PROJECT_ROOT):
        blocks = read_marked(page).blocks  # raises MarkerError when malformed
        assert set(blocks) <= known, f"{page}: unknown blocks {set(blocks) - known}"
        found |= set(blocks)
    assert found == known  # every kind of result has a place in the docs


def test_a_broken_marker_in_a_page_is_caught(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- results:bench -->\n")
    with pytest.raises(MarkerError, match="page.md"):
        read_marked(page)


_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", ["README.md", *(f"docs/{p.name}" for p in
                                                 sorted((PROJECT_ROOT / "docs").glob("*.md")))])
def test_every_relative_link_points_to_an_existing_file(page: str) -> None:
    path = PROJECT_ROOT / page
    targets = [t for t in _LINK.findall(path.read_text())
               if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    missing = [t for t in targets if not (path.parent / t.split("#")[0]).exists()]
    assert not missing, f"{page}: links to missing files {missing}"
    if page == "README.md":  # the front page links to where to read on
        assert len(targets) >= 10


def test_the_layout_page_names_every_top_level_folder_and_nothing_that_is_gone() -> None:
    """docs/layout.md against the tree: each folder git tracks at the top is described, and
    every path the page names exists."""
    import re
    import subprocess

    page = (PROJECT_ROOT / "docs" / "layout.md").read_text()
    block = page.split("```")[1]
    named = {match.group(1).rstrip("/") for match in re.finditer(r"^([\w./-]+/)", block, re.M)}
    for path in named:
        assert (PROJECT_ROOT / path).exists(), f"docs/layout.md names {path}/, which is gone"
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    folders = {name.split("/")[0] for name in tracked if "/" in name and not name.startswith(".")}
    assert folders <= {path.split("/")[0] for path in named}, \
        f"not in docs/layout.md: {sorted(folders - {p.split('/')[0] for p in named})}"
