"""``python -m calo.search ...`` with a barrier before the process's first trial, for
tests/test_search_run.py's shared study: ``python search_barrier_worker.py FOLDER COUNT
<overrides>`` waits at its first trial until COUNT processes have reached theirs (one file each
in FOLDER), so every process runs a trial however late it started, with no timing to hope for.
"""

from __future__ import annotations

import os
import runpy
import sys
import time
from pathlib import Path

TIMEOUT_S = 600.0


def main() -> None:
    folder, count = Path(sys.argv[1]), int(sys.argv[2])
    del sys.argv[1:3]
    from calo.search import trials

    measure = trials._measure_trial
    waited: list[int] = []

    def after_barrier(state, trial, patterns):
        if not waited:
            waited.append(trial.number)
            (folder / str(os.getpid())).touch()
            deadline = time.monotonic() + TIMEOUT_S
            while (arrived := len(list(folder.iterdir()))) < count:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"barrier: {arrived} of {count} processes reached their "
                                       f"first trial in {TIMEOUT_S:.0f} s")
                time.sleep(0.2)
        return measure(state, trial, patterns)

    trials._measure_trial = after_barrier
    runpy.run_module("calo.search", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
