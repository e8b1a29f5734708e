"""A one-node SLURM cluster on this machine, everything in one folder: MUNGE (authentication),
MariaDB and slurmdbd (accounting: ``sacct``, which submitit asks for the state of a job that
ended without a result, a cancelled one say), slurmctld and slurmd.

No cgroups (``proctrack/linuxproc``, ``task/none``), ports chosen free, the node's CPUs and
memory those of this machine. It runs jobs as their users, so slurmd must run as root: for
trying calo's cluster commands and for the tests, not for production.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
from pathlib import Path

import psutil

from calo.services.common import (
    ServiceError,
    find_program,
    free_port,
    log_tail,
    missing_programs,
    pid_from_file,
    port_open,
    run_command,
    stop_pid,
    wait_for,
)

__all__ = ["SlurmCluster"]

DAEMONS = ("munged", "mariadbd", "mariadb-install-db", "mariadb", "slurmdbd", "slurmctld",
           "slurmd")
CLIENTS = ("sbatch", "srun", "scontrol", "sinfo", "squeue", "scancel", "sacct", "sacctmgr")
START_SECONDS = 90
PARTITION = "calo"


def _programs() -> dict[str, str | None]:
    return {name: find_program(name) for name in (*DAEMONS, *CLIENTS)}


class SlurmCluster:
    """The cluster whose configuration, state and logs live in ``folder``."""

    def __init__(self, folder: Path, name: str = "calo", kill_wait_s: int = 10) -> None:
        self.folder = Path(folder).resolve()
        self.name = name
        self.kill_wait_s = kill_wait_s  # between scancel's SIGTERM and its SIGKILL
        self.programs = _programs()
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.folder / "slurm.conf"
        self.logs = self.folder / "log"
        self.munge_socket = self.folder / "munge" / "munge.socket"
        self.mysql_socket = self.folder / "mysql.socket"

    @staticmethod
    def unavailable() -> str | None:
        """Why no cluster can be started here (None: it can)."""
        missing = missing_programs(_programs())
        if missing:
            return (f"SLURM programs missing: {', '.join(missing)} (Debian: apt-get install "
                    "munge slurmctld slurmd slurm-client slurmdbd mariadb-server-core "
                    "mariadb-client-core)")
        if os.geteuid() != 0:
            return "slurmd must run as root (it starts jobs as their users)"
        return None

    @property
    def env(self) -> dict[str, str]:
        """What SLURM's commands need to find this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def _environ(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def _run(self, *command: str, what: str, timeout: float = 60, log: Path | None = None) -> str:
        return run_command([self.programs[command[0]] or command[0], *command[1:]], what,
                           timeout=timeout, env=self._environ(), log=log)

    def _quiet(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.programs[command[0]] or command[0], *command[1:]],
                              capture_output=True, text=True, env=self._environ(), timeout=30)

    # --- configuration -------------------------------------------------------------------

    def _write_config(self, ports: dict[str, int], password: str) -> None:
        memory_mb = int(psutil.virtual_memory().total / 2**20 * 0.9)
        common = {
            "AuthType": "auth/munge", "AuthInfo": f"socket={self.munge_socket}",
        }
        slurm = {
            "ClusterName": self.name,
            "SlurmctldHost": f"{self.node}(127.0.0.1)",
            "SlurmctldPort": ports["slurmctld"], "SlurmdPort": ports["slurmd"],
            "SlurmUser": "root", "SlurmdUser": "root", **common,
            "CredType": "cred/munge",
            "StateSaveLocation": self.folder / "state",
            "SlurmdSpoolDir": self.folder / "spool",
            "SlurmctldPidFile": self.folder / "slurmctld.pid",
            "SlurmdPidFile": self.folder / "slurmd.pid",
            "SlurmctldLogFile": self.logs / "slurmctld.log",
            "SlurmdLogFile": self.logs / "slurmd.log",
            "ProctrackType": "proctrack/linuxproc", "TaskPlugin": "task/none",
            "JobAcctGatherType": "jobacct_gather/none", "SwitchType": "switch/none",
            "MpiDefault": "none",
            "SelectType": "select/cons_tres", "SelectTypeParameters": "CR_Core",
            "AccountingStorageType": "accounting_storage/slurmdbd",
            "AccountingStorageHost": "127.0.0.1",
            "AccountingStoragePort": ports["slurmdbd"],
            # the MUNGE socket for talking to slurmdbd (its default is the system's)
            "AccountingStoragePass": self.munge_socket,
            "JobCompType": "jobcomp/none",
            "ReturnToService": 2, "KillWait": self.kill_wait_s, "MinJobAge": 300,
            "SlurmctldTimeout": 30, "SlurmdTimeout": 60, "InactiveLimit": 0,
            "SchedulerType": "sched/backfill",
        }
        lines = [f"{key}={value}" for key, value in slurm.items()]
        lines += [f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} "
                  f"RealMemory={memory_mb} State=UNKNOWN",
                  f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP"]
        self.conf.write_text("\n".join(lines) + "\n")
        dbd = {**common, "DbdHost": "localhost", "DbdAddr": "127.0.0.1",
               "DbdPort": ports["slurmdbd"], "SlurmUser": "root",
               "LogFile": self.logs / "slurmdbd.log", "PidFile": self.folder / "slurmdbd.pid",
               "StorageType": "accounting_storage/mysql", "StorageHost": "127.0.0.1",
               "StoragePort": ports["mariadb"], "StorageUser": "slurm",
               "StoragePass": password, "StorageLoc": "slurm_acct_db"}
        dbd_conf = self.folder / "slurmdbd.conf"  # slurmdbd reads it beside slurm.conf
        dbd_conf.touch(mode=0o600)
        dbd_conf.write_text("".join(f"{key}={value}\n" for key, value in dbd.items()))

    # --- start ---------------------------------------------------------------------------

    def start(self) -> None:
        reason = self.unavailable()
        if reason:
            raise ServiceError(f"cannot start a SLURM cluster here: {reason}")
        for folder in ("state", "spool", "log", "munge", "mysql"):
            (self.folder / folder).mkdir(parents=True, exist_ok=True)
        (self.folder / "munge").chmod(0o700)
        ports = {name: free_port() for name in ("slurmctld", "slurmd", "slurmdbd", "mariadb")}
        password = secrets.token_hex(16)
        self._write_config(ports, password)
        try:
            self._start_munge()
            self._start_mariadb(ports["mariadb"], password)
            self._start_slurmdbd(ports["slurmdbd"])
            self._start_slurmctld()
            self._start_slurmd()
        except BaseException:
            self.stop()
            raise

    def _start_munge(self) -> None:
        key = self.folder / "munge" / "munge.key"
        key.touch(mode=0o600)
        key.write_bytes(secrets.token_bytes(1024))
        log = self.logs / "munged.log"
        self._run("munged", "--force", f"--socket={self.munge_socket}", f"--key-file={key}",
                  f"--log-file={log}", f"--pid-file={self.folder / 'munge' / 'munged.pid'}",
                  f"--seed-file={self.folder / 'munge' / 'munged.seed'}", what="munged", log=log)
        wait_for(self.munge_socket.exists, 20, "munged", log)

    def _start_mariadb(self, port: int, password: str) -> None:
        data = self.folder / "mysql"
        log = self.logs / "mariadb.log"
        if not (data / "mysql").is_dir():
            self._run("mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                      "--auth-root-authentication-method=normal", "--skip-test-db",
                      what="mariadb-install-db", timeout=120)
        with log.open("a") as output:
            server = subprocess.Popen(
                [self.programs["mariadbd"], "--no-defaults", f"--datadir={data}", "--user=root",
                 f"--socket={self.mysql_socket}", "--bind-address=127.0.0.1", f"--port={port}",
                 "--skip-name-resolve", f"--pid-file={self.folder / 'mariadb.pid'}",
                 "--innodb-buffer-pool-size=32M", "--innodb-lock-wait-timeout=900",
                 "--innodb-log-file-size=16M"],
                stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        wait_for(lambda: port_open(port), START_SECONDS, "mariadbd", log, server)
        wait_for(lambda: (self.folder / "mariadb.pid").exists(), 20, "mariadbd", log, server)
        statements = ("CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1';"
                      f"ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{password}';"
                      "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';")
        self._run("mariadb", f"--socket={self.mysql_socket}", "-u", "root", "-e", statements,
                  what="creating slurmdbd's database user", log=log)

    def _start_slurmdbd(self, port: int) -> None:
        log = self.logs / "slurmdbd.log"
        self._run("slurmdbd", what="slurmdbd", log=log)
        wait_for(lambda: port_open(port), START_SECONDS, "slurmdbd", log)
        listed = self._run("sacctmgr", "-n", "-P", "list", "cluster", "format=cluster",
                           what="sacctmgr (slurmdbd)", log=log)
        if self.name not in listed.split():
            self._run("sacctmgr", "-i", "add", "cluster", self.name, what="sacctmgr add cluster",
                      log=log)

    def _start_slurmctld(self) -> None:
        log = self.logs / "slurmctld.log"
        self._run("slurmctld", "-f", str(self.conf), what="slurmctld", log=log)
        wait_for(lambda: "UP" in self._quiet("scontrol", "ping").stdout, START_SECONDS,
                 "slurmctld", log)

    def _start_slurmd(self) -> None:
        log = self.logs / "slurmd.log"
        self._run("slurmd", "-f", str(self.conf), "-N", self.node, what="slurmd", log=log)
        wait_for(lambda: self.state() == "idle", START_SECONDS, f"slurmd (node {self.node})",
                 log)

    def state(self) -> str:
        """The node's state as sinfo reports it (idle, mixed, allocated, down, ...)."""
        return self._quiet("sinfo", "-h", "-n", self.node, "-o", "%T").stdout.strip()

    # --- use -----------------------------------------------------------------------------

    def job_state(self, job_id: str) -> str:
        """The job's state in the accounting (``sacct``): PENDING, RUNNING, COMPLETED, ..."""
        output = self._quiet("sacct", "-n", "-P", "-X", "-o", "State", "-j", job_id).stdout
        states = output.split()
        return states[0] if states else "UNKNOWN"

    def running(self) -> bool:
        return pid_from_file(self.folder / "slurmctld.pid") is not None

    def logs_tail(self) -> str:
        return "\n".join(f"--- {path.name}:\n{log_tail(path, 8)}"
                         for path in sorted(self.logs.glob("*.log")))

    # --- stop ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Cancel every job, stop the daemons (controller first), leave the folder."""
        if self.running():
            self._quiet("scancel", "-p", PARTITION)
            with contextlib.suppress(ServiceError):
                wait_for(lambda: not self._quiet("squeue", "-h", "-p", PARTITION).stdout.strip(),
                         self.kill_wait_s + 30, "jobs ending")
            self._quiet("scontrol", "shutdown")
        for pid_file in ("slurmctld.pid", "slurmd.pid", "slurmdbd.pid", "mariadb.pid",
                         "munge/munged.pid"):
            stop_pid(self.folder / pid_file)
