"""The live leaderboards: Redis projections of `results`, never the system of record.

Keys:
- `scoring:lb:{round_id}`                    sorted set, participant id → live score of their best attempt
- `scoring:lb:{round_id}:unit:{unit_id}`     the same, for a unit and (through lineage) every unit above it
- `scoring:lb:{round_id}:group:{group}`      the same, for a group of entrants
- `scoring:names`       hash participant id → display name
- `scoring:units_of`    hash participant id → unit id
- `scoring:unit_names`  hash unit id → unit name

Scores only ever rise (ZADD GT), so writing the same result twice, or an older result
after a newer one, changes nothing: that makes every write idempotent and order-free.
`rebuild_leaderboards` recomputes everything from PostgreSQL.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
from redis.asyncio import Redis

from services.scoring import domain, store

log = logging.getLogger(__name__)

NAMES = "scoring:names"
UNITS_OF = "scoring:units_of"
UNIT_NAMES = "scoring:unit_names"
_CHUNK = 5000

# One round trip for a page of the board: the ranks, then the names and unit names of
# exactly those participants (a pipeline cannot do this: the second step needs the
# first's answer).
_TOP = """
local rows = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
if #rows == 0 then return {{}, {}, {}} end
local ids = {}
for i = 1, #rows, 2 do ids[#ids + 1] = rows[i] end
local names = redis.call('HMGET', KEYS[2], unpack(ids))
local units = redis.call('HMGET', KEYS[3], unpack(ids))
local unit_ids = {}
for i = 1, #units do unit_ids[i] = units[i] or '-' end
local unit_names = redis.call('HMGET', KEYS[4], unpack(unit_ids))
return {rows, names, unit_names}
"""


def board_key(round_id: UUID, *, unit_id: UUID | None = None, group: str | None = None) -> str:
    if unit_id is not None:
        return f"scoring:lb:{round_id}:unit:{unit_id}"
    if group is not None:
        return f"scoring:lb:{round_id}:group:{group}"
    return f"scoring:lb:{round_id}"


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one result goes: the boards it counts on, with its live score."""

    round_id: UUID
    participant_id: UUID
    score: int
    units: tuple[UUID, ...]
    group: str | None

    def keys(self) -> list[str]:
        keys = [board_key(self.round_id)]
        keys += [board_key(self.round_id, unit_id=u) for u in self.units]
        if self.group:
            keys.append(board_key(self.round_id, group=self.group))
        return keys


def placement(
    round_id: UUID, opens_at: datetime, result: domain.Result, parent_of: Mapping[UUID, UUID | None]
) -> Placement:
    score = domain.live_score(
        result.correct, result.duration_ms, domain.submitted_offset_s(opens_at, result.submitted_at)
    )
    units = domain.lineage(result.unit_id, parent_of) if result.unit_id is not None else ()
    return Placement(round_id, result.participant_id, score, units, result.group)


@dataclass(frozen=True, slots=True)
class BoardRow:
    rank: int
    participant_id: str
    name: str | None
    unit_name: str | None
    correct: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Standing:
    rank: int
    correct: int
    duration_ms: int


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class Leaderboards:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._top = redis.register_script(_TOP)

    async def record(
        self,
        placements: Iterable[Placement],
        names: Mapping[UUID, str] | None = None,
        units_of: Mapping[UUID, UUID] | None = None,
        *,
        overwrite: bool = True,
    ) -> None:
        """Every placement and name in one pipeline. Without `overwrite` names and units
        are only filled in where missing: registration's own data wins over what an
        attempt carried."""
        pipe = self.redis.pipeline(transaction=False)
        for p in placements:
            for key in p.keys():
                pipe.zadd(key, {str(p.participant_id): p.score}, gt=True)
        for hash_key, values in ((NAMES, names or {}), (UNITS_OF, units_of or {})):
            if overwrite and values:
                pipe.hset(hash_key, mapping={str(k): str(v) for k, v in values.items()})
            elif values:
                for k, v in values.items():
                    pipe.hsetnx(hash_key, str(k), str(v))
        await pipe.execute()

    async def replace_unit_names(self, names: Mapping[UUID, str]) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(UNIT_NAMES)
        if names:
            pipe.hset(UNIT_NAMES, mapping={str(k): v for k, v in names.items()})
        await pipe.execute()

    async def top(
        self, round_id: UUID, limit: int, *, unit_id: UUID | None = None, group: str | None = None
    ) -> list[BoardRow]:
        rows, names, unit_names = await self._top(
            keys=[board_key(round_id, unit_id=unit_id, group=group), NAMES, UNITS_OF, UNIT_NAMES], args=[limit]
        )
        board: list[BoardRow] = []
        for i in range(0, len(rows), 2):
            correct, duration = domain.decode_live_score(float(rows[i + 1]))
            position = i // 2
            board.append(
                BoardRow(
                    rank=position + 1,
                    participant_id=_text(rows[i]) or "",
                    name=_text(names[position]),
                    unit_name=_text(unit_names[position]),
                    correct=correct,
                    duration_ms=duration,
                )
            )
        return board

    async def rank_of(self, round_id: UUID, participant_id: UUID) -> int | None:
        rank: int | None = await self.redis.zrevrank(board_key(round_id), str(participant_id))  # type: ignore[assignment]
        return None if rank is None else rank + 1

    async def standing(self, round_id: UUID, participant_id: UUID) -> Standing | None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrevrank(board_key(round_id), str(participant_id))
        pipe.zscore(board_key(round_id), str(participant_id))
        rank, score = await pipe.execute()
        if rank is None or score is None:
            return None
        correct, duration = domain.decode_live_score(score)
        return Standing(int(rank) + 1, correct, duration)

    async def replace_round(self, round_id: UUID, placements: Sequence[Placement]) -> int:
        """Swap every board of the round for these placements at once: readers see the
        old boards until the new ones are complete; boards of units or groups nobody is
        in any more disappear. The number of board keys written."""
        boards: dict[str, dict[str, int]] = defaultdict(dict)
        for p in placements:
            for key in p.keys():
                member = str(p.participant_id)
                boards[key][member] = max(p.score, boards[key].get(member, p.score))
        staging = f"scoring:rebuild:{uuid.uuid4().hex}:"
        for key, members in boards.items():
            items = list(members.items())
            for start in range(0, len(items), _CHUNK):
                await self.redis.zadd(staging + key, dict(items[start : start + _CHUNK]))
        old = {
            _text(k) or ""
            async for k in self.redis.scan_iter(match=f"{board_key(round_id)}*", count=1000)
        }
        swap = self.redis.pipeline(transaction=True)
        stale = old - boards.keys()
        if stale:
            swap.delete(*stale)
        for key in boards:
            swap.rename(staging + key, key)
        await swap.execute()
        return len(boards)


@dataclass(frozen=True, slots=True)
class RebuildReport:
    rounds: int
    entries: int
    boards: int


# Results whose transaction began this long before the rebuild read PostgreSQL, but
# committed after, are applied again at the end (ZADD GT makes that harmless).
_CATCH_UP = timedelta(minutes=5)


async def rebuild_leaderboards(pool: asyncpg.Pool, boards: Leaderboards, round_id: UUID | None = None) -> RebuildReport:
    """Recompute the boards (all rounds, or one) and the name hashes from PostgreSQL."""
    started = datetime.now(UTC)
    parent_of = await store.unit_parents(pool)
    people = await store.participants(pool)
    await boards.replace_unit_names(await store.unit_names(pool))
    for start in range(0, len(people), _CHUNK):
        chunk = people[start : start + _CHUNK]
        await boards.record(
            [],
            names={p.participant_id: p.full_name for p in chunk},
            units_of={p.participant_id: p.unit_id for p in chunk if p.unit_id is not None},
        )
    round_ids = [round_id] if round_id is not None else await store.all_round_ids(pool)
    opening: dict[UUID, datetime] = {}
    entries = keys = 0
    for rid in round_ids:
        opens = await store.opens_at(pool, rid)
        if opens is None:
            log.warning("no such round; nothing to rebuild", extra={"round_id": str(rid)})
            continue
        opening[rid] = opens
        best = await store.best_attempts(pool, rid)
        keys += await boards.replace_round(rid, [placement(rid, opens, b.result, parent_of) for b in best])
        entries += len(best)
    late = await store.results_scored_since(pool, started - _CATCH_UP, list(opening))
    await boards.record(placement(rid, opening[rid], r, parent_of) for rid, r in late)
    log.info("leaderboards rebuilt", extra={"rounds": len(opening), "entries": entries, "boards": keys})
    return RebuildReport(len(opening), entries, keys)
