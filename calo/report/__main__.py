"""python -m calo.report [--experiment paper_tables] [--sweep latest|<parent run ID>|<name>]
python -m calo.report --readme  (make results)

Reads a sweep's runs from MLflow, writes ``report.html`` (self-contained) and ``report.md``
(figures beside it) and logs them to the sweep's parent run under ``report/``. What cannot be
read (unknown experiment or sweep, failed runs, missing metrics, a store that cannot be
reached) is listed in the report, which still shows the rest.

With --readme it writes instead every result block of README.md and docs/*.md (between
``<!-- results:<name> -->`` and ``<!-- /results:<name> -->``) and their figures from the latest
finished runs of each kind, and says which blocks it updated; a block whose kind has no run in
the store is kept as it is, naming the command that makes such runs.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from calo.cli import exit_on_user_error
from calo.config import TrackingConfig
from calo.paths import PROJECT_ROOT, resolve
from calo.report.build import ReportSource, build_report
from calo.report.render import write_report

__all__ = ["main"]

log = logging.getLogger("calo.report")


def report(source: ReportSource, out: Path | None, log_to_parent: bool) -> None:
    result = build_report(source)
    parent = result.sweep.parent
    folder = out or resolve("reports") / source.experiment / (
        parent.run_id[:8] if parent else "no-sweep")
    html, markdown = write_report(result, folder)
    for item in result.missing:
        log.warning("missing: %s", item)
    if log_to_parent and parent is not None:
        from calo.tracking.sweep import log_to_run

        log_to_run(source.tracking_uri, parent.run_id, folder, "report")
        log.info("logged to the sweep's parent run %s under report/", parent.run_id)
    print(f"report: {html}\n        {markdown}")


def readme(root: Path, uri: str) -> None:
    from calo.report.results import update_docs

    summary = update_docs(root, uri)
    for line in summary.lines(root):
        print(line)


def main(argv: list[str] | None = None) -> None:
    default = TrackingConfig(name="local")
    parser = argparse.ArgumentParser(prog="python -m calo.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default=default.experiment,
                        help="MLflow experiment (an experiments/ name logs to its own; "
                             "default %(default)s)")
    parser.add_argument("--sweep", default="latest",
                        help="latest (default), a sweep's parent run ID, or a sweep name")
    parser.add_argument("--tracking-uri", default=None,
                        help="default: the project's store, mlruns/mlflow.db")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for report.html and report.md "
                             "(default reports/<experiment>/<parent run ID>)")
    parser.add_argument("--ui-url", default=None,
                        help="MLflow UI the run links point to (default: the tracking server, "
                             "or http://127.0.0.1:5000 of make ui)")
    parser.add_argument("--no-log", action="store_true",
                        help="do not log the report to the sweep's parent run")
    parser.add_argument("--readme", action="store_true",
                        help="write the result blocks of README.md and docs/*.md instead")
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT,
                        help="with --readme: the folder holding README.md and docs/ "
                             "(default: the project)")
    args = parser.parse_args(argv)
    from calo.tracking import tracking_uri

    uri = args.tracking_uri or tracking_uri(default)
    if args.readme:
        exit_on_user_error(readme, args.root, uri)
        return
    source = ReportSource(uri, args.experiment,
                          args.sweep, args.ui_url)
    exit_on_user_error(report, source, args.out, not args.no_log)


if __name__ == "__main__":
    # Here, not in main(): a handler made inside main() would hold the stderr of its first
    # caller (a test's captured stream, closed after that test) for the rest of the process.
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    main()
