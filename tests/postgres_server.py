"""A real PostgreSQL server for the tests: Debian's `postgresql` binaries, a temporary cluster.

`PostgresServer.start()` finds `initdb` and `pg_ctl` (on PATH, else the newest
`/usr/lib/postgresql/<version>/bin`), runs `initdb` into a new temporary directory and starts
the server on 127.0.0.1 at a free port, with its unix socket in that directory and `fsync` off
(a throwaway cluster: a test never survives a power cut; the benchmarks keep the defaults).
PostgreSQL refuses to run as root; when the tests are root (as in CI) the server runs as
`nobody` (`setpriv`, else `runuser`).

The superuser `postgres` connects over the socket (trust) to create a database per test
(`new_database`); the stores connect as `mesh` over TCP with a password (scram-sha-256), as a
team's aggregator would. `Unavailable` says why no server can be had: the fixture skips with it.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg

from tests.ports import free_port

USER = "mesh"
PASSWORD = "mesh-s3cret@pw"
"""The stores' password: with an `@`, so URLs carry it percent-encoded (`%40`)."""
RUN_AS = "nobody"
"""The unprivileged user the server runs as when the tests run as root."""
START_TRIES = 3
"""A free port may be taken before the server binds it: so many ports are tried."""
THROWAWAY = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")
"""The tests' server settings: nothing survives a power cut, nothing needs to."""


class Unavailable(Exception):
    """No PostgreSQL server can be started here; the message says why."""


def binaries() -> Path:
    """The directory holding initdb and pg_ctl; Unavailable when there is none."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if not versions:
        raise Unavailable(
            "no PostgreSQL server binaries (initdb): install Debian's postgresql package "
            "(make system-deps does)"
        )
    return Path(versions[-1]).parent


def _demotion() -> tuple[list[str], int, int]:
    """The command prefix that runs as RUN_AS (none unless root), and its uid and gid."""
    if os.geteuid() != 0:
        return [], os.geteuid(), os.getegid()
    try:
        user = pwd.getpwnam(RUN_AS)
    except KeyError:
        raise Unavailable(f"running as root, and no user {RUN_AS!r} to run PostgreSQL as") from None
    if shutil.which("setpriv"):
        prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    elif shutil.which("runuser"):
        prefix = ["runuser", "-u", RUN_AS, "--"]
    else:
        raise Unavailable("running as root without setpriv or runuser: cannot run PostgreSQL")
    return prefix, user.pw_uid, user.pw_gid


@dataclass
class PostgresServer:
    """A running throwaway cluster (see the module doc); `close()` stops it and removes it."""

    bin: Path
    directory: Path
    prefix: list[str]
    settings: tuple[str, ...] = THROWAWAY
    port: int = 0
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @classmethod
    def start_new(cls, settings: tuple[str, ...] = THROWAWAY) -> PostgresServer:
        """initdb into a new temporary directory, then start; Unavailable naming the problem.

        `settings` are `-c` settings of the server (() for PostgreSQL's defaults: durable).
        """
        prefix, uid, gid = _demotion()
        directory = Path(tempfile.mkdtemp(prefix="mesh-pg-"))
        os.chown(directory, uid, gid)
        server = cls(binaries(), directory, prefix, settings)
        try:
            server._run(
                "initdb", "-D", str(server.data), "-U", "postgres", "-E", "UTF8",
                "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync",
            )  # fmt: skip
            server.start()
            with server.admin() as admin:
                admin.execute(f"CREATE ROLE {USER} LOGIN CREATEDB PASSWORD '{PASSWORD}'")
        except BaseException:
            server.close()
            raise
        return server

    def _run(self, program: str, *arguments: str) -> subprocess.CompletedProcess[str]:
        command = [*self.prefix, str(self.bin / program), *arguments]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise Unavailable(f"{program} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def start(self) -> None:
        """Start the server (again), on its port if it had one, else on a free one."""
        tries = 1 if self.port else START_TRIES
        for attempt in range(tries):
            port = self.port or free_port()
            options = " ".join(
                [f"-p {port}", f"-k {self.directory}", "-c listen_addresses=127.0.0.1"]
                + [f"-c {setting}" for setting in self.settings]
            )
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.directory / "log"),
                          "-w", "-t", "30", "-o", options, "start")  # fmt: skip
            except Unavailable:
                if attempt + 1 == tries:
                    raise Unavailable(f"PostgreSQL did not start: {self.log_tail()}") from None
                continue
            self.port = port
            return

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`immediate`: as a crash, without a shutdown checkpoint)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def log_tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            return " | ".join((self.directory / "log").read_text().splitlines()[-lines:])
        return "(no log)"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """A superuser connection over the socket (autocommit)."""
        return psycopg.connect(
            host=str(self.directory), port=self.port, user="postgres", dbname="postgres",
            autocommit=True,
        )  # fmt: skip

    def url(self, database: str, *, password: str = PASSWORD) -> str:
        """The URL of `database` for the stores: TCP, user `mesh`, its password encoded."""
        return f"postgresql://{USER}:{quote(password, safe='')}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A new empty database owned by `mesh`; its name."""
        name = f"history_{os.getpid()}_{next(self._names)}"
        with self.admin() as admin:
            admin.execute(f"CREATE DATABASE {name} OWNER {USER}")
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def close(self) -> None:
        """Stop the server (if it runs) and remove its directory."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Unavailable):
                self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)
