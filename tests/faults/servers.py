"""Private Postgres, Redis and Qdrant servers that a fault test may stop, crash, restart and empty.

Every server here listens on ports of its own and keeps its data in a folder of its own, so a
test can do to it what must never happen to the machine's shared servers (Postgres on 5432,
Redis on 6379, the Qdrant test server on 6343): stop it, kill it, restart it, wipe it.

The servers bind only the addresses they are given (127.0.0.1 by default). To reach one from a
network namespace (see ``netns.Host``), create the host first and pass its ``service_address``
in ``hosts``: an address that does not exist yet cannot be bound.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
QDRANT_CACHE = REPO_ROOT / ".cache" / "qdrant"  # where infra/qdrant-test-server.sh unpacks it
LOG_TAIL_CHARS = 2000
POSTGRES_USER = "postgres"


class MissingServerError(RuntimeError):
    """A server's program (or the user it must run as) is not on this machine."""


class CommandError(RuntimeError):
    """A helper command exited with an error; the message carries its stderr."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_port_other_than(taken: int) -> int:
    # a port just released may be handed out again at once
    return next(port for port in iter(free_port, None) if port != taken)


def run_command(argv: Sequence[str], *, timeout: float = 120) -> str:
    """Runs ``argv`` to completion and returns its stdout, or raises with its stderr."""
    try:
        done = subprocess.run(
            list(argv), check=True, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.CalledProcessError as error:
        output = (error.stderr or "").strip() or (error.stdout or "").strip()
        raise CommandError(f"{' '.join(argv)} exited {error.returncode}: {output}") from error
    return done.stdout


def log_tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return f"(no log at {path})"


def wait_until(condition: Callable[[], bool], seconds: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def start_child(
    argv: Sequence[str],
    *,
    log_path: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Starts a server process in a session of its own, its output going to ``log_path``."""
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # its own session: a Ctrl-C meant for pytest does not crash it behind the test's back
            start_new_session=True,
        )


def end_child(process: subprocess.Popen, first: signal.Signals, grace: float) -> None:
    """Sends ``first`` to the process's group, then SIGKILL if it is still there after ``grace``."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, first)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def probe_host(hosts: Sequence[str]) -> str:
    """The address to check a server on: its first, unless that is a wildcard."""
    if hosts and hosts[0] not in {"*", "0.0.0.0", "::"}:
        return hosts[0]
    return "127.0.0.1"


def require_program(name: str, fallbacks: Sequence[Path] = ()) -> Path:
    """``name`` on PATH, else the first of ``fallbacks`` that exists."""
    found = shutil.which(name)
    if found:
        return Path(found)
    for candidate in fallbacks:
        if os.access(candidate, os.X_OK):
            return candidate
    raise MissingServerError(f"{name} is not installed (not on PATH)")


# --- Postgres ---------------------------------------------------------------------------------


def postgres_program(name: str) -> Path:
    """A Postgres program; Debian keeps them off PATH, in /usr/lib/postgresql/<major>/bin."""
    installed = Path("/usr/lib/postgresql").glob(f"*/bin/{name}")
    newest_first = sorted(installed, key=lambda path: _numeric(path.parents[1].name), reverse=True)
    return require_program(name, newest_first)


def _numeric(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return ()


class PostgresServer:
    """A Postgres cluster of its own, run as the ``postgres`` user with trust authentication.

    Postgres refuses to run as root, and the ``postgres`` user cannot reach into pytest's
    ``tmp_path`` (its root folder is private to root), so the cluster lives in a folder of its
    own under the system temporary folder; ``close()`` copies its log into ``folder`` and
    removes it.
    """

    def __init__(
        self,
        folder: Path,
        *,
        port: int | None = None,
        hosts: Sequence[str] = ("127.0.0.1",),
        trusted_networks: Sequence[str] = (),
    ) -> None:
        self.initdb = postgres_program("initdb")
        self.pg_ctl = postgres_program("pg_ctl")
        self.psql = postgres_program("psql")
        self.runuser = require_program("runuser")
        if not _user_exists(POSTGRES_USER):
            raise MissingServerError(f"there is no {POSTGRES_USER!r} user to run Postgres as")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.hosts = tuple(hosts)
        self.trusted_networks = tuple(trusted_networks)
        self.runtime = Path(tempfile.mkdtemp(prefix="embedq-pg-"))
        self.data = self.runtime / "data"
        self.sockets = self.runtime / "sockets"  # short path: socket names are limited to 107 bytes
        self.log_path = self.runtime / "postgres.log"
        self.sockets.mkdir()
        shutil.chown(self.runtime, POSTGRES_USER, POSTGRES_USER)
        shutil.chown(self.sockets, POSTGRES_USER, POSTGRES_USER)
        self._closed = False

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def url(self, host: str = "127.0.0.1", database: str = "postgres") -> str:
        return f"postgresql+psycopg://{POSTGRES_USER}@{host}:{self.port}/{database}"

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        options = (
            f"-p {self.port} -c listen_addresses='{','.join(self.hosts)}'"
            f" -k {self.sockets} -c fsync=off"  # fsync off: tests need no durability on power loss
        )
        start = [self.pg_ctl, "start", "-D", self.data, "-l", self.log_path, "-w", "-t", "60"]
        try:
            self._as_postgres(*start, "-o", options, timeout=90)
        except (CommandError, subprocess.TimeoutExpired) as error:
            raise self._failed_to_start(str(error)) from error
        # pg_ctl -w trusts postmaster.pid; a query over TCP is what the code under test will do
        if not wait_until(self.is_up, 30, interval=0.2):
            raise self._failed_to_start("it does not answer queries over TCP")

    def stop(self, mode: str = "fast") -> None:
        """Stops the server: ``fast`` (roll back sessions), ``immediate`` (a crash), ``smart``."""
        if mode not in {"fast", "immediate", "smart"}:
            raise ValueError(f"unknown shutdown mode {mode!r}")
        if self.is_running():
            self._as_postgres(
                self.pg_ctl, "stop", "-D", self.data, "-m", mode, "-w", "-t", "60", timeout=90
            )

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def is_running(self) -> bool:
        """Whether a postmaster owns the data folder (it may not be accepting connections)."""
        if not (self.data / "postmaster.pid").exists():
            return False
        status = subprocess.run(
            [self.runuser, "-u", POSTGRES_USER, "--", self.pg_ctl, "status", "-D", self.data],
            capture_output=True,
        )
        return status.returncode == 0

    def is_up(self) -> bool:
        """Whether the server answers a query over TCP."""
        connection = ["-h", probe_host(self.hosts), "-p", str(self.port), "-U", POSTGRES_USER]
        probe = subprocess.run(
            [self.psql, *connection, "-d", "postgres", "-At", "-c", "select 1"],
            capture_output=True,
            text=True,
            env={**os.environ, "PGCONNECT_TIMEOUT": "2"},
        )
        return probe.returncode == 0 and probe.stdout.strip() == "1"

    def close(self) -> None:
        """Stops the server if it runs (as a crash: nothing is worth saving) and removes it."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self.stop("immediate")
        with contextlib.suppress(OSError):
            shutil.copyfile(self.log_path, self.folder / "postgres.log")
        shutil.rmtree(self.runtime, ignore_errors=True)

    def _initdb(self) -> None:
        self._as_postgres(
            self.initdb, "--auth=trust", "-U", POSTGRES_USER, "-D", self.data, "--no-sync"
        )
        if self.trusted_networks:
            lines = "".join(f"host all all {net} trust\n" for net in self.trusted_networks)
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write(lines)

    def _as_postgres(self, *argv: object, timeout: float = 120) -> str:
        command = [str(self.runuser), "-u", POSTGRES_USER, "--", *map(str, argv)]
        return run_command(command, timeout=timeout)

    def _failed_to_start(self, why: str) -> RuntimeError:
        with contextlib.suppress(Exception):  # pg_ctl may have started it before giving up
            self.stop("immediate")
        return RuntimeError(
            f"Postgres on port {self.port} did not come up: {why}\n"
            f"--- end of {self.log_path} ---\n{log_tail(self.log_path)}"
        )


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# --- Redis ------------------------------------------------------------------------------------


def redis_command(port: int, *args: str, host: str = "127.0.0.1", timeout: float = 2) -> bytes:
    """Sends one command over RESP and returns the first line of the reply (b"" if it hung up).

    A raw socket rather than redis-py: the harness then needs nothing but the server, and a
    SHUTDOWN, which answers by closing the connection, is not an error.
    """
    request = f"*{len(args)}\r\n".encode()
    for arg in args:
        encoded = arg.encode()
        request += b"$%d\r\n%s\r\n" % (len(encoded), encoded)
    with socket.create_connection((host, port), timeout=timeout) as connection:
        connection.sendall(request)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = connection.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.split(b"\r\n", 1)[0]


class RedisServer:
    """A Redis server of its own, with its data (append-only file by default) in ``folder``."""

    def __init__(
        self,
        folder: Path,
        *,
        port: int | None = None,
        hosts: Sequence[str] = ("127.0.0.1",),
        appendonly: bool = True,
    ) -> None:
        self.program = require_program("redis-server")
        self.folder = Path(folder)
        self.data = self.folder / "data"
        self.log_path = self.folder / "redis.log"
        self.port = port or free_port()
        self.hosts = tuple(hosts)
        self.appendonly = appendonly
        self.process: subprocess.Popen | None = None
        self.data.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def url(self, host: str = "127.0.0.1", db: int = 0) -> str:
        return f"redis://{host}:{self.port}/{db}"

    def start(self) -> None:
        if self.is_running():
            raise RuntimeError(f"Redis on port {self.port} is already running")
        self.data.mkdir(parents=True, exist_ok=True)
        argv = [str(self.program), "--port", str(self.port), "--bind", *self.hosts]
        argv += ["--dir", str(self.data), "--appendonly", "yes" if self.appendonly else "no"]
        argv += ["--save", ""]  # no RDB snapshots: what survives a restart is the AOF's doing
        argv += ["--daemonize", "no", "--protected-mode", "no"]
        self.process = start_child(argv, log_path=self.log_path, cwd=self.data)
        if not wait_until(lambda: self.is_up() or not self.is_running(), 30):
            raise self._failed_to_start("it does not answer PING after 30 s")
        if not self.is_up():
            raise self._failed_to_start(f"it exited with status {self.process.returncode}")

    def stop(self) -> None:
        """A graceful SHUTDOWN: the AOF is flushed and fsynced before the server exits."""
        if not self.is_running():
            return
        assert self.process is not None
        reply = b""
        with contextlib.suppress(OSError):
            reply = redis_command(self.port, "SHUTDOWN", timeout=10)
        if reply.startswith(b"-"):
            raise RuntimeError(f"Redis refused to shut down: {reply.decode(errors='replace')}")
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            end_child(self.process, signal.SIGTERM, 10)

    def kill(self) -> None:
        """SIGKILL, no shutdown work. Acknowledged writes survive anyway: Redis writes them to the
        AOF before replying, and its fsync (up to a second late) matters only if the machine dies.
        """
        if self.is_running():
            assert self.process is not None
            end_child(self.process, signal.SIGKILL, 10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def empty(self) -> None:
        """Stops the server, deletes its data and starts it again: it comes back empty."""
        self.stop()
        for entry in self.data.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        self.start()

    def flush(self) -> None:
        reply = redis_command(self.port, "FLUSHALL")
        if reply != b"+OK":
            raise RuntimeError(f"FLUSHALL answered {reply!r}")

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def is_up(self) -> bool:
        try:
            reply = redis_command(self.port, "PING", host=probe_host(self.hosts), timeout=1)
        except OSError:
            return False
        return reply == b"+PONG"

    def close(self) -> None:
        """Kills the server if it runs; its folder is the test's to remove."""
        if self.process is not None:
            end_child(self.process, signal.SIGKILL, 10)

    def _failed_to_start(self, why: str) -> RuntimeError:
        self.close()
        return RuntimeError(
            f"Redis on port {self.port} did not come up: {why}\n"
            f"--- end of {self.log_path} ---\n{log_tail(self.log_path)}"
        )


# --- Qdrant -----------------------------------------------------------------------------------


def _dist_version(binary: Path) -> tuple[int, ...]:
    # .cache/qdrant/dist-1.16.3/package/bin/qdrant -> (1, 16, 3)
    return _numeric(binary.parents[2].name.removeprefix("dist-"))


def qdrant_program() -> Path:
    """The newest binary ``infra/qdrant-test-server.sh`` downloaded into the cache; fetched
    first if there is none (the shared test server may be another checkout's)."""
    found = _cached_qdrant()
    if not found:
        _fetch_qdrant()
        found = _cached_qdrant()
    if not found:
        raise MissingServerError(
            f"no Qdrant binary under {QDRANT_CACHE}/dist-*/package/bin/: run"
            " `bash infra/qdrant-test-server.sh fetch` to download it"
        )
    return max(found, key=_dist_version)


def _cached_qdrant() -> list[Path]:
    binaries = QDRANT_CACHE.glob("dist-*/package/bin/qdrant")
    return [binary for binary in binaries if os.access(binary, os.X_OK)]


def _fetch_qdrant() -> None:
    script = REPO_ROOT / "infra" / "qdrant-test-server.sh"
    try:
        run_command(["bash", str(script), "fetch"], timeout=300)
    except (CommandError, OSError) as error:
        raise MissingServerError(f"could not fetch the Qdrant binary: {error}") from error


class QdrantServer:
    """A Qdrant server of its own, configured by environment, with its storage in ``folder``."""

    def __init__(
        self,
        folder: Path,
        *,
        http_port: int | None = None,
        grpc_port: int | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.program = qdrant_program()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log_path = self.folder / "qdrant.log"
        self.host = host
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port_other_than(self.http_port)
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> QdrantServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def environment(self) -> dict[str, str]:
        # a developer's own QDRANT__* settings must not leak into the private server
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("QDRANT__")}
        return {
            **inherited,
            "QDRANT__SERVICE__HOST": self.host,
            "QDRANT__SERVICE__HTTP_PORT": str(self.http_port),
            "QDRANT__SERVICE__GRPC_PORT": str(self.grpc_port),
            "QDRANT__STORAGE__STORAGE_PATH": str(self.folder / "storage"),
            "QDRANT__STORAGE__SNAPSHOTS_PATH": str(self.folder / "snapshots"),
            "QDRANT__TELEMETRY_DISABLED": "true",
        }

    def start(self) -> None:
        if self.is_running():
            raise RuntimeError(f"Qdrant on port {self.http_port} is already running")
        # cwd: Qdrant looks for ./config and drops ./.qdrant-initialized where it starts
        self.process = start_child(
            [str(self.program)], log_path=self.log_path, cwd=self.folder, env=self.environment()
        )
        if not wait_until(lambda: self.is_up() or not self.is_running(), 60, interval=0.2):
            raise self._failed_to_start("/readyz did not answer 200 within 60 s")
        if not self.is_up():
            raise self._failed_to_start(f"it exited with status {self.process.returncode}")

    def stop(self) -> None:
        """SIGTERM, which Qdrant handles by shutting down cleanly; SIGKILL after 20 s."""
        if self.process is not None:
            end_child(self.process, signal.SIGTERM, 20)

    def kill(self) -> None:
        if self.process is not None:
            end_child(self.process, signal.SIGKILL, 10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def is_up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                return response.status == 200
        except (OSError, http.client.HTTPException):  # URLError and HTTPError are OSErrors
            return False

    def close(self) -> None:
        """Kills the server if it runs; its folder is the test's to remove."""
        self.kill()

    def _failed_to_start(self, why: str) -> RuntimeError:
        self.close()
        return RuntimeError(
            f"Qdrant at {self.url} did not come up: {why}\n"
            f"--- end of {self.log_path} ---\n{log_tail(self.log_path)}"
        )
