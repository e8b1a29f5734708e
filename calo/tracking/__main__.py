"""``python -m calo.tracking repair [--uri URI]``: mark the runs whose owner process or machine
is gone (killed with SIGKILL, a crash) as KILLED, and list them.

Every entry point does this when it first opens a store; this command does it on demand, for
the project's store or any other (``--uri sqlite:///...``, ``--uri http://host:5000``).
"""

from __future__ import annotations

import argparse

from calo.cli import exit_on_user_error
from calo.config import TrackingConfig
from calo.tracking.store import repair_runs, tracking_uri


def repair(uri: str | None) -> int:
    tracking = TrackingConfig(name="repair", uri=uri)
    resolved = tracking_uri(tracking)
    repaired = repair_runs(tracking)
    for run_id, reason in repaired:
        print(f"{run_id}: KILLED ({reason})")
    print(f"{len(repaired)} run(s) marked KILLED in {resolved}")
    return len(repaired)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m calo.tracking", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("repair", help="mark runs whose owner is gone as KILLED")
    command.add_argument("--uri", help="tracking URI (default: the project's mlruns/ store)")
    arguments = parser.parse_args()
    exit_on_user_error(repair, arguments.uri)


if __name__ == "__main__":
    main()
