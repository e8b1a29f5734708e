"""What the services share: finding programs, free ports, waiting for a daemon, stopping one by
its PID file, and the one error type (a :class:`~calo.errors.CaloError`: one line, exit 2)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from calo.errors import CaloError

__all__ = ["ServiceError", "find_program", "free_port", "log_tail", "missing_programs",
           "pid_from_file", "port_open", "run_command", "stop_pid", "wait_for"]

SYSTEM_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")  # daemons, often off a user's PATH


class ServiceError(CaloError):
    """A service that cannot start or stop, with the reason (and its log's last lines)."""


def find_program(name: str, patterns: Sequence[str] = ()) -> str | None:
    """``name`` on PATH or in the system folders, else the last (newest) match of ``patterns``
    (globs such as ``/usr/lib/postgresql/*/bin/initdb``)."""
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SYSTEM_DIRS))
    if found:
        return found
    matches = sorted((m for p in patterns for m in glob.glob(p)), key=_version_key)
    return matches[-1] if matches else None


def _version_key(path: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in Path(path).parts]


def missing_programs(programs: dict[str, str | None]) -> list[str]:
    return [name for name, path in programs.items() if path is None]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, port)) == 0


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or f"(empty log {path})"


def run_command(command: Sequence[str], what: str, timeout: float = 120,
                env: dict[str, str] | None = None, log: Path | None = None) -> str:
    """Run ``command``; its stdout, or a ServiceError with its output (and ``log``'s tail)."""
    try:
        result = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout,
                                env=env)
    except subprocess.TimeoutExpired as error:
        raise ServiceError(f"{what}: {command[0]} did not finish in {timeout:.0f} s") from error
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        if log is not None:
            detail += f"\n--- {log}:\n{log_tail(log)}"
        raise ServiceError(f"{what}: {' '.join(command[:2])} exited with status "
                           f"{result.returncode}: {detail}")
    return result.stdout


def wait_for(check: Callable[[], bool], seconds: float, what: str, log: Path | None = None,
             process: subprocess.Popen | None = None) -> None:
    """Poll ``check`` until it holds; a ServiceError naming ``what`` (with ``log``'s tail) after
    ``seconds``, or as soon as ``process`` has exited."""
    deadline = time.monotonic() + seconds
    while not check():
        if process is not None and process.poll() is not None:
            raise ServiceError(f"{what}: the process exited with status {process.returncode}"
                               + (f"\n--- {log}:\n{log_tail(log)}" if log else ""))
        if time.monotonic() > deadline:
            raise ServiceError(f"{what}: not ready after {seconds:.0f} s"
                               + (f"\n--- {log}:\n{log_tail(log)}" if log else ""))
        time.sleep(0.25)


def pid_from_file(path: Path) -> int | None:
    """The PID in ``path`` if that process still runs."""
    try:
        pid = int(path.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def stop_pid(path: Path, seconds: float = 30, group: bool = False) -> bool:
    """SIGTERM the process in the PID file ``path`` (its process group with ``group``), SIGKILL
    after ``seconds``; whether one was running."""
    pid = pid_from_file(path)
    if pid is None:
        return False
    send = os.killpg if group else os.kill
    try:
        send(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + seconds
    while pid_from_file(path) == pid and _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            send(pid, signal.SIGKILL)
    return True


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie that is not ours counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True
