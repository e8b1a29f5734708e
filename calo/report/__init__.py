"""The comparison report: tracked runs -> the paper's Tables 1, 3, 4, 5 and Figures 4, 5, 6,
this project's values beside the paper's, as a self-contained HTML page and Markdown.

    from calo.report import ReportSource, build_report, write_report
    report = build_report(ReportSource("sqlite:///mlruns/mlflow.db", "paper_tables"))
    write_report(report, Path("reports/paper_tables"))

or ``python -m calo.report --experiment paper_tables``.
"""

from calo.report.build import Report, ReportSource, build_report
from calo.report.render import render_html, render_markdown, write_report

__all__ = ["Report", "ReportSource", "build_report", "render_html", "render_markdown",
           "write_report"]
