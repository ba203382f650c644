"""`python -m services.scoring COMMAND`:

- `migrate`: bring the `scoring` schema up to date.
- `rebuild-leaderboards [--round ID]`: recompute the Redis boards (live, frozen during a
  round's freeze), the rounds' board meta and the name hashes from PostgreSQL (after
  Redis lost its data). Safe while the worker runs. The worker rebuilds the rounds a
  units.changed affects by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from uuid import UUID

from redis.asyncio import Redis

from services.core.db import create_pool, migrate_service
from services.core.logs import configure_logging
from services.scoring.leaderboards import Leaderboards, rebuild_leaderboards
from services.scoring.settings import ScoringSettings


async def migrate(settings: ScoringSettings) -> None:
    applied = await migrate_service(settings.database_url, "scoring")
    print(f"scoring: {len(applied)} migration(s) applied", file=sys.stderr)


async def rebuild(settings: ScoringSettings, round_id: UUID | None) -> None:
    pool = await create_pool(settings.database_url, "scoring", min_size=1, max_size=2)
    redis = Redis.from_url(settings.redis_url)
    try:
        report = await rebuild_leaderboards(pool, Leaderboards(redis), round_id)
    finally:
        await redis.aclose()
        await pool.close()
    print(f"rebuilt {report.boards} board(s) of {report.rounds} round(s), {report.entries} entrant(s)", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.scoring", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply the scoring schema's migrations")
    rebuild_cmd = commands.add_parser("rebuild-leaderboards", help="recompute the Redis boards from PostgreSQL")
    rebuild_cmd.add_argument("--round", type=UUID, dest="round_id", help="only this round")
    args = parser.parse_args(argv)
    settings = ScoringSettings()
    configure_logging("scoring", settings.log_level)
    if args.command == "migrate":
        asyncio.run(migrate(settings))
    else:
        asyncio.run(rebuild(settings, args.round_id))


if __name__ == "__main__":
    main()
