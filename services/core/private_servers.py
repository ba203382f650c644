"""Private PostgreSQL, Redis and RabbitMQ servers for tests that break servers.

A fault test must never stop, restart or flush the machine's shared servers (5432, 6379,
5672): others run their tests against them at the same time. It starts its own instead,
from Debian's packages, each on a free 127.0.0.1 port with its files in a temporary
folder of its own, and kills only the processes it started.

    pg = PostgresServer()          # initdb on the first start
    pg.start(); pg.wait_ready(timeout_s=30)
    pg.kill()                      # SIGKILL to the process group it started (a crash)
    pg.start(); pg.wait_ready(timeout_s=30)   # same data folder, same port: crash recovery
    pg.remove()                    # stop (gracefully) and delete its folder

Each server is started in a new session (`start_new_session`), so its process group is
its own: `kill()` sends SIGKILL to that group (the postmaster and its backends, the Erlang
VM and its port programs) and waits until no member is left, so that a restart never
meets a half-dead predecessor holding its port or shared memory. `stop()` asks for the
server's own graceful shutdown (PostgreSQL fast shutdown, Redis/RabbitMQ SIGTERM).

PostgreSQL refuses to run as root: when this runs as root, the postmaster runs as the
`postgres` user and its folder belongs to that user. It runs with `fsync=off`: a killed
process loses nothing the kernel already has (WAL is written at every commit either way),
and this machine's disk is shared with everyone's tests; only a crash of the whole machine
would need the flush. The RabbitMQ node has a name of its own (`hoithi-<random>@localhost`)
and registers with the machine's epmd, like every node on a host; its HOME (and so its
Erlang cookie) is its own folder. Known limit of RabbitMQ 3.10 (its Raft library, fixed
later upstream: rabbitmq/ra#443): a quorum queue declared less than about half a second before
the node is killed comes back as a new, empty queue, because the name registry is synced
to disk on a timer. Declare, then kill later (the stacks here declare at start-up).

Pytest fixtures `private_postgres`, `private_redis`, `private_rabbitmq` (registered in the
root conftest.py) give a test a started, ready server and remove it afterwards.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

import pytest
from redis import Redis
from redis.exceptions import RedisError

from services.core.testing import free_port


def _newest_postgres_bin() -> Path:
    """Debian's layout: /usr/lib/postgresql/<major>/bin, the newest installed."""
    versions = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()]
    return max(versions, key=lambda p: int(p.parent.name)) if versions else Path("/usr/lib/postgresql/15/bin")


POSTGRES_BIN = Path(os.environ.get("POSTGRES_BIN") or _newest_postgres_bin())
RABBITMQ_SERVER = Path(os.environ.get("RABBITMQ_SERVER") or "/usr/lib/rabbitmq/bin/rabbitmq-server")
REDIS_SERVER = os.environ.get("REDIS_SERVER") or "redis-server"
# The Debian package that brings each server (`make services` installs them as root).
PACKAGES = {"postgres": "postgresql", "redis": "redis-server", "rabbitmq": "rabbitmq-server"}


Server = TypeVar("Server", bound="PrivateServer")


class ServerNotReady(RuntimeError):
    pass


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def kill_process_group(popen: subprocess.Popen[bytes], timeout_s: float = 10) -> None:
    """SIGKILL to the process group a process was started as the leader of
    (`start_new_session=True`), then wait until no live member is left: a restart must
    not meet a predecessor still holding its port, shared memory or lock files."""
    pgid = popen.pid
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    popen.wait(timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    while (left := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if left:
        raise RuntimeError(f"processes {left} outlived SIGKILL of their group {pgid}")


def listening_socket_inode(port: int) -> int | None:
    """The inode of the 127.0.0.1:port listening TCP socket (/proc/net/tcp), if any."""
    wanted = f"0100007F:{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if fields[1] == wanted and fields[3] == "0A":  # 0A: LISTEN
            return int(fields[9])
    return None


def holds_socket(pids: list[int], inode: int) -> bool:
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    return True
            except OSError:
                continue
    return False


class PrivateServer:
    """One server process on a port and folder of its own; subclasses say how to
    prepare, start and probe it."""

    kind: ClassVar[str] = "server"
    graceful_signal: ClassVar[signal.Signals] = signal.SIGTERM

    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        self._owns_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix=f"hoithi-{self.kind}-")) if root is None else root
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.log_path = self.root / f"{self.kind}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self._prepared = False

    # What a subclass provides.
    @property
    def url(self) -> str:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def answers(self) -> bool:
        """The server answers its protocol on the port."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Once, before the first start (initdb, config files)."""

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    run_as: str | None = None

    # Life cycle.
    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.kind} was never started")
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        """Start on the same folder and port (crash recovery when it was killed)."""
        if self.alive():
            raise RuntimeError(f"{self.kind} on port {self.port} is already running (pid {self.pid})")
        program = self.command()[0]
        if shutil.which(program) is None:
            raise ServerNotReady(
                f"{program} is missing: install Debian's {PACKAGES.get(self.kind, self.kind)} package "
                "(make services does, as root), or point POSTGRES_BIN / REDIS_SERVER / RABBITMQ_SERVER at it"
            )
        if not self._prepared:
            self.prepare()
            self._prepared = True
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.command(),
                cwd=self.root,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=self.run_as,
            )

    def wait_ready(self, timeout_s: float = 60) -> float:
        """Wait until the server answers; returns the seconds waited. Raises at once if
        the process exited, and with the log's tail when time runs out."""
        started = time.monotonic()
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise ServerNotReady(f"{self.kind} on port {self.port} exited\n{self.log_tail()}")
            if self.ready():
                return time.monotonic() - started
            time.sleep(0.1)
        raise ServerNotReady(f"{self.kind} on port {self.port} not ready after {timeout_s} s\n{self.log_tail()}")

    def stop(self, timeout_s: float = 30) -> None:
        """The server's own graceful shutdown; SIGKILL if it takes longer than timeout_s."""
        if not self.alive():
            return
        assert self.popen is not None
        try:
            os.kill(self.popen.pid, self.graceful_signal)
            self.popen.wait(timeout=timeout_s)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def kill(self, timeout_s: float = 10) -> None:
        """SIGKILL to every process of the group this server was started in (a crash),
        then wait until none is left."""
        if self.popen is not None:
            kill_process_group(self.popen, timeout_s)

    def remove(self) -> None:
        """Stop and delete the folder this object created (a given root is kept)."""
        self.stop()
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def ready(self) -> bool:
        """This server (not another one on the same port) listens and answers."""
        if not self.alive():
            return False
        inode = listening_socket_inode(self.port)
        return inode is not None and holds_socket(group_members(self.pid), inode) and self.answers()

    def log_files(self) -> list[Path]:
        """What to keep when the folder goes: its output (and, for RabbitMQ, the node's log)."""
        return [p for p in (self.log_path, *sorted((self.root / "log").glob("*.log"))) if p.is_file()]

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> PrivateServer:
        self.start()
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class PostgresServer(PrivateServer):
    kind = "postgres"
    graceful_signal = signal.SIGINT  # "fast" shutdown: roll back open transactions, checkpoint

    def __init__(self, root: Path | None = None, port: int | None = None, *, max_connections: int = 300) -> None:
        super().__init__(root, port)
        self.max_connections = max_connections
        self.data_dir = self.root / "data"
        self.run_as = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def prepare(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        if self.run_as is not None:
            owner = pwd.getpwnam(self.run_as)
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        subprocess.run(
            [str(POSTGRES_BIN / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
             "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"],
            cwd=self.root, check=True, capture_output=True, timeout=120, user=self.run_as,
        )

    def command(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            "max_connections": str(self.max_connections),
            "fsync": "off",
        }
        return [str(POSTGRES_BIN / "postgres"), "-D", str(self.data_dir),
                *(arg for key, value in settings.items() for arg in ("-c", f"{key}={value}"))]

    def answers(self) -> bool:
        probe = subprocess.run(
            [str(POSTGRES_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"],
            capture_output=True, timeout=10,
        )
        return probe.returncode == 0


class RedisServer(PrivateServer):
    """`persistence="none"` (the default) loses everything on a kill, the harshest case
    for a projection that must rebuild itself; "aof" appends every write (fsync each second)."""

    kind = "redis"

    def __init__(
        self, root: Path | None = None, port: int | None = None, *, persistence: Literal["none", "aof"] = "none"
    ) -> None:
        super().__init__(root, port)
        self.persistence = persistence

    @property
    def url(self) -> str:
        return self.database_url(0)

    def database_url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def command(self) -> list[str]:
        durable = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.persistence == "aof" else [
            "--appendonly", "no"]
        return [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root),
                "--save", "", *durable, "--daemonize", "no", "--logfile", ""]

    def answers(self) -> bool:
        client = Redis(host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except RedisError:  # refused, or LOADING its append-only file
            return False
        finally:
            client.close()


class RabbitMQServer(PrivateServer):
    """A second RabbitMQ node (`hoithi-<random>@localhost`); guest/guest from 127.0.0.1."""

    kind = "rabbitmq"

    def __init__(self, root: Path | None = None, port: int | None = None, *, dist_port: int | None = None) -> None:
        super().__init__(root, port)
        self.dist_port = dist_port or free_port()
        self.node_name = f"hoithi-{uuid.uuid4().hex[:8]}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def prepare(self) -> None:
        for folder in ("mnesia", "log", "home"):
            (self.root / folder).mkdir(exist_ok=True)
        (self.root / "rabbitmq.conf").write_text("log.file.level = warning\nlog.console = false\n")
        (self.root / "enabled_plugins").write_text("[].\n")
        # The machine's rabbitmq-env.conf names its own node; this node reads none.
        (self.root / "rabbitmq-env.conf").write_text("")

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.root / "home"),
            "RABBITMQ_NODENAME": self.node_name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            # Exec the VM in place of the script, so the pid started is the broker's.
            "RUNNING_UNDER_SYSTEMD": "1",
        }

    def command(self) -> list[str]:
        return [str(RABBITMQ_SERVER)]

    def answers(self) -> bool:
        """The AMQP listener starts last in the boot: a Connection.Start frame (type 1)
        in answer to the protocol header means the broker is up."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"AMQP\x00\x00\x09\x01")
                return conn.recv(1) == b"\x01"
        except OSError:
            return False


def _started(server: Server, timeout_s: float) -> Iterator[Server]:
    server.start()
    try:
        server.wait_ready(timeout_s)
        yield server
    finally:
        server.remove()


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    yield from _started(PostgresServer(), 60)


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    yield from _started(RedisServer(), 30)


@pytest.fixture
def private_rabbitmq() -> Iterator[RabbitMQServer]:
    yield from _started(RabbitMQServer(), 90)
