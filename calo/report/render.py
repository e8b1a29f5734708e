"""The report as one self-contained HTML page (figures embedded as base64 PNG, no scripts, no
external files) and as Markdown with the figures as PNG files beside it."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from calo.formatting import grid_table
from calo.report.build import Report
from calo.report.tables import Cell, Table

__all__ = ["render_html", "render_markdown", "write_report"]

CITATION = ("F. Rehm, S. Vallecorsa, V. Saletore, H. Pabst, A. Chaibi, V. Codreanu, K. Borras, "
            "D. Krücker: Reduced Precision Strategies for Deep Learning: A High Energy Physics "
            "Generative Adversarial Network Use Case, ICPRAM 2021, pp. 251-258, "
            "doi:10.5220/0010245002510258, arXiv:2103.10142")

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 3px 7px; text-align: right; }
th { background: #eee; } td:first-child, th:first-child { text-align: left; }
.note { font-size: 0.85em; color: #555; margin: 0.2em 0; }
.missing li { color: #222; } figure { margin: 1em 0; } img { max-width: 100%; }
figcaption { font-size: 0.85em; color: #555; }
"""


def _html_cell(cell: Cell, tag: str = "td") -> str:
    text = escape(cell.text)
    if cell.link:
        text = f'<a href="{escape(cell.link)}">{text}</a>'
    return f"<{tag}>{text}</{tag}>"


def _html_table(table: Table) -> str:
    head = "".join(_html_cell(Cell(column), "th") for column in table.columns)
    body = "".join("<tr>" + "".join(map(_html_cell, row)) + "</tr>" for row in table.rows)
    notes = "".join(f'<p class="note">{escape(note)}</p>' for note in table.notes)
    return (f'<section id="{table.key}"><h2>{escape(table.title)}</h2>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}"
            "</section>")


def _overrides(run_tags: dict[str, str]) -> list[str]:
    return run_tags.get("sweep/overrides", run_tags.get("overrides", "")).split()


def _runs_table(report: Report) -> Table:
    """Every run, with the overrides that set it apart from the sweep's other runs."""
    table = Table("runs", "Runs", ["label", "status", "run", "machine",
                                   "overrides of this job", "error"])
    overrides = [_overrides(run.record.tags) for run in report.runs]
    common = set.intersection(*map(set, overrides)) if overrides else set()
    for run, own in zip(report.runs, overrides):
        table.add(run.label, run.record.status, Cell(run.record.run_id, run.link),
                  run.machine.label, " ".join(o for o in own if o not in common),
                  run.record.error or "")
    return table


def _summary(report: Report) -> list[Cell]:
    sweep, source = report.sweep, report.source
    cells = [Cell(f"tracking store {source.tracking_uri}"),
             Cell(f"experiment {source.experiment}")]
    if sweep.parent is not None:
        cells.append(Cell(f"sweep parent run {sweep.parent.run_id} ({sweep.parent.status})",
                          report.parent_link))
        if "sweep/overrides" in sweep.parent.tags:
            cells.append(Cell(f"command: python -m calo.run -m "
                              f"{sweep.parent.tags['sweep/overrides']}"))
    cells += [Cell(f"{len(report.runs)} runs"), Cell(f"made {report.created}")]
    return cells


def render_html(report: Report) -> str:
    missing = ("".join(f"<li>{escape(item)}</li>" for item in report.missing)
               or "<li>nothing: every table and figure is filled</li>")
    figures = "".join(
        f'<figure id="{figure.key}"><h2>{escape(figure.title)}</h2>'
        f'<img alt="{escape(figure.title)}" '
        f'src="data:image/png;base64,{base64.b64encode(figure.png).decode()}">'
        f"<figcaption>{escape(figure.caption)}</figcaption></figure>"
        for figure in report.figures)
    machines = "".join(f"<li>{escape(m.describe())}</li>" for m in report.machines)
    summary = " · ".join(_html_cell(cell, "span") for cell in _summary(report))
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(report.title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(report.title)}</h1><p class=\"note\">{summary}</p>"
        f'<section id="missing" class="missing"><h2>What is missing</h2><ul>{missing}</ul>'
        "</section>"
        + "".join(_html_table(table) for table in report.tables) + figures
        + f'<section id="machines"><h2>Machines</h2><ul>{machines or "<li>none</li>"}</ul>'
        "</section>" + _html_table(_runs_table(report))
        + f'<p class="note">Paper values: {escape(CITATION)}.</p></body></html>\n')


def _markdown_cell(cell: Cell) -> str:
    text = cell.text.replace("|", "\\|")
    return f"[{text}]({cell.link})" if cell.link else text


def _markdown_table(table: Table) -> str:
    rows = [[_markdown_cell(cell) for cell in row] for row in table.rows]
    body = grid_table(table.columns, rows) if rows else "(no rows)"
    notes = "".join(f"\n{note}\n" for note in table.notes)
    return f"## {table.title}\n\n{body}\n{notes}"


def render_markdown(report: Report) -> str:
    missing = "\n".join(f"- {item}" for item in report.missing) or "- nothing"
    figures = "\n".join(f"## {figure.title}\n\n![{figure.title}]({figure.key}.png)\n\n"
                        f"{figure.caption}\n" for figure in report.figures)
    machines = "\n".join(f"- {m.describe()}" for m in report.machines) or "- none"
    summary = " · ".join(_markdown_cell(cell) for cell in _summary(report))
    return "\n".join([
        f"# {report.title}", "", summary, "", "## What is missing", "", missing, "",
        *(_markdown_table(table) for table in report.tables), figures,
        "## Machines", "", machines, "", _markdown_table(_runs_table(report)),
        f"Paper values: {CITATION}.", ""])


def write_report(report: Report, folder: Path) -> tuple[Path, Path]:
    """``report.html`` (self-contained), ``report.md`` and its figures into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    html, markdown = folder / "report.html", folder / "report.md"
    html.write_text(render_html(report))
    markdown.write_text(render_markdown(report))
    for figure in report.figures:
        (folder / f"{figure.key}.png").write_bytes(figure.png)
    return html, markdown
