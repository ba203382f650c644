"""What must hold after a fault, read from the servers themselves: PostgreSQL (quiz's
submissions, scoring's results, the outboxes, notify's deliveries), Redis (the boards),
RabbitMQ (queue depths, by passive declare), the gateway (the public board) and the SMTP
server's mailbox. Each check returns figures; the suite decides what is a failure.

The expected ranking is computed here from `scoring.results`, independently of scoring's
board code: each participant's best counting entry (more correct, then shorter, then
earlier), ordered as Redis orders a sorted set read highest first (score, then member,
both descending). The score packing itself is scoring's definition (`domain.live_score`).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from uuid import UUID

import aio_pika
import asyncpg
import httpx
from redis.asyncio import Redis

from services.scoring.domain import decode_live_score, live_score, submitted_offset_s
from tests.chaos.driver import Journey

BoardEntry = tuple[str, int]  # participant id, live score


# --- submissions ------------------------------------------------------------------------

@dataclass
class SubmitCounts:
    acknowledged: int = 0  # 202, or 409 after a retry
    stored: int = 0  # submitted attempts of the round in quiz
    scored: int = 0  # results of the round in scoring
    lost: list[str] = field(default_factory=list)  # acknowledged, not stored
    altered: list[str] = field(default_factory=list)  # stored with other answers than sent
    unscored: list[str] = field(default_factory=list)  # stored, no result
    doubled: list[str] = field(default_factory=list)  # a second result or a second submitted attempt
    phantom: list[str] = field(default_factory=list)  # a result for an attempt quiz has not submitted
    stored_unacknowledged: int = 0  # the server has it though the client gave up (not a fault)

    @property
    def problems(self) -> int:
        return len(self.lost) + len(self.altered) + len(self.unscored) + len(self.doubled) + len(self.phantom)


def _normal_answers(answers: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    return {str(q): sorted(str(o) for o in options) for q, options in answers.items()}


async def submit_counts(conn: asyncpg.Connection, round_id: str, journeys: Sequence[Journey]) -> SubmitCounts:
    rid = UUID(round_id)
    stored = {
        str(r["id"]): r
        for r in await conn.fetch(
            "SELECT id, participant_id, answers, prediction FROM quiz.attempts"
            " WHERE round_id = $1 AND submitted_at IS NOT NULL", rid)
    }
    results = await conn.fetch(
        "SELECT attempt_id::text AS attempt_id, count(*) AS n FROM scoring.results WHERE round_id = $1"
        " GROUP BY attempt_id", rid)
    per_participant = await conn.fetch(
        "SELECT participant_id::text AS participant_id, count(*) AS n FROM quiz.attempts"
        " WHERE round_id = $1 AND submitted_at IS NOT NULL GROUP BY participant_id HAVING count(*) > 1", rid)
    scored = {r["attempt_id"]: r["n"] for r in results}
    counts = SubmitCounts(stored=len(stored), scored=len(scored))
    acked = {j.attempt_id: j for j in journeys if j.acknowledged and j.attempt_id}
    counts.acknowledged = len(acked)
    for attempt_id, journey in acked.items():
        row = stored.get(attempt_id)
        if row is None:
            counts.lost.append(attempt_id)
            continue
        kept = json.loads(row["answers"]) if isinstance(row["answers"], str) else row["answers"]
        if _normal_answers(kept or {}) != _normal_answers(journey.answers) or row["prediction"] != journey.prediction:
            counts.altered.append(attempt_id)
    counts.unscored = sorted(a for a in stored if a not in scored)
    counts.phantom = sorted(a for a in scored if a not in stored)
    counts.doubled = sorted(a for a, n in scored.items() if n > 1) + [
        f"participant {r['participant_id']}: {r['n']} submitted attempts" for r in per_participant
    ]
    counts.stored_unacknowledged = len(set(stored) - set(acked))
    return counts


async def stale_backlog(conn: asyncpg.Connection, round_id: str, older_than_s: float = 2.0) -> int:
    """Submissions stored more than `older_than_s` ago and still without a result."""
    return int(await conn.fetchval(
        "SELECT count(*) FROM quiz.attempts a WHERE a.round_id = $1 AND a.submitted_at IS NOT NULL"
        " AND a.submitted_at < now() - make_interval(secs => $2)"
        " AND NOT EXISTS (SELECT 1 FROM scoring.results r WHERE r.attempt_id = a.id)",
        UUID(round_id), older_than_s))


async def outbox_rows(conn: asyncpg.Connection) -> dict[str, int]:
    services = ("registration", "quiz", "scoring")
    return {s: int(await conn.fetchval(f"SELECT count(*) FROM {s}.outbox")) for s in services}


# --- boards -----------------------------------------------------------------------------

@dataclass
class ExpectedBoards:
    overall: list[BoardEntry]
    by_unit: dict[str, list[BoardEntry]]
    names: dict[str, str]

    def top(self, limit: int) -> list[BoardEntry]:
        return self.overall[:limit]


def ranked(entries: Mapping[str, int]) -> list[BoardEntry]:
    """Highest first, as ZREVRANGE returns a sorted set (equal scores: member descending)."""
    return sorted(entries.items(), key=lambda e: (e[1], e[0]), reverse=True)


def board_differences(expected: Sequence[BoardEntry], served: Sequence[BoardEntry]) -> int:
    """Places whose entry (participant and score) is not the expected one, plus entries
    missing at the end or served beyond it: what a reader of the board would see wrong.
    One entry lost high up moves every entry below it, and each of those counts."""
    return sum(1 for e, s in zip(expected, served, strict=False) if e != s) + abs(len(expected) - len(served))


async def expected_boards(conn: asyncpg.Connection, round_id: str) -> ExpectedBoards:
    rid = UUID(round_id)
    opens_at = await conn.fetchval("SELECT opens_at FROM scoring.rounds WHERE round_id = $1", rid)
    rows = await conn.fetch(
        "SELECT participant_id::text AS participant_id, unit_id::text AS unit_id, correct, duration_ms, submitted_at"
        " FROM scoring.results WHERE round_id = $1 AND counts", rid)
    parent_of = {str(r["id"]): (str(r["parent_id"]) if r["parent_id"] else None)
                 for r in await conn.fetch("SELECT id, parent_id FROM scoring.units")}
    best: dict[str, int] = {}
    unit_of: dict[str, str | None] = {}
    for r in rows:
        score = live_score(r["correct"], r["duration_ms"], submitted_offset_s(opens_at, r["submitted_at"]))
        if score > best.get(r["participant_id"], -1):
            best[r["participant_id"]] = score
            unit_of[r["participant_id"]] = r["unit_id"]
    by_unit: dict[str, dict[str, int]] = defaultdict(dict)
    for participant, score in best.items():
        unit = unit_of[participant]
        seen: set[str] = set()
        while unit is not None and unit not in seen:
            seen.add(unit)
            by_unit[unit][participant] = score
            unit = parent_of.get(unit)
    names = {str(r["id"]): r["full_name"] for r in await conn.fetch(
        "SELECT id, full_name FROM registration.participants WHERE id = ANY($1::uuid[])", list(best))}
    return ExpectedBoards(ranked(best), {u: ranked(e) for u, e in by_unit.items()}, names)


@dataclass
class BoardCheck:
    redis_overall: int = 0  # entries off in scoring:lb:{round}
    redis_units: int = 0  # entries off summed over every unit board
    route: int = 0  # entries off in the public route's top 100 (participant, correct, duration, name)
    route_error: str | None = None

    @property
    def mismatches(self) -> int:
        return self.redis_overall + self.redis_units + self.route + (1 if self.route_error else 0)


async def _served(redis: Redis, key: str) -> list[BoardEntry]:
    rows: list[Any] = await redis.zrevrange(key, 0, -1, withscores=True)
    return [(member.decode(), int(score)) for member, score in rows]


async def check_boards(
    conn: asyncpg.Connection, redis: Redis, client: httpx.AsyncClient, round_id: str, route_limit: int = 100,
) -> BoardCheck:
    expected = await expected_boards(conn, round_id)
    check = BoardCheck()
    check.redis_overall = board_differences(expected.overall, await _served(redis, f"scoring:lb:{round_id}"))
    unit_keys = {k.decode() async for k in redis.scan_iter(match=f"scoring:lb:{round_id}:unit:*")}
    for unit, entries in expected.by_unit.items():
        key = f"scoring:lb:{round_id}:unit:{unit}"
        unit_keys.discard(key)
        check.redis_units += board_differences(entries, await _served(redis, key))
    for extra in unit_keys:  # a board for a unit nobody of this round belongs to
        check.redis_units += len(await _served(redis, extra))
    want = [(p, *decode_live_score(s), expected.names.get(p)) for p, s in expected.top(route_limit)]
    try:
        response = await client.get(f"/api/rounds/{round_id}/leaderboard", params={"limit": route_limit})
    except httpx.HTTPError as exc:
        check.route_error = repr(exc)
        return check
    if response.status_code != 200:
        check.route_error = f"{response.status_code} {response.text[:200]}"
        return check
    got = [(e["participant_id"], e["correct"], e["duration_ms"], e["name"]) for e in response.json()["entries"]]
    check.route = sum(1 for w, g in zip(want, got, strict=False) if w != g) + abs(len(want) - len(got))
    return check


# --- queues -----------------------------------------------------------------------------

def queue_names(
    prefix: str, retry_delays_s: Iterable[int], services: Iterable[str] = ("scoring", "notify")
) -> list[str]:
    delays = list(retry_delays_s)
    return [f"{prefix}{s}{suffix}" for s in services for suffix in ("", *(f".retry.{d}s" for d in delays), ".dead")]


async def queue_depths(connection: aio_pika.abc.AbstractConnection, names: Iterable[str]) -> dict[str, int]:
    """Messages ready in each queue (a queue that does not exist counts as empty: its
    passive declare closes the channel, so the next queue gets a new one)."""
    depths: dict[str, int] = {}
    channel = await connection.channel()
    try:
        for name in names:
            if channel.is_closed:
                channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
                depths[name] = int(queue.declaration_result.message_count or 0)
            except aio_pika.exceptions.ChannelClosed:
                depths[name] = 0
    finally:
        if not channel.is_closed:
            await channel.close()
    return depths


async def purge(amqp_url: str, names: Iterable[str]) -> None:
    connection = await aio_pika.connect(amqp_url, timeout=5)
    try:
        channel = await connection.channel()
        for name in names:
            queue = await channel.declare_queue(name, passive=True)
            await queue.purge()
    finally:
        await connection.close()


# --- notifications ----------------------------------------------------------------------

@dataclass
class MailCheck:
    expected: int = 0  # (recipient, template) pairs that must arrive: sign-ups and winners
    delivered: int = 0  # of those, arrived at least once
    missing: list[str] = field(default_factory=list)
    # The same message (same Message-ID) received again: the crash window docs/notify.md
    # accepts (relays drop it). Another Message-ID for the same person and template is a
    # second, distinct message: never acceptable.
    resent_same_id: int = 0
    doubled: list[str] = field(default_factory=list)
    not_sent: dict[str, int] = field(default_factory=dict)  # notify's log: status → rows other than sent

    @property
    def problems(self) -> int:
        return len(self.missing) + len(self.doubled)


async def expected_mail(conn: asyncpg.Connection, round_id: str, emails: Iterable[str]) -> set[tuple[str, str]]:
    """A sign-up letter to everyone of this load who exists in registration, a winner
    letter to each winner of the round."""
    emails = list(emails)
    signed_up = await conn.fetch("SELECT email FROM registration.participants WHERE email = ANY($1::text[])", emails)
    winners = await conn.fetch(
        "SELECT p.email FROM scoring.winners w JOIN registration.participants p ON p.id = w.participant_id"
        " WHERE w.round_id = $1 AND p.email IS NOT NULL", UUID(round_id))
    return {(r["email"], "signup") for r in signed_up} | {(r["email"], "winner") for r in winners}


async def check_mail(
    conn: asyncpg.Connection, messages: Sequence[EmailMessage], expected: set[tuple[str, str]],
) -> MailCheck:
    recipients = {e for e, _ in expected}
    by_id: Counter[str] = Counter()
    for m in messages:
        if str(m["To"]) in recipients:
            by_id[str(m["Message-ID"]).strip("<>").split("@")[0]] += 1
    rows = await conn.fetch(
        "SELECT id::text AS id, recipient, template, status FROM notify.deliveries WHERE recipient = ANY($1::text[])",
        list(recipients))
    template_of = {r["id"]: (r["recipient"], r["template"]) for r in rows}
    check = MailCheck(expected=len(expected))
    check.not_sent = dict(Counter(r["status"] for r in rows if r["status"] != "sent"))
    ids_per_pair: dict[tuple[str, str], set[str]] = defaultdict(set)
    for delivery_id, n in by_id.items():
        pair = template_of.get(delivery_id, ("?", f"unknown delivery {delivery_id}"))
        ids_per_pair[pair].add(delivery_id)
        check.resent_same_id += n - 1
    check.delivered = sum(1 for pair in expected if ids_per_pair.get(pair))
    check.missing = sorted(f"{t} → {e}" for e, t in expected if not ids_per_pair.get((e, t)))
    check.doubled = sorted(f"{t} → {e}: {len(ids)} messages" for (e, t), ids in ids_per_pair.items() if len(ids) > 1)
    return check


def as_dict(value: Any) -> Any:
    """Figures for the report: dataclasses to dicts, each list with its length beside it
    (`n_<name>`) and cut to 20 items."""
    if hasattr(value, "__dataclass_fields__"):
        out: dict[str, Any] = {}
        for name in value.__dataclass_fields__:
            item = getattr(value, name)
            out[name] = as_dict(item)
            if isinstance(item, list):
                out[f"n_{name}"] = len(item)
        for name in ("problems", "mismatches"):
            if hasattr(type(value), name):
                out[name] = getattr(value, name)
        return out
    if isinstance(value, list):
        return [as_dict(v) for v in value[:20]] + ([f"… {len(value) - 20} more"] if len(value) > 20 else [])
    if isinstance(value, dict):
        return {k: as_dict(v) for k, v in value.items()}
    return value
