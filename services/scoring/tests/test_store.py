"""store.py against the real PostgreSQL."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

import asyncpg

from services.core.events import Event
from services.scoring import domain, store
from services.scoring.tests import builders as ev


def _opened(round_id: uuid.UUID) -> store.OpenedRound:
    return store.OpenedRound(
        round_id, uuid.uuid4(), "Hội thi", "Tuần 1", ev.OPENS_AT, ev.OPENS_AT + timedelta(days=7), {}, ev.ANSWER_KEY
    )


def _no_event(round_id: uuid.UUID, result: domain.Result) -> Event:
    return Event("test.scored", {"attempt_id": result.attempt_id})


async def test_best_attempts_in_sql_agree_with_the_domain_rule(pool: asyncpg.Pool) -> None:
    rng = random.Random(20250303)
    for _ in range(5):
        round_id = uuid.uuid4()
        people = [uuid.uuid4() for _ in range(15)]
        rows = []
        for _ in range(120):
            started = ev.OPENS_AT + timedelta(seconds=rng.randint(0, 5))
            duration = rng.choice([1000, 2000])
            rows.append(
                domain.Result(
                    attempt_id=uuid.uuid4(),
                    participant_id=rng.choice(people),
                    attempt_number=rng.randint(1, 5),
                    correct=rng.randint(8, 10),
                    total=10,
                    duration_ms=duration,
                    started_at=started,
                    submitted_at=started + timedelta(milliseconds=duration),
                    prediction=rng.choice([None, 5, 7]),
                    counts=rng.random() < 0.8,
                )
            )
        async with pool.acquire() as conn:
            await store.insert_results_with_outbox(conn, [(round_id, r) for r in rows], _no_event)
        from_sql = {b.participant_id: b for b in await store.best_attempts(pool, round_id)}
        from_domain = {b.participant_id: b for b in domain.best_attempt_per_participant(rows)}
        assert from_sql == from_domain
        # As the board stood at an instant (a frozen board): the same rule over earlier rows.
        cut = ev.OPENS_AT + timedelta(seconds=4)
        before = await store.best_attempts(pool, round_id, submitted_before=cut)
        expected = domain.best_attempt_per_participant(r for r in rows if r.submitted_at < cut)
        assert {b.participant_id: b.result for b in before} == {b.participant_id: b.result for b in expected}
        # What a board rebuild reads: the same attempts, fewer columns.
        for cut_at, best in ((None, from_domain.values()), (cut, expected)):
            entries = await store.board_entries(pool, round_id, submitted_before=cut_at)
            assert {e.participant_id: e for e in entries} == {
                b.participant_id: store.BoardEntry(b.participant_id, b.result.correct, b.result.duration_ms,
                                                   b.result.submitted_at, b.result.unit_id, b.result.group)
                for b in best
            }


async def test_insert_results_reports_only_new_rows_and_emits_for_them(pool: asyncpg.Pool) -> None:
    round_id = uuid.uuid4()
    result = domain.Result(uuid.uuid4(), uuid.uuid4(), 1, 5, 10, 1000, ev.OPENS_AT, ev.OPENS_AT + timedelta(seconds=1))
    async with pool.acquire() as conn:
        assert await store.insert_results_with_outbox(conn, [(round_id, result)], _no_event) == {result.attempt_id}
        assert await store.insert_results_with_outbox(conn, [(round_id, result)], _no_event) == set()
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_round_opened_again_keeps_what_scoring_learnt(pool: asyncpg.Pool) -> None:
    round_id = uuid.uuid4()
    await store.upsert_round(pool, _opened(round_id))
    assert await store.close_round(pool, round_id, ev.OPENS_AT + timedelta(days=7), 12)
    await store.upsert_round(pool, _opened(round_id))
    row = await pool.fetchrow("SELECT closed_at, submitted_count FROM rounds WHERE round_id = $1", round_id)
    assert row["submitted_count"] == 12 and row["closed_at"] is not None


async def test_close_round_never_lowers_the_count_and_knows_unknown_rounds(pool: asyncpg.Pool) -> None:
    round_id = uuid.uuid4()
    assert not await store.close_round(pool, round_id, ev.OPENS_AT, 3)
    await store.upsert_round(pool, _opened(round_id))
    await store.close_round(pool, round_id, ev.OPENS_AT + timedelta(days=7), 30)
    await store.close_round(pool, round_id, ev.OPENS_AT + timedelta(days=6), 20)
    assert await pool.fetchval("SELECT submitted_count FROM rounds WHERE round_id = $1", round_id) == 30
    assert await store.closed_unfinalised(pool, [round_id, uuid.uuid4()]) == [round_id]


async def test_unit_parents_follow_the_chain_and_stop_on_a_cycle(pool: asyncpg.Pool) -> None:
    a, b, c, d = (uuid.uuid4() for _ in range(4))
    units = [
        store.UnitCopy(a, "A", "Tỉnh", None, "", 0),
        store.UnitCopy(b, "B", "Huyện", a, "", 0),
        store.UnitCopy(c, "C", "Xã", b, "", 0),
        store.UnitCopy(d, "D", "Khác", None, "", 0),
    ]
    async with pool.acquire() as conn, conn.transaction():
        await store.replace_units(conn, units, ev.OPENS_AT)
    assert await store.unit_parents(pool, [c]) == {c: b, b: a, a: None}
    await pool.execute("UPDATE units SET parent_id = $1 WHERE id = $2", c, a)  # bad data: a loop
    assert await store.unit_parents(pool, [c]) == {c: b, b: a, a: c}
    assert domain.lineage(c, await store.unit_parents(pool, [c])) == (c, b, a)


async def test_unit_participation_counts_each_subtree_in_one_statement(pool: asyncpg.Pool) -> None:
    """A three-level tree, random entrants: every unit's figures equal a count done by
    walking the tree in Python."""
    rng = random.Random(7)
    city = uuid.uuid4()
    districts = [uuid.uuid4() for _ in range(3)]
    wards = [uuid.uuid4() for _ in range(9)]
    parent = {city: None, **{d: city for d in districts}, **{w: districts[i % 3] for i, w in enumerate(wards)}}
    headcount = {u: rng.randint(0, 30) for u in parent}
    units = [store.UnitCopy(u, f"U{i:02}", f"Đơn vị {i}", p, "Xã, phường", headcount[u])
             for i, (u, p) in enumerate(parent.items())]
    async with pool.acquire() as conn, conn.transaction():
        await store.replace_units(conn, units, ev.OPENS_AT)
    week1, week2, elsewhere = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    people = {uuid.uuid4(): rng.choice([city, *districts, *wards]) for _ in range(40)}
    rows: list[tuple[uuid.UUID, domain.Result]] = []
    for pid, unit in people.items():
        for number in range(1, rng.randint(1, 3) + 1):
            round_id = rng.choice([week1, week2, elsewhere])
            at = ev.OPENS_AT + timedelta(minutes=number)
            rows.append((round_id, domain.Result(uuid.uuid4(), pid, number, rng.randint(0, 10), 10, 1000, at, at,
                                                 unit_id=unit, counts=rng.random() < 0.7)))
    async with pool.acquire() as conn:
        await store.insert_results_with_outbox(conn, rows, _no_event)

    figures = {u.unit_id: u for u in await store.unit_participation(pool, [week1, week2])}

    def under(unit: uuid.UUID) -> set[uuid.UUID]:
        return {u for u in parent if unit in domain.lineage(u, parent)}

    assert set(figures) == set(parent)
    for unit, got in figures.items():
        subtree = under(unit)
        mine = [(rid, r) for rid, r in rows if rid in (week1, week2) and r.unit_id in subtree]
        assert got.headcount == sum(headcount[u] for u in subtree)
        assert got.participants == len({r.participant_id for _, r in mine})
        assert got.attempts == len(mine)
        assert got.is_leaf == (subtree == {unit})
    assert await store.subtree(pool, districts[0]) == under(districts[0])

    scoped = [w for w in wards if parent[w] == districts[1]]
    counted = await store.entry_figures(pool, [week1], scoped)
    in_scope = [r for rid, r in rows if rid == week1 and r.unit_id in scoped]
    best = domain.best_attempt_per_participant(in_scope)
    expected: dict[tuple[int, int], int] = {}
    for b in best:
        expected[(b.result.correct, b.result.total)] = expected.get((b.result.correct, b.result.total), 0) + 1
    assert counted.by_score == expected
    assert (counted.participants, counted.attempts) == (len({r.participant_id for r in in_scope}), len(in_scope))
    everyone = await store.entry_figures(pool, [week1, week2, elsewhere], None)
    assert everyone.attempts == len(rows)


async def test_an_old_round_opened_retried_late_does_not_shorten_the_round(pool: asyncpg.Pool) -> None:
    from dataclasses import replace

    round_id = uuid.uuid4()
    original = _opened(round_id)
    extended = replace(original, closes_at=original.closes_at + timedelta(days=2))
    await store.upsert_round(pool, extended)
    await store.upsert_round(pool, original)
    assert await pool.fetchval("SELECT closes_at FROM rounds WHERE round_id = $1", round_id) == extended.closes_at
