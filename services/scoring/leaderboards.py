"""The live leaderboards: Redis projections of `results`, never the system of record.

Keys:
- `scoring:lb:{round_id}`                    sorted set, participant id → live score of their best attempt
- `scoring:lb:{round_id}:unit:{unit_id}`     the same, for a unit and (through lineage) every unit above it
- `scoring:lb:{round_id}:group:{group}`      the same, for a group of entrants
- `scoring:lb:{round_id}:frozen[:unit:..|:group:..]`  the same boards as they stood at the freeze
- `scoring:boards:{round_id}`  set of the round's live board keys (what a freeze copies)
- `scoring:round:{round_id}`   hash: freeze_at (epoch ms, 0 = never), groups (JSON list of the round's
                                group codes), final ("1"), copied ("1" once frozen), built_on (below)
- `scoring:names`       hash participant id → display name
- `scoring:units_of`    hash participant id → unit id
- `scoring:unit_names`  hash unit id → unit name
- `scoring:projection`  hash: built_on (below), once the three name hashes were rebuilt

The markers (`built_on`, the run id of the Redis server the boards were built on) say a
projection is complete. A round's is written by a rebuild in the same atomic step as its
boards, and no other write creates it: when Redis loses its data (a flush, a restart
without persistence) the marker goes with the boards, and a board read or write that
finds it missing knows the boards are partial (services.scoring.projection rebuilds
them). A restart from persisted data, or a failover to a replica, keeps the markers but
may have lost the last writes: the server's run id then differs from `built_on`, which
the worker's watch notices.

Scores only ever rise (ZADD GT), so writing the same result twice, or an older result
after a newer one, changes nothing: that makes every write idempotent and order-free.
Only entries that count are placed. `rebuild_leaderboards` recomputes everything from
PostgreSQL; `rebuild_rounds` some rounds (docs/decisions.md "Lost boards rebuild
themselves" says why a write during a rebuild is never lost).

The freeze (a round's `freeze_s`): from freeze_at until the round is final the public
board is read from the frozen keys. They are the live boards copied once (ZUNIONSTORE,
guarded by `copied`) by whichever comes first: the first board read after freeze_at, or
the worker just before it writes its first entry submitted after freeze_at. An entry
submitted before freeze_at but scored after the copy is written to the frozen boards
too, so the frozen board is exactly "best entry of each participant submitted before
freeze_at", whatever the scoring lag. The copy script builds the frozen key names from
the live ones: fine on one Redis server (not a cluster).
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import orjson
from redis.asyncio import Redis

from services.scoring import domain, store

log = logging.getLogger(__name__)

NAMES = "scoring:names"
UNITS_OF = "scoring:units_of"
UNIT_NAMES = "scoring:unit_names"
NAMES_MARKER = "scoring:projection"
BUILT_ON = "built_on"
_CHUNK = 5000
# A rebuild stages 1,000 members per script call: a few ms of Redis each, so other
# clients never wait long behind it; 50 calls per round trip.
_STAGE_CHUNK = 1000
_STAGES_PER_TRIP = 50


class BoardsLost(Exception):
    """The round's boards are not a complete projection (their marker is gone): Redis
    lost its data since they were built, and a rebuild is needed before they are read."""

    def __init__(self, round_id: UUID) -> None:
        super().__init__(f"the boards of round {round_id} are not built")
        self.round_id = round_id

# Copy every live board of a round to its frozen key, once (never for a final round:
# nobody reads frozen boards then). KEYS: the round's meta hash
# and board index; ARGV: live prefix, frozen prefix (a frozen key is the live key with
# the prefix swapped). Merged (MAX) with what the worker may already have written there.
_FREEZE_FUNCTION = """
local function freeze(meta, index, live_prefix, frozen_prefix)
  local state = redis.call('HMGET', meta, 'copied', 'final')
  if state[1] == '1' or state[2] == '1' then return 0 end
  redis.call('HSET', meta, 'copied', '1')
  local boards = redis.call('SMEMBERS', index)
  for _, live in ipairs(boards) do
    local frozen = frozen_prefix .. string.sub(live, #live_prefix + 1)
    redis.call('ZUNIONSTORE', frozen, 2, live, frozen, 'AGGREGATE', 'MAX')
  end
  return #boards
end
"""

_FREEZE = _FREEZE_FUNCTION + "return freeze(KEYS[1], KEYS[2], ARGV[1], ARGV[2])"

# One round trip for a page of the board: whether the public board is frozen now (and
# the copy if it is the first read since), the ranks, then the names and unit names of
# exactly those participants (a pipeline cannot do this: each step needs the last's answer).
# KEYS: live board, frozen board, names, units_of, unit_names, round meta, board index.
# ARGV: limit, now (epoch ms), "1" for the live board whatever the freeze, live prefix, frozen prefix,
# "1" to refuse boards without their marker. The 5th value returned is 1 when it refused.
_TOP = _FREEZE_FUNCTION + """
if ARGV[6] == '1' and redis.call('HEXISTS', KEYS[6], 'built_on') == 0 then return {{}, {}, {}, false, 1} end
local key = KEYS[1]
local frozen_at = false
if ARGV[3] ~= '1' then
  local meta = redis.call('HMGET', KEYS[6], 'freeze_at', 'final')
  local at = tonumber(meta[1])
  if at and at > 0 and meta[2] ~= '1' and tonumber(ARGV[2]) >= at then
    freeze(KEYS[6], KEYS[7], ARGV[4], ARGV[5])
    key = KEYS[2]
    frozen_at = meta[1]
  end
end
local rows = redis.call('ZREVRANGE', key, 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
if #rows == 0 then return {{}, {}, {}, frozen_at, 0} end
local ids = {}
for i = 1, #rows, 2 do ids[#ids + 1] = rows[i] end
local names = redis.call('HMGET', KEYS[3], unpack(ids))
local units = redis.call('HMGET', KEYS[4], unpack(ids))
local unit_ids = {}
for i = 1, #units do unit_ids[i] = units[i] or '-' end
local unit_names = redis.call('HMGET', KEYS[5], unpack(unit_ids))
return {rows, names, unit_names, frozen_at, 0}
"""

# A participant's live standing in one round trip: overall, in a unit's board, and in
# their group's. The group of their attempt is quiz's resolution of the token's text
# (a code, or the contest's default group), so the token's group is tried first and then
# each of the round's group codes. KEYS: overall board, round meta. ARGV: participant,
# unit board key (or ""), group board key prefix, token group (or ""), "1" to refuse boards
# without their marker (answered with -1).
_STANDING = """
if ARGV[5] == '1' and redis.call('HEXISTS', KEYS[2], 'built_on') == 0 then return -1 end
local rank = redis.call('ZREVRANK', KEYS[1], ARGV[1])
if not rank then return false end
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
local unit_rank = false
if ARGV[2] ~= '' then unit_rank = redis.call('ZREVRANK', ARGV[2], ARGV[1]) end
local candidates = {}
if ARGV[4] ~= '' then candidates[#candidates + 1] = ARGV[4] end
local raw = redis.call('HGET', KEYS[2], 'groups')
if raw then
  for _, code in ipairs(cjson.decode(raw)) do candidates[#candidates + 1] = code end
end
local group_rank = false
for _, code in ipairs(candidates) do
  local found = redis.call('ZREVRANK', ARGV[3] .. code, ARGV[1])
  if found then
    group_rank = found
    break
  end
end
return {rank, score, unit_rank, group_rank}
"""

# After the round is final everyone sees the live board; the frozen copies go.
_UNFREEZE = """
redis.call('HSET', KEYS[1], 'final', '1')
local boards = redis.call('SMEMBERS', KEYS[2])
for _, live in ipairs(boards) do
  redis.call('DEL', ARGV[2] .. string.sub(live, #ARGV[1] + 1))
end
return #boards
"""


# A rebuild stages its boards with this: members travel as one JSON argument (score,
# member, score, member...) instead of two arguments each, which spares the client the
# packing of every one (most of a rebuild's CPU otherwise). Scores travel as text: Redis
# parses them as ZADD always does, with no Lua number in between (15 % less Redis CPU).
# KEYS: the staged board. ARGV: the JSON list.
_STAGE = """
local flat = cjson.decode(ARGV[1])
for i = 1, #flat, 1000 do
  redis.call('ZADD', KEYS[1], 'GT', unpack(flat, i, math.min(i + 999, #flat)))
end
return #flat / 2
"""

# A rebuilt round's boards, index and meta replace the old ones in one atomic step, and
# only if every staged board is still there (a flush between staging and swapping must
# not leave a marker over missing boards). The old boards are UNLINKed (freed in the
# background: a board of 200,000 entries takes Redis tens of ms to free) before the
# RENAMEs, which then overwrite nothing. KEYS: meta, index, n staged boards, their n
# final names, stale boards to delete. ARGV: n, meta as a flat JSON list, live keys (JSON).
_SWAP = """
local n = tonumber(ARGV[1])
for i = 3, 2 + n do
  if redis.call('EXISTS', KEYS[i]) == 0 then return redis.error_reply('staged board gone: ' .. KEYS[i]) end
end
for i = 3 + n, #KEYS do redis.call('UNLINK', KEYS[i]) end
for i = 3, 2 + n do redis.call('RENAME', KEYS[i], KEYS[i + n]) end
redis.call('DEL', KEYS[2])
local live = cjson.decode(ARGV[3])
for i = 1, #live, 1000 do redis.call('SADD', KEYS[2], unpack(live, i, math.min(i + 999, #live))) end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(cjson.decode(ARGV[2])))
return n
"""


def board_key(round_id: UUID, *, unit_id: UUID | None = None, group: str | None = None) -> str:
    if unit_id is not None:
        return f"scoring:lb:{round_id}:unit:{unit_id}"
    if group is not None:
        return f"scoring:lb:{round_id}:group:{group}"
    return f"scoring:lb:{round_id}"


def frozen_key(round_id: UUID, *, unit_id: UUID | None = None, group: str | None = None) -> str:
    """The frozen twin of a board: the live key with `:frozen` right after the round id,
    so no unit id or group code can make a live key look like a frozen one."""
    return _to_frozen(round_id, board_key(round_id, unit_id=unit_id, group=group))


def _frozen_prefix(round_id: UUID) -> str:
    return f"{board_key(round_id)}:frozen"


def _to_frozen(round_id: UUID, live: str) -> str:
    return _frozen_prefix(round_id) + live[len(board_key(round_id)):]


def board_index_key(round_id: UUID) -> str:
    return f"scoring:boards:{round_id}"


def round_meta_key(round_id: UUID) -> str:
    return f"scoring:round:{round_id}"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_ms(moment: datetime | None) -> int:
    return 0 if moment is None else (moment - _EPOCH) // timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one result goes: the boards it counts on, with its live score."""

    round_id: UUID
    participant_id: UUID
    score: int
    units: tuple[UUID, ...]
    group: str | None
    # Also on the frozen boards (submitted before the freeze, written once it is near).
    frozen: bool = False

    def keys(self) -> list[str]:
        keys = [board_key(self.round_id)]
        keys += [board_key(self.round_id, unit_id=u) for u in self.units]
        if self.group:
            keys.append(board_key(self.round_id, group=self.group))
        return keys

    def frozen_keys(self) -> list[str]:
        return [_to_frozen(self.round_id, k) for k in self.keys()]


def placement(
    round_id: UUID,
    opens_at: datetime,
    result: domain.Result | store.BoardEntry,
    parent_of: Mapping[UUID, UUID | None],
    *,
    frozen: bool = False,
) -> Placement:
    score = domain.live_score(
        result.correct, result.duration_ms, domain.submitted_offset_s(opens_at, result.submitted_at)
    )
    units = domain.lineage(result.unit_id, parent_of) if result.unit_id is not None else ()
    return Placement(round_id, result.participant_id, score, units, result.group, frozen)


def placements(
    round_id: UUID, opens_at: datetime, entries: Iterable[store.BoardEntry], parent_of: Mapping[UUID, UUID | None]
) -> list[Placement]:
    """`placement` of many entries, each unit's lineage walked once."""
    lineages: dict[UUID, tuple[UUID, ...]] = {}
    placed = []
    for e in entries:
        units: tuple[UUID, ...] = ()
        if e.unit_id is not None:
            units = lineages.get(e.unit_id) or lineages.setdefault(e.unit_id, domain.lineage(e.unit_id, parent_of))
        score = domain.live_score(e.correct, e.duration_ms, domain.submitted_offset_s(opens_at, e.submitted_at))
        placed.append(Placement(round_id, e.participant_id, score, units, e.group))
    return placed


class _BoardKeys:
    """`Placement.keys` (or `frozen_keys`) for many placements of one round, each key
    string built once: a rebuild places hundreds of thousands of entries."""

    def __init__(self, round_id: UUID, *, frozen: bool = False) -> None:
        self.round_id, self.frozen = round_id, frozen
        self._overall = frozen_key(round_id) if frozen else board_key(round_id)
        self._units: dict[UUID, str] = {}
        self._groups: dict[str, str] = {}

    def __call__(self, p: Placement) -> list[str]:
        keys = [self._overall]
        for unit in p.units:
            if (key := self._units.get(unit)) is None:
                key = self._units[unit] = self._key(unit_id=unit)
            keys.append(key)
        if p.group:
            if (key := self._groups.get(p.group)) is None:
                key = self._groups[p.group] = self._key(group=p.group)
            keys.append(key)
        return keys

    def _key(self, **which: Any) -> str:
        return frozen_key(self.round_id, **which) if self.frozen else board_key(self.round_id, **which)


def _place(boards: dict[str, list[str]], placements: Iterable[Placement], keys_of: _BoardKeys) -> None:
    for p in placements:
        entry = (str(p.score), str(p.participant_id))
        for key in keys_of(p):
            boards[key].extend(entry)


@dataclass(frozen=True, slots=True)
class BoardWrites:
    """A batch's writes for one round: where each counting result goes, and whether the
    freeze copy must be taken first (before anything submitted after freeze_at lands on
    the live boards)."""

    placements: list[Placement]
    freeze_first: bool


def board_writes(
    round_id: UUID,
    opens_at: datetime,
    freeze_at: datetime | None,
    results: Iterable[domain.Result],
    parent_of: Mapping[UUID, UUID | None],
    now: datetime,
) -> BoardWrites:
    counting = [r for r in results if r.counts]
    return BoardWrites(
        [
            placement(round_id, opens_at, r, parent_of, frozen=domain.on_frozen_board(r.submitted_at, freeze_at, now))
            for r in counting
        ],
        domain.must_freeze_before_writing(freeze_at, now, [r.submitted_at for r in counting]),
    )


@dataclass(frozen=True, slots=True)
class BoardRow:
    rank: int
    participant_id: str
    name: str | None
    unit_name: str | None
    correct: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Board:
    rows: list[BoardRow]
    frozen_at: datetime | None  # None: the live board


@dataclass(frozen=True, slots=True)
class Standing:
    rank: int
    correct: int
    duration_ms: int
    unit_rank: int | None = None
    group_rank: int | None = None


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class Leaderboards:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._top = redis.register_script(_TOP)
        self._freeze = redis.register_script(_FREEZE)
        self._unfreeze = redis.register_script(_UNFREEZE)
        self._standing = redis.register_script(_STANDING)
        self._swap = redis.register_script(_SWAP)
        self._stage = redis.register_script(_STAGE)

    async def server_id(self) -> str:
        """The Redis server's run id: a new one after every restart, and on a failover."""
        info = await self.redis.info("server")
        return str(info["run_id"])

    async def built_on(self, round_ids: Sequence[UUID]) -> dict[UUID, str | None]:
        """Each round's marker: the server its boards were built on, None if missing."""
        pipe = self.redis.pipeline(transaction=False)
        for round_id in round_ids:
            pipe.hget(round_meta_key(round_id), BUILT_ON)
        found = await pipe.execute()
        return {rid: _text(value) for rid, value in zip(round_ids, found, strict=True)}

    async def names_built_on(self) -> str | None:
        return _text(await self.redis.hget(NAMES_MARKER, BUILT_ON))  # type: ignore[misc]

    async def mark_names_built(self, server: str) -> None:
        await self.redis.hset(NAMES_MARKER, BUILT_ON, server)  # type: ignore[misc]

    async def record(
        self,
        placements: Iterable[Placement],
        names: Mapping[UUID, str] | None = None,
        units_of: Mapping[UUID, UUID] | None = None,
        *,
        overwrite: bool = True,
        freeze_first: Iterable[UUID] = (),
    ) -> None:
        """Every placement and name in one pipeline. Without `overwrite` names and units
        are only filled in where missing: registration's own data wins over what an
        attempt carried. `freeze_first`: rounds whose freeze copy is taken at the head
        of the pipeline, before any of these placements."""
        pipe = self.redis.pipeline(transaction=False)
        for round_id in dict.fromkeys(freeze_first):
            await self._freeze(
                keys=[round_meta_key(round_id), board_index_key(round_id)],
                args=[board_key(round_id), _frozen_prefix(round_id)],
                client=pipe,
            )
        index: dict[UUID, set[str]] = defaultdict(set)
        for p in placements:
            member = {str(p.participant_id): p.score}
            for key in p.keys():
                pipe.zadd(key, member, gt=True)
            index[p.round_id].update(p.keys())
            if p.frozen:
                for key in p.frozen_keys():
                    pipe.zadd(key, member, gt=True)
        for round_id, keys in index.items():
            pipe.sadd(board_index_key(round_id), *sorted(keys))
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

    async def set_round(self, round_id: UUID, freeze_at: datetime | None, groups: Sequence[str] = ()) -> None:
        """What a board read needs to know about the round (from round.opened)."""
        await self.redis.hset(  # type: ignore[misc]
            round_meta_key(round_id),
            mapping={"freeze_at": str(_epoch_ms(freeze_at)), "groups": orjson.dumps(list(groups)).decode()},
        )

    async def mark_final(self, round_id: UUID) -> None:
        await self._unfreeze(
            keys=[round_meta_key(round_id), board_index_key(round_id)],
            args=[board_key(round_id), _frozen_prefix(round_id)],
        )

    async def top(
        self,
        round_id: UUID,
        limit: int,
        *,
        unit_id: UUID | None = None,
        group: str | None = None,
        now: datetime,
        live: bool = False,
        complete: bool = True,
    ) -> Board:
        """The first `limit` rows of a board: the frozen one from freeze_at until the
        round is final, unless `live` (organisers). BoardsLost when the round's marker is
        missing, unless `complete` is False (a round PostgreSQL does not know either)."""
        rows, names, unit_names, frozen_at, lost = await self._top(
            keys=[
                board_key(round_id, unit_id=unit_id, group=group),
                frozen_key(round_id, unit_id=unit_id, group=group),
                NAMES,
                UNITS_OF,
                UNIT_NAMES,
                round_meta_key(round_id),
                board_index_key(round_id),
            ],
            args=[
                limit, _epoch_ms(now), "1" if live else "0", board_key(round_id), _frozen_prefix(round_id),
                "1" if complete else "0",
            ],
        )
        if lost:
            raise BoardsLost(round_id)
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
        frozen = None if frozen_at is None else datetime.fromtimestamp(int(frozen_at) / 1000, UTC)
        return Board(board, frozen)

    async def rank_of(self, round_id: UUID, participant_id: UUID, *, complete: bool = True) -> int | None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hexists(round_meta_key(round_id), BUILT_ON)
        pipe.zrevrank(board_key(round_id), str(participant_id))
        built, rank = await pipe.execute()
        if complete and not built:
            raise BoardsLost(round_id)
        return None if rank is None else int(rank) + 1

    async def standing(
        self,
        round_id: UUID,
        participant_id: UUID,
        *,
        unit_id: UUID | None = None,
        group: str | None = None,
        complete: bool = True,
    ) -> Standing | None:
        """A participant's live rank overall, in a unit's board (their unit and its
        subtree) and in their group's; one round trip. BoardsLost as for `top`."""
        found = await self._standing(
            keys=[board_key(round_id), round_meta_key(round_id)],
            args=[
                str(participant_id),
                board_key(round_id, unit_id=unit_id) if unit_id is not None else "",
                board_key(round_id, group=""),
                group or "",
                "1" if complete else "0",
            ],
        )
        if found == -1:
            raise BoardsLost(round_id)
        if not found:
            return None
        rank, score, unit_rank, group_rank = found
        correct, duration = domain.decode_live_score(float(score))
        return Standing(
            int(rank) + 1,
            correct,
            duration,
            None if unit_rank is None else int(unit_rank) + 1,
            None if group_rank is None else int(group_rank) + 1,
        )

    async def replace_round(
        self,
        round_id: UUID,
        placements: Sequence[Placement],
        *,
        built_on: str,
        frozen: Sequence[Placement] | None = None,
        freeze_at: datetime | None = None,
        groups: Sequence[str] = (),
        final: bool = False,
        copied: bool = False,
    ) -> int:
        """Swap every board of the round (live, and frozen when `frozen` is given) for
        these placements at once, with the round's meta and its marker (`built_on`, the
        server's run id): readers see the old boards until the new ones are complete;
        boards of units or groups nobody is in any more disappear. The number of board
        keys written."""
        # Each board as the flat list its staging takes (score, member, ...). A member
        # placed twice keeps its higher score there (ZADD GT).
        boards: dict[str, list[str]] = defaultdict(list)
        _place(boards, placements, _BoardKeys(round_id))
        live_keys = sorted(boards)
        _place(boards, frozen or (), _BoardKeys(round_id, frozen=True))
        staging = f"scoring:rebuild:{uuid.uuid4().hex}:"
        chunks = [
            (staging + key, orjson.dumps(flat[start : start + 2 * _STAGE_CHUNK]))
            for key, flat in boards.items()
            for start in range(0, len(flat), 2 * _STAGE_CHUNK)
        ]
        for first in range(0, len(chunks), _STAGES_PER_TRIP):
            pipe = self.redis.pipeline(transaction=False)
            for key, flat_json in chunks[first : first + _STAGES_PER_TRIP]:
                await self._stage(keys=[key], args=[flat_json], client=pipe)
            await pipe.execute()
        old = {
            _text(k) or ""
            async for k in self.redis.scan_iter(match=f"{board_key(round_id)}*", count=1000)
        }
        # Flags are present only when set, as the worker writes them.
        meta = {
            "freeze_at": str(_epoch_ms(freeze_at)),
            "groups": orjson.dumps(list(groups)).decode(),
            **({"final": "1"} if final else {}),
            **({"copied": "1"} if copied else {}),
            BUILT_ON: built_on,
        }
        names = list(boards)
        try:
            await self._swap(
                keys=[
                    round_meta_key(round_id), board_index_key(round_id),
                    *(staging + k for k in names), *names, *sorted(old - boards.keys()),
                ],
                args=[len(names), orjson.dumps([x for pair in meta.items() for x in pair]).decode(),
                      orjson.dumps(live_keys).decode()],
            )
        except Exception:
            if names:  # the swap refused (a flush took some of them): leave nothing behind
                await self.redis.delete(*(staging + k for k in names))
            raise
        return len(boards)


@dataclass(frozen=True, slots=True)
class RebuildReport:
    rounds: int
    entries: int
    boards: int


async def rebuild_leaderboards(
    pool: asyncpg.Pool, boards: Leaderboards, round_id: UUID | None = None, *, now: datetime | None = None
) -> RebuildReport:
    """Recompute the boards (all rounds, or one) and the name hashes from PostgreSQL."""
    await rebuild_names(pool, boards)
    round_ids = [round_id] if round_id is not None else await store.all_round_ids(pool)
    return await rebuild_rounds(pool, boards, round_ids, now=now)


async def rebuild_names(pool: asyncpg.Pool, boards: Leaderboards) -> int:
    """Recompute the name hashes (participants' names and units, unit names) from
    PostgreSQL and mark them built; the number of participants."""
    server = await boards.server_id()
    people = await store.participants(pool)
    await boards.replace_unit_names(await store.unit_names(pool))
    for start in range(0, len(people), _CHUNK):
        chunk = people[start : start + _CHUNK]
        await boards.record(
            [],
            names={p.participant_id: p.full_name for p in chunk},
            units_of={p.participant_id: p.unit_id for p in chunk if p.unit_id is not None},
        )
    await boards.mark_names_built(server)
    return len(people)


async def rebuild_rounds(
    pool: asyncpg.Pool, boards: Leaderboards, round_ids: Sequence[UUID], *, now: datetime | None = None
) -> RebuildReport:
    """Recompute these rounds' boards (live, frozen where the freeze is near or on, and
    their meta) from PostgreSQL, with the unit tree as it is now, each marked built.

    A result committed while this runs is never lost. One the round's snapshot saw is on
    the boards it swaps in. One it did not see was written by a transaction at least as
    new as the snapshot's xmin, and is written to Redis by its batch after its commit:
    either that write comes after the swap and stays, or it came before the swap and was
    replaced, but then the result committed before the swap too, and the catch-up below,
    which reads PostgreSQL after every swap, writes it again (ZADD GT: a result written
    twice changes nothing)."""
    now = now or datetime.now(UTC)
    # Taken before PostgreSQL is read: if the server changes meanwhile, the marker is
    # stale at once and the watch rebuilds again.
    server = await boards.server_id()
    known: dict[UUID, store.BoardRound] = {}
    for rid in round_ids:
        if (info := await store.board_round(pool, rid)) is None:
            log.info("no such round; nothing to rebuild", extra={"round_id": str(rid)})
        else:
            known[rid] = info
    if not known:
        return RebuildReport(0, 0, 0)
    parent_of = await store.unit_parents(pool)
    oldest_unseen: int | None = None
    entries = keys = 0
    for rid, info in known.items():
        frozen_too = not info.final and domain.freeze_is_near(info.freeze_at, now)
        snapshot = await store.board_snapshot(pool, rid, freeze_at=info.freeze_at if frozen_too else None)
        xmin = snapshot.oldest_unseen_xid
        oldest_unseen = xmin if oldest_unseen is None else min(oldest_unseen, xmin)
        live = placements(rid, info.opens_at, snapshot.best, parent_of)
        frozen = (
            None if snapshot.before_freeze is None
            else placements(rid, info.opens_at, snapshot.before_freeze, parent_of)
        )
        keys += await boards.replace_round(
            rid,
            live,
            built_on=server,
            frozen=frozen,
            freeze_at=info.freeze_at,
            groups=info.groups,
            final=info.final,
            # Taken from PostgreSQL, exact: no copy of the live board may overwrite it.
            copied=frozen is not None and info.freeze_at is not None and now >= info.freeze_at,
        )
        entries += len(snapshot.best)
    if oldest_unseen is not None:
        late = await store.results_unseen_by(pool, list(known), oldest_unseen)
        by_round: dict[UUID, list[domain.Result]] = defaultdict(list)
        for rid, result in late:
            by_round[rid].append(result)
        for rid, results in by_round.items():
            info = known[rid]
            writes = board_writes(rid, info.opens_at, None if info.final else info.freeze_at, results, parent_of, now)
            await boards.record(writes.placements, freeze_first=[rid] if writes.freeze_first else [])
    log.info("leaderboards rebuilt", extra={"rounds": len(known), "entries": entries, "boards": keys})
    return RebuildReport(len(known), entries, keys)
