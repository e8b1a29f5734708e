"""Who owns a RUNNING run, and the repair of runs whose owner is gone.

A process killed by SIGKILL, or a machine that crashed, cannot end its MLflow run, which then
stays RUNNING forever. So every run records its owner (host, process ID, the process's start
time, and the machine's boot and PID namespace) and a heartbeat tag that a thread refreshes
every ``HEARTBEAT_S`` seconds. A RUNNING run is orphaned when

- its owner ran where this process runs (same host, boot and PID namespace, so this process
  sees the owner's process table) and that process no longer exists (or its PID now belongs to
  a later process); or
- its owner ran elsewhere and its heartbeat is older than ``STALE_S`` seconds.

Orphaned runs are marked KILLED with the tag ``calo/repaired`` saying why. Runs without owner
tags (recorded before this existed, or by other tools) are left alone.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

__all__ = ["HEARTBEAT", "REPAIRED", "Heartbeat", "orphan_reason", "owner_tags",
           "repair_orphaned_runs"]

log = logging.getLogger(__name__)

OWNER = "calo/owner"  # host:pid
OWNER_START = "calo/owner_start"  # the owner process's start, seconds since the epoch
OWNER_MACHINE = "calo/owner_machine"  # boot ID and PID namespace: who can see the process
HEARTBEAT = "calo/heartbeat"  # seconds since the epoch, refreshed while the run lives
REPAIRED = "calo/repaired"  # why a run was marked KILLED by someone else

HEARTBEAT_S = float(os.environ.get("CALO_HEARTBEAT_S", "30"))
STALE_S = float(os.environ.get("CALO_STALE_S", "600"))


def _machine() -> str:
    """This kernel boot and PID namespace: processes with the same value see each other."""
    boot = Path("/proc/sys/kernel/random/boot_id")
    boot_id = boot.read_text().strip() if boot.exists() else "unknown-boot"
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = "unknown-ns"
    return f"{socket.gethostname()}/{boot_id}/{namespace}"


def owner_tags() -> dict[str, str]:
    process = psutil.Process()
    return {OWNER: f"{socket.gethostname()}:{process.pid}",
            OWNER_START: f"{process.create_time():.3f}", OWNER_MACHINE: _machine(),
            HEARTBEAT: f"{time.time():.0f}"}


def _process_alive(pid: int, start: float) -> bool:
    """Whether the process ``pid`` that started at ``start`` still runs. A zombie does not: it
    has ended and waits for its parent to read its status, which may never happen (a parent
    that does not reap, or an init that does not, as in some containers)."""
    try:
        process = psutil.Process(pid)
        return (abs(process.create_time() - start) < 1.0
                and process.status() != psutil.STATUS_ZOMBIE)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True


def orphan_reason(tags: Mapping[str, str], now: float | None = None) -> str | None:
    """Why the RUNNING run with these tags has no living owner, or None if it may have one."""
    if OWNER not in tags or OWNER_START not in tags:
        return None
    now = time.time() if now is None else now
    owner, machine = tags[OWNER], tags.get(OWNER_MACHINE)
    pid = int(owner.rsplit(":", 1)[1])
    if machine == _machine():
        if _process_alive(pid, float(tags[OWNER_START])):
            return None
        return f"its process {owner} has ended without ending the run"
    heartbeat = float(tags.get(HEARTBEAT, tags[OWNER_START]))
    if now - heartbeat > STALE_S:
        return f"no heartbeat from {owner} for {(now - heartbeat) / 60:.0f} min"
    return None


def repair_orphaned_runs(client: Any, experiment_ids: list[str] | None = None
                         ) -> list[tuple[str, str]]:
    """Mark every RUNNING run whose owner is gone as KILLED; returns (run ID, reason) pairs."""
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return []
    repaired = []
    for run in client.search_runs(experiment_ids, "attributes.status = 'RUNNING'",
                                  max_results=10_000):
        reason = orphan_reason(run.data.tags)
        if reason is None:
            continue
        client.set_tag(run.info.run_id, REPAIRED, reason)
        client.set_terminated(run.info.run_id, "KILLED")
        log.warning("run %s was left RUNNING (%s): marked KILLED", run.info.run_id, reason)
        repaired.append((run.info.run_id, reason))
    return repaired


class Heartbeat:
    """A daemon thread that refreshes a run's heartbeat tag until stopped."""

    def __init__(self, client: Any, run_id: str, interval_s: float = HEARTBEAT_S) -> None:
        self.client, self.run_id, self.interval_s = client, run_id, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id[:8]}",
                                        daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.client.set_tag(self.run_id, HEARTBEAT, f"{time.time():.0f}")
            except Exception as error:  # a busy or vanished store: the run itself will say
                log.debug("heartbeat of run %s not recorded: %s", self.run_id, error)
