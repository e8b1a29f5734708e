"""calo's SLURM launcher (``hydra/launcher=calo_slurm``): submitit's, except that a job SLURM
ended without a result (``scancel``, a node failure, a time limit) or that crashed ends the sweep
with one ``error:`` line naming the job and its log, instead of submitit's traceback.

The sweep's parent MLflow run then ends FAILED (``calo.multirun.SweepCallback``), jobs still
running go on and log their runs under it, and the job's own run is KILLED or FAILED by the job."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from submitit.core.utils import FailedJobError, UncompletedJobError

__all__ = ["CaloSlurmLauncher", "job_error_line"]


def job_error_line(error: UncompletedJobError) -> str:
    """submitit's multi-line report of a job, as one line: which job, in what state, where its
    log is."""
    lines = [line.strip(" -") for line in str(error).splitlines() if line.strip(" -")]
    crashed = isinstance(error, FailedJobError)  # its traceback follows the first line
    head = " ".join(lines[:1] if crashed else lines[:2]).rstrip(":") or type(error).__name__
    what = "crashed" if crashed else "ended without a result"
    return (f"a sweep job {what}: {head}. Jobs still running go on and log under the sweep's "
            "parent run; rerun the missing configurations (each run's sweep/overrides tag)")


class CaloSlurmLauncher(SlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        try:
            return super().launch(job_overrides, initial_job_idx)
        except UncompletedJobError as error:
            print(f"error: {job_error_line(error)}", file=sys.stderr)
            raise SystemExit(1) from None
