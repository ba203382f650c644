"""The fault suite: the whole Hoithi stack on private servers, a participant load through
the gateway, and one fault at a time (`kill -9` of a server or a process, then bringing
it back), each checked against what the servers hold.

    env = Environment.start(workdir)         # private PostgreSQL, Redis, RabbitMQ; SMTP; the stack
    report = await run_fault(env, number, fault, plan)
    env.stop()

For each fault a round of its own: `plan.participants` people arrive over
`plan.arrival_s` seconds and take it (tests/chaos/driver.py); a third of the way into the
arrivals the fault strikes. A server is killed (SIGKILL to its process group), left down
`plan.server_down_s`, and started again on the same data folder and port; a process of the
stack likewise (`plan.process_down_s`, the time a supervisor takes to restart it); one
gunicorn worker is killed and its master replaces it. A monitor samples the stack twice a
second meanwhile. When the load has ended: the drain (every stored submission scored, the
outboxes and queues empty), the boards, then the organiser closes the round, waits for
`final` and announces the winners, and the mailbox is read. Every wait has a deadline.

What a fault must leave intact (each a failure when it does not):
- every acknowledged submit (202, or 409 after a retry) is stored with the answers sent
  and scored exactly once; nothing scored that was not stored;
- the Redis boards (overall and every unit's) and the public leaderboard route equal the
  ranking computed from PostgreSQL, scores and order;
- no event left in a retry or dead-letter queue, no outbox row left;
- every sign-up and winner letter delivered, none twice;
- every process and server alive at the end (the killed one replaced);
- no participant gave up (a step retried past `plan.give_up_s`) or was refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import signal
import statistics
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal

import aio_pika
import asyncpg
import httpx
from aiosmtpd.controller import Controller
from redis.asyncio import Redis

from loadtests.bench_stack import (
    ADMIN,
    RETRY_DELAYS_S,
    SERVICES,
    Stack,
    create_contest,
    create_round,
    delete_bus,
    gunicorn_workers,
    login_token,
    prepare_stack,
    procfile,
)
from services.core.private_servers import PostgresServer, PrivateServer, RabbitMQServer, RedisServer
from services.core.testing import free_port
from tests.chaos import checks
from tests.chaos.driver import STEPS, Load, status_counts
from tests.e2e.stack import MailBox

ROOT = Path(__file__).resolve().parents[2]
WORKERS = {"registration": 1, "quiz": 2, "scoring": 2, "notify": 1}
DATABASE = "hoithi_chaos"


@dataclass(frozen=True)
class Fault:
    name: str
    kind: Literal["server", "process", "worker"]
    target: str  # server name (postgres, redis, rabbitmq), Procfile entry, or API of the gunicorn worker
    what: str  # what it exercises, for the report
    at: float | None = None  # share of the arrival window when it strikes (else the plan's)


FAULTS = {
    f.name: f
    for f in (
        Fault("quiz API worker", "worker", "quiz", "one of the two quiz API workers dies; gunicorn starts another"),
        Fault("scoring-worker", "process", "scoring-worker", "the consumer dies holding an unacked batch"),
        Fault("relay-quiz", "process", "relay-quiz", "quiz's relay dies between publish and delete"),
        Fault("redis", "server", "redis", "Redis dies without persistence: boards, autosaves, throttles lost"),
        Fault("postgres", "server", "postgres", "PostgreSQL crashes (all backends) and recovers from its WAL"),
        Fault("rabbitmq", "server", "rabbitmq", "the broker dies; quorum queues recover from disk"),
        # Whether a consumer is caught in the middle of a batch depends on the instant: a
        # second kill, later, when the most participants are in the middle of the round.
        Fault("rabbitmq, later", "server", "rabbitmq", "the broker dies again, with the most people mid-round",
              at=0.7),
        Fault("gateway", "process", "gateway", "nginx, master and workers, dies: nothing answers"),
        Fault("registration API worker", "worker", "registration",
              "the one registration API worker dies; gunicorn starts another"),
        Fault("scoring API worker", "worker", "scoring", "one of the two scoring API workers dies (results, boards)"),
        Fault("notify API worker", "worker", "notify", "the one notify API worker dies; gunicorn starts another"),
        Fault("quiz-clock", "process", "quiz-clock", "the round clock dies; the close must still turn final"),
        Fault("notify-worker", "process", "notify-worker", "the mail sender dies mid-batch"),
        Fault("relay-registration", "process", "relay-registration", "registration's relay dies"),
        Fault("relay-scoring", "process", "relay-scoring", "scoring's relay dies (winner announcements)"),
    )
}
FULL = list(FAULTS)
# In `make test`: the two faults that matter most and cost least. Redis without its data
# is the one that bends a ranking (lost boards); the scoring worker dying with a batch in
# hand is the one that could double or lose a score. Both restart in about a second.
SHORT = ["redis", "scoring-worker"]


@dataclass(frozen=True)
class Plan:
    participants: int
    arrival_s: float
    fault_at: float = 0.35  # share of the arrival window
    server_down_s: float = 2.0
    process_down_s: float = 1.0
    give_up_s: float = 120.0
    drain_s: float = 90.0
    boards_s: float = 20.0
    final_s: float = 180.0  # an abandoned attempt holds `final` until its time limit
    mail_s: float = 60.0
    time_limit_s: int = 120
    grace_s: int = 10


SHORT_PLAN = Plan(participants=40, arrival_s=10.0)
FULL_PLAN = Plan(participants=150, arrival_s=35.0)


class Environment:
    """The private servers, the SMTP server and the stack, started in that order; `stop()`
    takes down whatever of it was started, each part whatever happened to the others."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers: dict[str, PrivateServer] = {
            "postgres": PostgresServer(), "redis": RedisServer(), "rabbitmq": RabbitMQServer(),
        }
        self.mailbox = MailBox()
        self.smtp = Controller(self.mailbox, hostname="127.0.0.1", port=free_port())
        self._smtp_started = False
        self._stack: Stack | None = None
        self.contest_slug = self.contest_id = self.admin_token = ""
        self.unit_ids: list[str] = []

    @property
    def stack(self) -> Stack:
        if self._stack is None:
            raise RuntimeError("the stack is not prepared")
        return self._stack

    @classmethod
    def start(cls, workdir: Path) -> Environment:
        env = cls(workdir)
        try:
            env._start()
        except BaseException:
            env.stop()
            raise
        return env

    def _start(self) -> None:
        for server in self.servers.values():
            server.start()
        for server in self.servers.values():
            server.wait_ready(timeout_s=90)
        self.smtp.start()
        self._smtp_started = True
        self._stack = prepare_stack(
            self.workdir / "stack",
            database_url=self.database_url,
            redis_url=self.servers["redis"].url,
            amqp_url=self.servers["rabbitmq"].url,
            workers=WORKERS,
            # Its own SMTP server (counting deliveries) instead of the development one.
            processes=[name for name in procfile() if name != "mail"],
            extra_env={
                "SMTP_PORT": str(self.smtp.port),
                "SMTP_RATE_PER_S": "200",
                # Cheap hashing: the load is about faults, not Argon2 (as in make bench).
                "ARGON2_TIME_COST": "1",
                "ARGON2_MEMORY_COST_KIB": "8192",
                # Every participant of the load comes from 127.0.0.1; in a contest they come
                # from thousands of addresses. The per-address limit is not under test here.
                "SIGNUP_PER_SOURCE": "1000000",
            },
        )
        self.stack.start()
        self.stack.wait_ready(timeout_s=120)
        asyncio.run(self._scene())

    async def _scene(self) -> None:
        async with httpx.AsyncClient(base_url=self.stack.base_url, timeout=30) as client:
            self.admin_token = await login_token(client, *ADMIN)
            self.contest_slug = f"chaos-{uuid.uuid4().hex[:6]}"
            self.contest_id = await create_contest(client, self.admin_token, self.contest_slug, "Thử lỗi: hội thi")
            units = (await client.get("/api/units", params={"limit": 500})).json()
            self.unit_ids = [u["id"] for u in units if u["headcount"] > 0]

    def stop(self) -> None:
        def attempt(what: str, step: Callable[[], object]) -> None:
            try:
                step()
            except Exception as exc:  # the next part must still be stopped
                print(f"chaos: stopping {what} failed: {exc!r}", flush=True)

        if self._stack is not None:
            stack = self._stack
            attempt("the stack", stack.stop)
            # The broker goes away with its folder anyway; this is for a broker kept running.
            attempt("the queues", lambda: asyncio.run(
                delete_bus(stack.amqp_url, stack.bus_prefix, RETRY_DELAYS_S)))
            attempt("nginx's prefix", lambda: shutil.rmtree(stack.env["NGINX_PREFIX"], ignore_errors=True))
        if self._smtp_started:
            attempt("the SMTP server", self.smtp.stop)
        logs = self.workdir / "servers"
        logs.mkdir(parents=True, exist_ok=True)
        for name, server in self.servers.items():
            attempt(name, server.stop)
            for path in server.log_files():
                attempt(f"{name}'s log", partial(shutil.copy, path, logs / f"{name}-{path.name}"))
            attempt(name, server.remove)

    @property
    def database_url(self) -> str:
        postgres = self.servers["postgres"]
        assert isinstance(postgres, PostgresServer)
        return postgres.database_url(DATABASE)

    def queue_names(self) -> list[str]:
        return checks.queue_names(self.stack.bus_prefix, RETRY_DELAYS_S)

    def revive(self, timeout_s: float = 120) -> list[str]:
        """Start again whatever is down (a fault before may have left it so): what was."""
        revived = [n for n, s in self.servers.items() if not s.alive()]
        for name in revived:
            self.servers[name].start()
            self.servers[name].wait_ready(timeout_s=90)
        dead = self.stack.dead()
        for name in dead:
            self.stack.processes[name].start()
        if revived or dead:
            self.stack.wait_ready(timeout_s=timeout_s)
        return revived + dead

    def not_running(self) -> list[str]:
        """Processes and servers that are not up, and APIs short of gunicorn workers."""
        down = [n for n in self.stack.dead()] + [n for n, s in self.servers.items() if not s.alive()]
        for api, wanted in WORKERS.items():
            if api in self.stack.processes and self.stack.processes[api].alive():
                have = len(gunicorn_workers(self.stack.pid_of(api)))
                if have != wanted:
                    down.append(f"{api} ({have}/{wanted} workers)")
        return down


# --- the monitor ----------------------------------------------------------------------

@dataclass
class Sample:
    t: float
    took_s: float  # how long the sample itself took (a slow one means a starved machine)
    load_1m: float  # the machine's load average: other work slows everything measured here
    unhealthy: list[str]  # services whose /_health (through the gateway) is not 200, processes down
    stale: int | None  # stored submissions older than 2 s without a result (None: database unreachable)
    parked: int | None  # events in retry and dead-letter queues (None: broker unreachable)

    @property
    def recovered(self) -> bool:
        return not self.unhealthy and self.stale == 0 and self.parked == 0


class Monitor:
    """Samples the stack twice a second on connections of its own, made again after a fault."""

    def __init__(self, env: Environment, round_id: str) -> None:
        self.env, self.round_id = env, round_id
        self.samples: list[Sample] = []
        self._stop = asyncio.Event()
        self._parked_queues = [q for q in env.queue_names() if ".retry." in q or q.endswith(".dead")]
        self._db: asyncpg.Connection | None = None
        self._broker: aio_pika.abc.AbstractConnection | None = None
        self._probes: dict[str, asyncio.Task[int]] = {}

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.env.stack.base_url, timeout=1.5) as client:
            try:
                while not self._stop.is_set():
                    started = time.monotonic()
                    unhealthy = list(self.env.not_running())
                    answers = await asyncio.gather(
                        *(client.get(f"/_health/{service}") for service in SERVICES), return_exceptions=True)
                    for service, answer in zip(SERVICES, answers, strict=True):
                        if isinstance(answer, BaseException) or answer.status_code != 200:
                            unhealthy.append(service)
                    stale, parked = await asyncio.gather(self._probe("stale", self._stale),
                                                         self._probe("parked", self._parked))
                    self.samples.append(Sample(started, time.monotonic() - started, os.getloadavg()[0],
                                               unhealthy, stale, parked))
                    await asyncio.sleep(max(0.0, 0.5 - (time.monotonic() - started)))
            finally:
                for task in self._probes.values():
                    task.cancel()
                await self._drop()

    async def _probe(self, name: str, probe: Callable[[], Awaitable[int]], timeout_s: float = 2.0) -> int | None:
        """The probe's answer, or None when it failed or is still waiting: then it is left
        to finish on its own (never awaited past the timeout: a connection that ignores its
        cancellation for seconds must not stall the samples) and not started again meanwhile."""
        task = self._probes.get(name)
        if task is None or task.done():
            task = self._probes[name] = asyncio.ensure_future(probe())
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if task in done and not task.cancelled() and task.exception() is None:
            return task.result()
        return None

    async def _stale(self) -> int:
        try:
            if self._db is None or self._db.is_closed():
                self._db = await asyncpg.connect(self.env.database_url, timeout=2)
            return await checks.stale_backlog(self._db, self.round_id)
        except BaseException:
            await self._drop(broker=False)
            raise

    async def _parked(self) -> int:
        try:
            if self._broker is None or self._broker.is_closed:
                self._broker = await aio_pika.connect(self.env.stack.amqp_url, timeout=2)
            return sum((await checks.queue_depths(self._broker, self._parked_queues)).values())
        except BaseException:
            await self._drop(db=False)
            raise

    async def _drop(self, db: bool = True, broker: bool = True) -> None:
        if db and self._db is not None:
            self._db.terminate()
            self._db = None
        if broker and self._broker is not None:
            try:
                await asyncio.wait_for(self._broker.close(), timeout=1)
            except Exception:
                pass
            self._broker = None

    def stop(self) -> None:
        self._stop.set()

    def first(self, after: float, condition: Callable[[Sample], bool]) -> float | None:
        for sample in self.samples:
            if sample.t >= after and condition(sample):
                return sample.t
        return None

    def trace(self, since: float) -> list[dict[str, Any]]:
        """The samples, relative to `since`, for results.json."""
        return [{"t": round(s.t - since, 2), "took_s": round(s.took_s, 2), "load_1m": s.load_1m,
                 "unhealthy": s.unhealthy, "stale": s.stale, "parked": s.parked} for s in self.samples]


async def _depths(env: Environment) -> dict[str, int]:
    connection = await aio_pika.connect(env.stack.amqp_url, timeout=5)
    try:
        return await checks.queue_depths(connection, env.queue_names())
    finally:
        await connection.close()


async def eventually(probe: Callable[[], Awaitable[Any]], timeout_s: float, every_s: float = 0.5) -> tuple[Any, float]:
    """Poll until `probe` returns something truthy (or time runs out): (last value, seconds).
    One probe may take at most 30 s (a server that holds a connection open forever)."""
    started = time.monotonic()
    last: Any = None
    while True:
        error: BaseException | None = None
        task = asyncio.ensure_future(probe())
        done, _ = await asyncio.wait({task}, timeout=30)
        if not done:
            task.cancel()
            last, error = None, TimeoutError("the probe took over 30 s")
        elif task.cancelled() or task.exception() is not None:
            last, error = None, task.exception() if not task.cancelled() else TimeoutError("cancelled")
        else:
            last = task.result()
        if last or time.monotonic() - started > timeout_s:
            if not last and error is not None:
                last = {"error": repr(error)}
            return last, time.monotonic() - started
        await asyncio.sleep(every_s)


# --- one fault ------------------------------------------------------------------------

def inject(env: Environment, fault: Fault, plan: Plan) -> dict[str, Any]:
    """Kill, wait, bring back. Blocking (run in a thread while the load goes on)."""
    killed_at = time.monotonic()
    detail = ""
    if fault.kind == "server":
        server = env.servers[fault.target]
        detail = f"SIGKILL to process group {server.pid}"
        server.kill()
        time.sleep(plan.server_down_s)
        server.start()
        server.wait_ready(timeout_s=90)
    elif fault.kind == "process":
        process = env.stack.processes[fault.target]
        detail = f"SIGKILL to process group {process.pid}"
        process.kill()
        time.sleep(plan.process_down_s)
        process.start()
    else:
        master = env.stack.pid_of(fault.target)
        killed = env.stack.kill_gunicorn_worker(fault.target)
        detail = f"SIGKILL to worker {killed} of master {master}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            workers = gunicorn_workers(master)
            if len(workers) == WORKERS[fault.target] and killed not in workers:
                break
            time.sleep(0.1)
    return {"killed_at": killed_at, "back_at": time.monotonic(), "detail": detail}


async def new_round(env: Environment, number: int, plan: Plan) -> str:
    async with httpx.AsyncClient(base_url=env.stack.base_url, timeout=30) as client:
        now = datetime.now(UTC).replace(microsecond=0)
        round_id = await create_round(
            client, env.admin_token, env.contest_id, number, opens_at=now - timedelta(minutes=1),
            closes_at=now + timedelta(hours=2), time_limit_s=plan.time_limit_s, grace_s=plan.grace_s)

    async def known() -> bool:  # the clock opened it and scoring has its answer key
        conn = await asyncpg.connect(env.database_url)
        try:
            return bool(await conn.fetchval("SELECT count(*) FROM scoring.rounds WHERE round_id = $1",
                                            uuid.UUID(round_id)))
        finally:
            await conn.close()

    opened, _ = await eventually(known, 30)
    if not opened:
        raise RuntimeError(f"round {round_id} not opened in scoring after 30 s")
    return round_id


async def _admin(client: httpx.AsyncClient, env: Environment, path: str, timeout_s: float = 60) -> httpx.Response:
    """An organiser's POST, sent again (like a person would) while the answer is a 5xx or none."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            response = await client.post(path, headers={"Authorization": f"Bearer {env.admin_token}"})
            if response.status_code < 500 or time.monotonic() > deadline:
                return response
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(1)


async def close_and_announce(env: Environment, round_id: str, plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=env.stack.base_url, timeout=10) as client:
        closed = await _admin(client, env, f"/api/admin/rounds/{round_id}/close")
        out["close"] = closed.status_code
        started = time.monotonic()

        async def final() -> bool:
            rounds = (await client.get(f"/api/contests/{env.contest_slug}")).json()["rounds"]
            return next(r for r in rounds if r["id"] == round_id)["status"] == "final"

        async def winners() -> list[Any]:
            response = await client.get(f"/api/rounds/{round_id}/winners")
            return list(response.json().get("winners") or []) if response.status_code == 200 else []

        is_final, _ = await eventually(final, plan.final_s)
        out["final"] = bool(is_final)
        found, _ = await eventually(winners, 60) if is_final else ([], 0.0)
        out["final_after_s"] = round(time.monotonic() - started, 1)
        out["winners"] = len(found or [])
        if found:
            announced = await _admin(client, env, f"/api/admin/rounds/{round_id}/announce")
            out["announce"] = announced.status_code
    return out


def client_view(load: Load, killed_at: float) -> dict[str, Any]:
    journeys = load.journeys
    waits = [(w, step, j.number) for j in journeys for step, w in j.waited_s.items()]
    longest = max(waits, default=(0.0, "", -1))
    outcomes: dict[str, int] = {}
    for j in journeys:
        outcomes[j.outcome] = outcomes.get(j.outcome, 0) + 1
    after_fault = [e for e in load.exchanges if e.sent_at + e.took_s >= killed_at]
    submit_waits = [j.waited_s["submit"] for j in journeys if "submit" in j.waited_s]
    result_lags = [j.result_seen_after_s for j in journeys if j.result_seen_after_s is not None]
    return {
        "participants": len(journeys),
        "outcomes": outcomes,
        "statuses": status_counts(load.exchanges),
        "statuses_after_fault": status_counts(after_fault),
        "retries": {s: n for s in STEPS if (n := sum(j.retries[s] for j in journeys))},
        "longest_wait_s": round(longest[0], 2),
        "longest_wait_step": longest[1],
        "longest_submit_wait_s": round(max(submit_waits, default=0.0), 2),
        "median_submit_wait_s": round(statistics.median(submit_waits), 3) if submit_waits else None,
        "results_seen": len(result_lags),
        "longest_result_lag_s": round(max(result_lags, default=0.0), 2),
    }


async def run_fault(env: Environment, number: int, fault: Fault, plan: Plan) -> dict[str, Any]:
    print(f"chaos: fault {number} {fault.name}: {plan.participants} participants over {plan.arrival_s} s", flush=True)
    round_id = await new_round(env, number, plan)
    load = Load(env.stack.base_url, round_id, env.unit_ids, plan.participants, plan.arrival_s, series=number,
                give_up_s=plan.give_up_s)
    monitor = Monitor(env, round_id)
    watching = asyncio.create_task(monitor.run())
    began = time.monotonic()
    loading = asyncio.create_task(load.run())
    await asyncio.sleep(plan.arrival_s * (plan.fault_at if fault.at is None else fault.at))
    try:
        injected = await asyncio.to_thread(inject, env, fault, plan)
    except Exception as exc:  # the fault could not be undone: report, and let the checks say what it cost
        injected = {"killed_at": time.monotonic(), "back_at": None, "detail": f"restore failed: {exc!r}"}
    await asyncio.wait_for(loading, timeout=plan.arrival_s + plan.give_up_s * 6 + 120)
    load_ended = time.monotonic()
    killed_at = injected["killed_at"]

    async def drained() -> dict[str, Any] | None:
        conn = await asyncpg.connect(env.database_url, timeout=5)
        try:
            backlog = await checks.stale_backlog(conn, round_id, older_than_s=0)
            outbox = await checks.outbox_rows(conn)
        finally:
            await conn.close()
        depths = await _depths(env)
        state = {"unscored": backlog, "outbox": sum(outbox.values()), "queued": sum(depths.values())}
        return state if not any(state.values()) else None

    drain_state, drain_s = await eventually(drained, plan.drain_s)
    drained_ok = bool(drain_state) and "error" not in drain_state

    redis = Redis.from_url(env.servers["redis"].url)
    seen: list[checks.BoardCheck] = []
    async with httpx.AsyncClient(base_url=env.stack.base_url, timeout=10) as client:

        async def boards() -> checks.BoardCheck | None:
            conn = await asyncpg.connect(env.database_url, timeout=5)
            try:
                seen.append(await checks.check_boards(conn, redis, client, round_id))
            finally:
                await conn.close()
            return seen[-1] if seen[-1].mismatches == 0 else None

        board_ok, board_wait_s = await eventually(boards, plan.boards_s, every_s=1.0)
        board = seen[-1] if seen else None
    await redis.aclose()

    final = await close_and_announce(env, round_id, plan)

    journeys = load.journeys
    conn = await asyncpg.connect(env.database_url)
    try:
        expected_mail = await checks.expected_mail(conn, round_id, [j.email for j in journeys])

        async def mailed() -> bool:
            check = await checks.check_mail(conn, env.mailbox.messages, expected_mail)
            queued = await conn.fetchval(
                "SELECT count(*) FROM notify.deliveries WHERE status = 'queued' AND recipient = ANY($1::text[])",
                [e for e, _ in expected_mail])
            depths = await _depths(env)
            return check.delivered == check.expected and queued == 0 and not any(depths.values())

        await eventually(mailed, plan.mail_s)
        mail = await checks.check_mail(conn, env.mailbox.messages, expected_mail)
        submits = await checks.submit_counts(conn, round_id, journeys)
        outbox = await checks.outbox_rows(conn)
    finally:
        await conn.close()
    depths = await _depths(env)
    monitor.stop()
    await watching
    not_running = env.not_running()
    left = {q: n for q, n in depths.items() if n}
    parked = [q for q in left if ".retry." in q or q.endswith(".dead")]
    if parked:  # reported here; the next fault starts with none (a main queue's events are
        # left to its consumer, revived before the next fault if this one killed it)
        await checks.purge(env.stack.amqp_url, parked)

    back_at = injected["back_at"]
    recovered_at = monitor.first(killed_at, lambda s: s.recovered) if back_at else None
    healthy_at = monitor.first(killed_at, lambda s: not s.unhealthy)
    unhealthy = [s for s in monitor.samples if s.t >= killed_at and s.unhealthy]
    report: dict[str, Any] = {
        "number": number,
        "fault": fault.name,
        "kind": fault.kind,
        "what": fault.what,
        "detail": injected["detail"],
        "round_id": round_id,
        "client": client_view(load, killed_at),
        "timeline_s": {
            "fault_at": round(killed_at - began, 1),
            "back_after": round(back_at - killed_at, 1) if back_at else None,
            "healthy_after": round(healthy_at - killed_at, 1) if healthy_at else None,
            "recovered_after": round(recovered_at - killed_at, 1) if recovered_at else None,
            "load_ended_at": round(load_ended - began, 1),
            "drained_after_load_s": round(drain_s, 1) if drained_ok else None,
            "boards_exact_after_drain_s": round(board_wait_s, 1) if board_ok else None,
        },
        "unhealthy_seen": sorted({u for s in unhealthy for u in s.unhealthy}),
        "load_1m": {"max": max((s.load_1m for s in monitor.samples), default=None),
                    "median": statistics.median([s.load_1m for s in monitor.samples]) if monitor.samples else None},
        "slowest_sample_s": round(max((s.took_s for s in monitor.samples), default=0.0), 2),
        "submits": checks.as_dict(submits),
        "boards": checks.as_dict(board) if board else {"error": "not checked"},
        "queues_left": left,
        "outbox_left": {k: v for k, v in outbox.items() if v},
        "drain": drain_state if not drained_ok else "ok",
        "final": final,
        "mail": checks.as_dict(mail),
        "not_running": not_running,
    }
    report["failures"] = failures(report, submits, board, mail)
    report["samples"] = monitor.trace(killed_at)
    verdict = "PASS" if not report["failures"] else "FAIL: " + "; ".join(report["failures"])
    print(f"chaos: fault {number} {fault.name}: {verdict}", flush=True)
    return report


def failures(report: dict[str, Any], submits: checks.SubmitCounts, board: checks.BoardCheck | None,
             mail: checks.MailCheck) -> list[str]:
    out = []
    if submits.lost:
        out.append(f"{len(submits.lost)} acknowledged submits lost")
    if submits.altered:
        out.append(f"{len(submits.altered)} submits stored with other answers")
    if submits.unscored:
        out.append(f"{len(submits.unscored)} stored submits not scored")
    if submits.doubled or submits.phantom:
        out.append(f"{len(submits.doubled) + len(submits.phantom)} doubled or phantom results")
    if board is None or board.mismatches:
        out.append(f"boards differ from PostgreSQL ({checks.as_dict(board) if board else 'not checked'})")
    if report["queues_left"]:
        out.append(f"events left in queues {report['queues_left']}")
    if report["outbox_left"]:
        out.append(f"outbox rows left {report['outbox_left']}")
    if not report["final"].get("final"):
        out.append("round not final")
    elif report["final"].get("announce") != 202:
        out.append(f"announce answered {report['final'].get('announce')}")
    if mail.missing:
        out.append(f"{len(mail.missing)} letters missing")
    if mail.doubled:
        out.append(f"{len(mail.doubled)} letters doubled")
    if report["not_running"]:
        out.append(f"not running at the end: {report['not_running']}")
    if report["timeline_s"]["back_after"] is None:
        out.append(f"not brought back: {report['detail']}")
    gave_up = {k: v for k, v in report["client"]["outcomes"].items() if k not in ("202", "409")}
    if gave_up:
        out.append(f"participants without an acknowledged submit: {gave_up}")
    return out


# --- the whole run --------------------------------------------------------------------

def run_suite(names: list[str], plan: Plan, run_dir: Path) -> dict[str, Any]:
    """Start everything, run the faults one after the other, stop everything. A fault that
    leaves something dead is reported with it; the next fault starts from a revived stack.
    results.json in `run_dir` is rewritten after each fault."""
    run_dir.mkdir(parents=True, exist_ok=True)
    # The monitor's broker probes fail while the broker is down, by design: not news.
    for name in ("aiormq", "aio_pika"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # Stopped by SIGTERM (a timeout, CI), the servers and the stack are still taken down.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupted)
    began = time.monotonic()
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "plan": plan.__dict__,
        "workers": WORKERS,
        "retry_delays_s": list(RETRY_DELAYS_S),
        "cores": os.cpu_count(),
        "faults": [],
    }
    env = Environment.start(run_dir)
    try:
        results["setup_s"] = round(time.monotonic() - began, 1)
        for number, name in enumerate(names, start=1):
            revived = env.revive()
            try:
                report = asyncio.run(run_fault(env, number, FAULTS[name], plan))
            except Exception as exc:
                print(f"chaos: fault {number} {name}: could not run: {exc!r}", flush=True)
                report = {"number": number, "fault": name, "error": repr(exc)[:500],
                          "failures": [f"the suite could not run it: {exc!r}"[:500]]}
            report["revived_before"] = revived
            results["faults"].append(report)
            (run_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
        results["not_running_at_end"] = env.not_running()
    finally:
        env.stop()
        results["total_s"] = round(time.monotonic() - began, 1)
        (run_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return results


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def new_run_dir(kind: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + f"-{kind}-{secrets.token_hex(2)}"
    folder = ROOT / "var" / "chaos" / stamp
    folder.mkdir(parents=True, exist_ok=True)
    # nginx started as root runs its workers as `nobody`, who must reach its cache there.
    for path in (folder, folder.parent, folder.parent.parent):
        path.chmod(path.stat().st_mode | 0o055)
    return folder

