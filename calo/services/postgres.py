"""A PostgreSQL server in a folder of its own: ``initdb`` once, ``pg_ctl start``/``stop``,
databases created on demand, listening on 127.0.0.1 only.

The programs are Debian's ``postgresql`` package (``/usr/lib/postgresql/<version>/bin``, not on
PATH) or any PostgreSQL on PATH. PostgreSQL refuses to run as root: under root, the server runs
as the ``postgres`` user (``runuser``), which then owns the folder. Connections from 127.0.0.1
are trusted (no password): a server for one machine's tests and tryouts; a team's server is set
up by its administrators and only its URL is given to calo.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from calo.services.common import (
    ServiceError,
    find_program,
    free_port,
    log_tail,
    missing_programs,
    run_command,
)

__all__ = ["PostgresServer"]

_PATTERNS = "/usr/lib/postgresql/*/bin/{}"
PROGRAMS = ("initdb", "pg_ctl", "postgres")
SERVER_USER = "postgres"  # who runs the server when calo runs as root
START_SECONDS = 60


def _programs() -> dict[str, str | None]:
    found = {name: find_program(name, [_PATTERNS.format(name)]) for name in PROGRAMS}
    if os.geteuid() == 0:
        found["runuser"] = shutil.which("runuser") or find_program("runuser")
    return found


class PostgresServer:
    """The server whose data lives in ``folder/data`` (log ``folder/postgres.log``)."""

    def __init__(self, folder: Path, port: int | None = None, user: str = "calo") -> None:
        self.folder = Path(folder).resolve()
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.port = port or free_port()
        self.user = user  # the superuser initdb creates; connections use it
        self.programs = _programs()

    @staticmethod
    def missing() -> list[str]:
        """The programs this machine lacks to run a server (empty: it can)."""
        return missing_programs(_programs())

    def url(self, database: str, driver: str = "postgresql+psycopg") -> str:
        """The SQLAlchemy URL of ``database`` (``driver`` ``postgresql`` for a libpq URI)."""
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"

    def _owner(self) -> pwd.struct_passwd | None:
        """The account the server runs as when this process is root (None: as this process)."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(SERVER_USER)
        except KeyError as error:
            raise ServiceError(f"PostgreSQL refuses to run as root and there is no "
                               f"'{SERVER_USER}' user to run it as: install Debian's postgresql "
                               "package or run as another user") from error

    def _command(self, program: str, *arguments: str) -> list[str]:
        path = self.programs.get(program)
        if path is None:
            raise ServiceError(f"cannot start PostgreSQL: {program} not found (install Debian's "
                               "postgresql package, or put PostgreSQL's bin folder on PATH)")
        command = [path, *arguments]
        owner = self._owner()
        if owner is not None:
            command = [self.programs["runuser"] or "runuser", "-u", owner.pw_name, "--", *command]
        return command

    def _prepare_folder(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        owner = self._owner()
        if owner is None:
            return
        for path in (self.folder, *self.folder.rglob("*")):
            os.chown(path, owner.pw_uid, owner.pw_gid, follow_symlinks=False)
        for parent in self.folder.parents:  # the server must reach its folder
            if parent.stat().st_mode & 0o001 == 0 and parent.stat().st_uid != owner.pw_uid:
                raise ServiceError(f"the PostgreSQL server runs as '{owner.pw_name}' (it refuses "
                                   f"root) and cannot enter {parent}: choose a folder it can "
                                   "reach (under /tmp, say)")

    def running(self) -> bool:
        if not (self.data / "PG_VERSION").is_file() or self.programs.get("pg_ctl") is None:
            return False
        return subprocess.run(self._command("pg_ctl", "-D", str(self.data), "status"),
                               capture_output=True).returncode == 0

    def start(self, fsync: bool = True) -> None:
        """initdb (once) and start the server on 127.0.0.1:``port``; ``fsync=False`` for
        throw-away test servers."""
        if self.running():
            return
        self._prepare_folder()
        if not (self.data / "PG_VERSION").is_file():
            run_command(self._command("initdb", "-D", str(self.data), "-U", self.user,
                                      "--auth=trust", "-E", "UTF8", "--locale=C",
                                      *([] if fsync else ["--no-sync"])),
                        "initdb (PostgreSQL)")
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data}"
                   + ("" if fsync else " -c fsync=off -c synchronous_commit=off"))
        run_command(self._command("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
                                  "-t", str(START_SECONDS), "-o", options, "start"),
                    f"PostgreSQL on port {self.port}", timeout=START_SECONDS + 30, log=self.log)

    def create_database(self, name: str) -> str:
        """Create ``name`` unless it exists; its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        try:
            with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user,
                                 dbname="postgres", autocommit=True,
                                 connect_timeout=10) as connection:
                exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                            (name,)).fetchone()
                if not exists:
                    connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as error:
            raise ServiceError(f"cannot create the database {name} on 127.0.0.1:{self.port}: "
                               f"{error}\n--- {self.log}:\n{log_tail(self.log)}") from error
        return self.url(name)

    def stop(self) -> None:
        if self.running():
            run_command(self._command("pg_ctl", "-D", str(self.data), "-m", "fast", "-w",
                                      "stop"), "stopping PostgreSQL", log=self.log)
