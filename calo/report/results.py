"""The docs' result blocks from the tracked runs: ``python -m calo.report --readme``.

Each block (``<!-- results:<name> -->`` ... ``<!-- /results:<name> -->`` in README.md or any
page under docs/) is filled from the latest finished runs of one kind, and states the runs it
came from, their machine and the day they were measured. The tables and figures themselves
are the report's, the benchmark's and the search's own. A block whose kind has no finished run
in the store is left as it is, and the command that makes such runs is named.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calo.config import TrackingConfig
from calo.formatting import DASH, grid_table, markdown_table, number
from calo.paths import atomic_path
from calo.report.markers import MarkerError, read_marked, write_marked
from calo.report.runs import LOCAL_UI, ReportRun, label_runs
from calo.report.tables import Table, speed_table
from calo.tracking.query import RunRecord, read_artifact, read_json_artifact, run_record
from calo.tracking.tags import PARENT_TAG

__all__ = ["BLOCKS", "BlockImage", "BlockResult", "ResultBlock", "RunStore", "UpdateSummary",
           "marked_pages", "update_docs"]

log = logging.getLogger(__name__)

COMMAND = "python -m calo.report --readme"
SEARCH_COLUMNS = ("trial", "chosen", "fp32 nodes", "SVN", "SVN / fp32", "pixel", "speed-up",
                  "keep_fp32")


class RunStore:
    """The finished runs of a tracking store, newest first, as plain records."""

    def __init__(self, uri: str) -> None:
        import mlflow

        self.uri = uri
        self._client = mlflow.MlflowClient(uri)

    def _experiments(self, name: str | None) -> list[str]:
        if name is None:
            return [e.experiment_id for e in self._client.search_experiments()]
        found = self._client.get_experiment_by_name(name)
        return [] if found is None else [found.experiment_id]

    def finished(self, experiment: str | None, tags: Mapping[str, str]) -> list[RunRecord]:
        """Finished runs carrying ``tags`` in ``experiment`` (None: every one), newest
        first."""
        ids = self._experiments(experiment)
        if not ids:
            return []
        query = " and ".join(["attributes.status = 'FINISHED'",
                              *(f"tags.`{key}` = '{value}'" for key, value in tags.items())])
        runs = self._client.search_runs(ids, query, max_results=1000,
                                        order_by=["attributes.start_time DESC"])
        return [run_record(run) for run in runs]

    def latest(self, experiment: str | None, tags: Mapping[str, str],
               keep: Callable[[RunRecord], bool] = lambda record: True) -> RunRecord | None:
        return next((r for r in self.finished(experiment, tags) if keep(r)), None)

    def children(self, parent: RunRecord) -> list[RunRecord]:
        """The parent's finished children, oldest first."""
        runs = self._client.search_runs(
            [self._client.get_run(parent.run_id).info.experiment_id],
            f"tags.`{PARENT_TAG}` = '{parent.run_id}' and attributes.status = 'FINISHED'",
            max_results=10_000, order_by=["attributes.start_time ASC"])
        return [run_record(run) for run in runs]

    def json(self, run: RunRecord, path: str) -> dict[str, Any] | None:
        return read_json_artifact(self.uri, run.run_id, path)

    def artifact(self, run: RunRecord, path: str) -> bytes | None:
        return read_artifact(self.uri, run.run_id, path)


@dataclass(frozen=True)
class BlockImage:
    """A figure a block shows, written to ``path`` (relative to the project root)."""

    path: Path
    title: str
    png: bytes


@dataclass(frozen=True)
class BlockResult:
    """A block's Markdown (without its figures) and its figures."""

    text: str
    images: tuple[BlockImage, ...] = ()

    def markdown(self, root: Path, page: Path) -> str:
        """The block as it stands in ``page``: figures linked relative to the page."""
        links = [f"![{image.title}]({os.path.relpath(root / image.path, page.parent)})"
                 for image in self.images]
        return "\n\n".join([self.text.strip("\n"), *links])


@dataclass(frozen=True)
class ResultBlock:
    """A kind of block: its marker name, the command that produces its runs, and how it is
    built from a store (None: no finished run of that kind)."""

    name: str
    command: str
    build: Callable[[RunStore], BlockResult | None]


def _machine(record: RunRecord) -> str:
    tags = record.tags
    return (f"{tags.get('machine/cpu_model', 'unknown CPU')}, {tags.get('machine/cores', '?')} "
            f"cores, ISA {tags.get('machine/isa', 'unknown')}")


def provenance(runs: Sequence[tuple[str, RunRecord]]) -> str:
    """One line: the runs (label and ID), their machines and the days they were measured."""
    ids = ", ".join(f"{label} `{record.run_id[:8]}`" for label, record in runs)
    machines = "; ".join(dict.fromkeys(_machine(record) for _, record in runs))
    days = sorted({time.strftime("%Y-%m-%d", time.localtime(record.start_time / 1000))
                   for _, record in runs})
    return (f"Runs {ids}; machine: {machines}; measured {', '.join(days)}. Written by "
            f"`{COMMAND}`.")


def _table_markdown(table: Table) -> str:
    rows = [[cell.text.replace("|", "\\|") for cell in row] for row in table.rows]
    return "\n\n".join([grid_table(table.columns, rows), *table.notes])


def _sweep_runs(store: RunStore, experiment: str) -> tuple[RunRecord, list[ReportRun]] | None:
    """The newest finished sweep of ``experiment`` and its finished runs, labelled."""
    parent = store.latest(experiment, {"sweep/role": "parent"})
    if parent is None:
        return None
    runs = label_runs(store.children(parent), LOCAL_UI, None)
    return (parent, runs) if runs else None


def _run_list(parent: RunRecord, runs: Sequence[ReportRun]) -> list[tuple[str, RunRecord]]:
    return [("sweep", parent), *((run.label, run.record) for run in runs)]


def paper_tables(store: RunStore) -> BlockResult | None:
    """The paper's Tables 3-5 (calo.physics.table) from the latest paper_tables sweep."""
    from calo.physics.table import render_table

    found = _sweep_runs(store, "paper_tables")
    if found is None:
        return None
    parent, runs = found
    measured = {run.precision: run for run in runs if run.has("physics/engine/")}
    if not measured:
        return None
    labels = {name: f"{run.label}" for name, run in measured.items()}
    table = render_table({name: run.record.metrics for name, run in measured.items()}, labels)
    return BlockResult(f"{provenance(_run_list(parent, measured.values()))}\n\n{table}")


def paper_table1(store: RunStore) -> BlockResult | None:
    """The paper's Table 1 (the report's speed table) from the latest paper_tables sweep."""
    found = _sweep_runs(store, "paper_tables")
    if found is None:
        return None
    parent, runs = found
    timed = [run for run in runs if run.has("bench/throughput_b")]
    if not timed:
        return None
    return BlockResult(f"{provenance(_run_list(parent, timed))}\n\n"
                       f"{_table_markdown(speed_table(timed))}")


def threads_streams(store: RunStore) -> BlockResult | None:
    """Figure 4 (threads x streams) as tables and figures from the latest threads_streams
    sweep; the figures go to experiments/results/."""
    from calo.report.figures import grid_rows, throughput_figures

    found = _sweep_runs(store, "threads_streams")
    if found is None:
        return None
    parent, runs = found
    grids = grid_rows(runs)
    if not grids:
        return None
    members = [run for _, _, measured in grids.values() for run in measured]
    tables = []
    for precision, (batch, rows, _) in grids.items():
        tables.append(f"{precision}, batch {batch}:\n\n" + grid_table(
            ["threads x streams", "fp32 [showers/s]", f"{precision} [showers/s]", "speed-up"],
            [[f"{row['threads']} x {row['streams']}", number(row["fp32"]),
              number(row[precision]), DASH if row["speedup"] is None
              else f"{row['speedup']:.2f}x"] for row in rows]))
    figures, _ = throughput_figures(runs)
    images = tuple(BlockImage(Path("experiments/results") / f"{figure.key}.png",
                              figure.title, figure.png) for figure in figures)
    return BlockResult("\n\n".join([provenance(_run_list(parent, members)), *tables]), images)


def _profile_label(run: ReportRun) -> str:
    return run.precision if _rewritten(run.record) else f"{run.precision}, no rewrites"


def op_breakdown(store: RunStore) -> BlockResult | None:
    """The paper's Table 2, where each TensorFlow engine's time goes, from the latest
    op_breakdown sweep: ms per batch and share of the traced time, per op type."""
    from calo.precision.profile import CATEGORIES, WALL_METRIC, category_metric

    found = _sweep_runs(store, "op_breakdown")
    if found is None:
        return None
    parent, runs = found
    profiled = sorted((run for run in runs if run.metric(WALL_METRIC) is not None),
                      key=lambda run: (run.precision != "fp32", _profile_label(run)))
    if not profiled:
        return None
    labels = [_profile_label(run) for run in profiled]
    milliseconds = {category: [run.metric(category_metric(category)) for run in profiled]
                    for category in CATEGORIES}
    traced = [sum(ms or 0.0 for ms in column) or 1.0
              for column in zip(*milliseconds.values())]
    batch = profiled[0].record.params.get("batch_size", "?")
    rows = [{"op type": f"total (wall, ms per batch of {batch})",
             **{label: number(run.metric(WALL_METRIC)) for label, run in zip(labels, profiled)}}]
    rows += [{"op type": category,
              **{label: DASH if not ms else f"{number(ms)} ({ms / total:.0%})"
                 for label, ms, total in zip(labels, values, traced)}}
             for category, values in milliseconds.items() if any(values)]
    runs_named = [("sweep", parent), *((label, run.record) for label, run in zip(labels, profiled))]
    return BlockResult(f"{provenance(runs_named)}\n\n{markdown_table(rows)}")


def _suite_rows(store: RunStore, parent: RunRecord) -> tuple[list[dict[str, Any]],
                                                              list[tuple[str, RunRecord]]]:
    """A ``make bench`` summary's table rows (as it printed them) and its runs."""
    table = store.json(parent, "bench/table.json") or {}
    children = {record.tags.get("choice/precision", "?"): record
                for record in store.children(parent)}
    return table.get("rows", []), [("summary", parent), *children.items()]


def bench_suite(store: RunStore) -> BlockResult | None:
    """The table ``make bench`` printed, from its latest run without overrides."""
    experiment = TrackingConfig(name="local").experiment
    parent = store.latest(experiment, {"bench_role": "summary", "overrides": "(none)"})
    if parent is None:
        return None
    rows, runs = _suite_rows(store, parent)
    if not rows:
        return None
    return BlockResult(f"{provenance(runs)}\n\n{markdown_table(rows)}")


def _capped(record: RunRecord) -> bool:
    return record.params.get("hw/max_isa", "none") != "none"


def _rewritten(record: RunRecord) -> bool:
    return record.params.get("precision.rewrite", "True") == "True"


def _speed(row: Mapping[str, Any] | None) -> tuple[str, str]:
    if row is None:
        return DASH, DASH
    if row.get("note", "").startswith(("skipped", "failed")):
        return row["note"].split(":", 1)[0], ""
    speedup = row.get("speed-up b64")
    return number(row.get("showers/s b64")), ("1" if row["precision"] == "fp32"
                                              else number(speedup))


def _two_suites(store: RunStore, experiment: str, first: str, second: str,
                is_first: Callable[[RunRecord], bool]) -> BlockResult | None:
    """The latest two ``make bench`` suites of ``experiment``, one of each way (``first`` where
    ``is_first``), side by side: showers/s and speed-up at batch 64, size and pixel-wise
    difference to fp32, per precision."""
    summaries = store.finished(experiment, {"bench_role": "summary"})
    parents = {first: next((r for r in summaries if is_first(r)), None),
               second: next((r for r in summaries if not is_first(r)), None)}
    if not any(parents.values()):
        return None
    tables: dict[str, dict[str, Mapping[str, Any]]] = {}
    runs: list[tuple[str, RunRecord]] = []
    for way, parent in parents.items():
        if parent is None:
            continue
        rows, suite_runs = _suite_rows(store, parent)
        tables[way] = {row["precision"]: row for row in rows}
        runs += [(f"{way} {label}", record) for label, record in suite_runs]
    precisions = list(dict.fromkeys(p for rows in tables.values() for p in rows))
    lines = []
    for precision in precisions:
        rows = [tables.get(way, {}).get(precision) for way in (first, second)]
        speeds = [cell for row in rows for cell in _speed(row)]
        sizes, pixels = ([number(row.get(key)) if row and row.get(key) is not None else DASH
                          for row in rows] for key in ("size MB", "pixel-wise"))
        lines.append([precision, *speeds, *sizes, *pixels])
    notes = [f"- {precision}, {way}: {row['note']}" for way, rows in tables.items()
             for precision, row in rows.items()
             if row.get("note", "").startswith(("skipped", "failed"))]
    table = grid_table(["precision", f"{first}: showers/s", f"{first}: vs fp32",
                        f"{second}: showers/s", f"{second}: vs fp32", f"{first}: size MB",
                        f"{second}: size MB", f"{first}: pixel-wise", f"{second}: pixel-wise"],
                       lines)
    return BlockResult("\n\n".join([provenance(runs), table, "\n".join(notes)]).rstrip())


def table1_isa(store: RunStore) -> BlockResult | None:
    """Table 1 both ways: the latest ``hw=cascadelake`` suites of experiment table1-isa with
    oneDNN capped (hw.max_isa) and uncapped, side by side."""
    return _two_suites(store, "table1-isa", "capped", "uncapped", _capped)


def rewrites(store: RunStore) -> BlockResult | None:
    """The exact inference rewrites' worth: the latest suites of experiment rewrites with
    ``precision.rewrite`` true and false, side by side."""
    return _two_suites(store, "rewrites", "rewrites", "no rewrites", _rewritten)


def search_front(store: RunStore, backend: str = "int8_inc") -> BlockResult | None:
    """The latest search over ``backend``'s nodes: its Pareto front (its trial table's front
    rows), the points it was compared with, its chosen point and its figure
    (docs/search_pareto_front.png; docs/search_<backend>_pareto_front.png for another
    backend), told apart by the parent run's ``precision.backend`` parameter."""
    parent = store.latest(None, {"search_role": "search"},
                          lambda run: run.params.get("precision.backend") == backend)
    if parent is None:
        return None
    table = store.json(parent, "search/trials.json")
    if table is None:
        return None
    front = [{key: row.get(key) for key in SEARCH_COLUMNS}
             for row in table.get("rows", []) if row.get("front")]
    compared = [{"compared with": name, "SVN": numbers.get("svn"),
                 "pixel": numbers.get("pixel"), "speed": numbers.get("speed")}
                for name, numbers in table.get("comparisons", {}).items()]
    chosen = parent.tags.get("search/chosen", "")
    text = "\n\n".join(filter(None, [
        provenance([(f"search {parent.tags.get('search/study', '')}".strip(), parent)]),
        f"Pareto front ({number(parent.metrics.get('search/n_complete'))} completed trials, "
        f"{number(parent.metrics.get('search/n_failed'))} failed):",
        markdown_table(front), markdown_table(compared) if compared else "",
        f"Chosen point: {chosen}." if chosen else ""]))
    png = store.artifact(parent, "search/pareto_front.png")
    name = "search" if backend == "int8_inc" else f"search_{backend}"
    images = () if png is None else (
        BlockImage(Path(f"docs/{name}_pareto_front.png"), f"Pareto front of the {backend} search",
                   png),)
    return BlockResult(text, images)


BLOCKS: tuple[ResultBlock, ...] = (
    ResultBlock("paper-tables", "python -m calo.run +experiment=paper_tables", paper_tables),
    ResultBlock("paper-table1", "python -m calo.run +experiment=paper_tables", paper_table1),
    ResultBlock("threads-streams", "python -m calo.run +experiment=threads_streams",
                threads_streams),
    ResultBlock("op-breakdown", "python -m calo.run +experiment=op_breakdown", op_breakdown),
    ResultBlock("bench", "make bench", bench_suite),
    ResultBlock("table1-isa", "python -m calo.bench hw=cascadelake [hw.max_isa=null] "
                "tracking.experiment=table1-isa", table1_isa),
    ResultBlock("rewrites", "python -m calo.bench tracking.experiment=rewrites "
                "[precision.rewrite=false]", rewrites),
    ResultBlock("search", "python -m calo.search", search_front),
    ResultBlock("search-ov", "python -m calo.search precision=int8_ov",
                functools.partial(search_front, backend="int8_ov")),
)


def marked_pages(root: Path) -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [path for path in [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
            if path.is_file()]


@dataclass
class UpdateSummary:
    """What the command did: blocks rewritten (file, name), blocks without runs (name,
    command), and blocks filled from runs but unchanged."""

    updated: list[tuple[Path, str]] = field(default_factory=list)
    without_runs: list[tuple[str, str]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def lines(self, root: Path) -> list[str]:
        lines = [f"updated {name} in {path.relative_to(root)}" for path, name in self.updated]
        lines += [f"unchanged {name} (the same runs)" for name in self.unchanged]
        lines += [f"kept {name} as it is: no finished runs in the store; {command} makes them"
                  for name, command in self.without_runs]
        return lines


def update_docs(root: Path, uri: str,
                blocks: Sequence[ResultBlock] = BLOCKS) -> UpdateSummary:
    """Fill every result block of README.md and docs/ under ``root`` from the store at
    ``uri``, and write the blocks' figures; a malformed or unknown marker is a MarkerError
    and nothing is written."""
    pages = marked_pages(root)
    known = {block.name: block for block in blocks}
    used: dict[str, list[Path]] = {}
    for page in pages:
        for name in read_marked(page).blocks:
            if name not in known:
                raise MarkerError(f"{page}: <!-- results:{name} --> names no result block "
                                  f"(known: {', '.join(known)})")
            used.setdefault(name, []).append(page)
    store = RunStore(uri)
    results: dict[str, BlockResult] = {}
    summary = UpdateSummary()
    for name in used:
        log.info("results block %s: reading its runs", name)
        result = known[name].build(store)
        if result is None:
            summary.without_runs.append((name, known[name].command))
        else:
            results[name] = result
    summary.updated = write_marked(
        pages, lambda name, page: results[name].markdown(root, page) if name in results
        else None)
    updated_names = {name for _, name in summary.updated}
    summary.unchanged = [name for name in results if name not in updated_names]
    for image in (image for result in results.values() for image in result.images):
        target = root / image.path
        if not target.is_file() or target.read_bytes() != image.png:
            with atomic_path(target) as temporary:
                temporary.write_bytes(image.png)
            summary.updated.append((target, image.path.name))
    return summary
