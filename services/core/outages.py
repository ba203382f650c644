"""Is a failure a dependency being away, or the work's own fault? One answer for every
process (docs/decisions.md "An outage does not count against a message").

`is_dependency_outage(exc)` says whether an error means a server the work needs
(PostgreSQL, Redis, an SMTP relay, an HTTP provider) could not be reached or answered
"not now": refused or reset connections, timeouts, DNS failures, PostgreSQL shutting down
or starting up, a read-only server after a failover, Redis loading its data. Such an
error says nothing about the message being handled, so the bus waits for the server and
tries the same message again instead of spending one of its retries.

`could_not_connect(exc)` is the narrower question a sender asks before it calls a
failure harmless to repeat: the request never reached the server (refused, no route, a
connect timeout, DNS). A read timeout or a hang-up mid-request is an outage too, but the
server may have acted on the request.

`Dependency` is a server with a cheap check ("does it answer now?"), and
`wait_for_dependencies` waits, with a bounded exponential backoff, until every one
answers.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

import aiosmtplib
import asyncpg
import httpx
from redis import exceptions as redis_errors
from redis.asyncio import Redis

log = logging.getLogger(__name__)

# Backoff while waiting for a dependency: soon enough to notice a quick restart, rare
# enough not to hammer a server that is coming back.
FIRST_WAIT_S = 0.5
LONGEST_WAIT_S = 10.0
CHECK_TIMEOUT_S = 2.0

_NETWORK_ERRNOS = frozenset({
    errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ETIMEDOUT,
    errno.ENETDOWN, errno.ENETUNREACH, errno.ENETRESET, errno.EHOSTDOWN, errno.EHOSTUNREACH,
    errno.EADDRNOTAVAIL, errno.ENOTCONN, errno.ESHUTDOWN,
})

_OUTAGE_TYPES: tuple[type[BaseException], ...] = (
    # Builtins cover asyncio's and aiosmtplib's connection errors and timeouts
    # (SMTPConnectError, SMTPServerDisconnected and SMTPTimeoutError derive from them).
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    # PostgreSQL: SQLSTATE class 08 (connection exceptions), 57P01-57P03 (admin or crash
    # shutdown, "the database system is starting up"), 53300 (too many connections),
    # 25006 (a read-only standby, what a client sees during a failover).
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ReadOnlySQLTransactionError,
    # Redis: ConnectionError covers BusyLoadingError (loading its data after a restart);
    # ReadOnlyError is a replica answering during a failover.
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    # HTTP providers: could not connect, timed out, or the server hung up.
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


def is_dependency_outage(exc: BaseException) -> bool:
    """True when `exc`, or an error it was raised from or wraps (an exception group's
    members, `raise ... from`, an error raised while handling one), is a server being
    unreachable or refusing work for now."""
    return any(_is_outage_itself(e) for e in _causes(exc))


_NOT_CONNECTED_ERRNOS = frozenset({
    errno.ECONNREFUSED, errno.ENETDOWN, errno.ENETUNREACH, errno.EHOSTDOWN, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL,
})
_NOT_CONNECTED_TYPES: tuple[type[BaseException], ...] = (
    ConnectionRefusedError,
    socket.gaierror,
    aiosmtplib.SMTPConnectError,  # refused, or no greeting in time: nothing was sent
    httpx.ConnectError,
    httpx.ConnectTimeout,
)


def could_not_connect(exc: BaseException) -> bool:
    """True when the request (or a wrapped cause of it) never reached the server."""
    for e in _causes(exc):
        if isinstance(e, _NOT_CONNECTED_TYPES):
            return True
        if isinstance(e, OSError) and (
            e.errno in _NOT_CONNECTED_ERRNOS or (e.errno is None and str(e).startswith("Multiple exceptions:"))
        ):
            return True
    return False


def dependency_of(exc: BaseException) -> str | None:
    """The dependency an outage error names, when it says: an error carrying a
    `dependency` attribute (notify's unreachable providers), PostgreSQL's or Redis's own
    errors; None when it cannot tell (a bare refused connection)."""
    for e in _causes(exc):
        named = getattr(e, "dependency", None)
        if isinstance(named, str):
            return named
        if isinstance(e, asyncpg.PostgresError | asyncpg.InterfaceError):
            return "postgres"
        if isinstance(e, redis_errors.RedisError):
            return "redis"
    return None


def _is_outage_itself(exc: BaseException) -> bool:
    if isinstance(exc, _OUTAGE_TYPES):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        # asyncpg's word for a pooled connection the server dropped (a restart); its other
        # InterfaceErrors are misuse and must count against the message.
        return "connection is closed" in str(exc)
    if isinstance(exc, asyncpg.exceptions._base.InternalClientError):
        # A pooled connection whose query the server's crash cut short is left between two
        # states, and the next query on it says so ("cannot switch to state 12; another
        # operation (2) is in progress"): seen by the fault suite when PostgreSQL was killed.
        return "cannot switch to state" in str(exc)
    if isinstance(exc, OSError):
        if exc.errno in _NETWORK_ERRNOS:
            return True
        # asyncio.create_connection to a name with several addresses, all refused.
        return exc.errno is None and str(exc).startswith("Multiple exceptions:")
    return False


def _causes(exc: BaseException, depth: int = 0) -> Iterator[BaseException]:
    if depth > 8:
        return
    yield exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _causes(inner, depth + 1)
    if exc.__cause__ is not None:
        yield from _causes(exc.__cause__, depth + 1)
    elif exc.__context__ is not None and not exc.__suppress_context__:
        yield from _causes(exc.__context__, depth + 1)


# --- dependencies and their checks -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dependency:
    """A server some work needs, and a cheap way to ask whether it answers."""

    name: str
    check: Callable[[], Awaitable[object]]

    async def answers(self) -> bool:
        try:
            await asyncio.wait_for(self.check(), CHECK_TIMEOUT_S)
        except Exception:
            return False
        return True


def postgres(pool: asyncpg.Pool) -> Dependency:
    async def check() -> None:
        async with pool.acquire(timeout=CHECK_TIMEOUT_S) as conn:
            await conn.fetchval("SELECT 1")

    return Dependency("postgres", check)


def redis(client: Redis) -> Dependency:
    async def check() -> None:
        await client.ping()

    return Dependency("redis", check)


def tcp(name: str, host: str, port: int) -> Dependency:
    """A server that accepts connections on host:port (an SMTP relay)."""

    async def check() -> None:
        _, writer = await asyncio.open_connection(host, port)
        writer.close()
        await writer.wait_closed()

    return Dependency(name, check)


def http(name: str, url: str) -> Dependency:
    """A provider reachable over HTTP: any answer, whatever its status, means it is there."""

    async def check() -> None:
        async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_S) as client:
            await client.head(url)

    return Dependency(name, check)


async def down(dependencies: Sequence[Dependency]) -> list[str]:
    """Names of the dependencies that do not answer now (checked side by side)."""
    answers = await asyncio.gather(*(d.answers() for d in dependencies))
    return [d.name for d, ok in zip(dependencies, answers, strict=True) if not ok]


async def wait_for_dependencies(
    dependencies: Sequence[Dependency],
    *,
    stop: asyncio.Event | None = None,
    on_down: Callable[[str], None] = lambda name: None,
) -> set[str]:
    """Wait until every dependency answers (0.5 s, doubling to 10 s between checks), or
    `stop` is set; the names of those that did not answer at some point (empty: all
    answered at once). `on_down` is called once per dependency found down."""
    waited: set[str] = set()
    delay = FIRST_WAIT_S
    while True:
        missing = await down(dependencies)
        if not missing:
            if waited:
                log.info("dependencies answer again", extra={"dependencies": sorted(waited)})
            return waited
        for name in missing:
            if name not in waited:
                log.warning("dependency down; waiting for it", extra={"dependency": name})
                on_down(name)
        waited.update(missing)
        if await sleep_unless_stopped(delay, stop):
            return waited
        delay = min(delay * 2, LONGEST_WAIT_S)


async def sleep_unless_stopped(seconds: float, stop: asyncio.Event | None) -> bool:
    """Sleep; True if `stop` was set (at once, or during the sleep)."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
