"""`python -m services.core.migrate [--create-database] SERVICE...`: bring each service's
schema up to date (idempotent; safe to run while older processes are up)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from services.core.db import create_database_if_missing, migrate_service
from services.core.logs import configure_logging
from services.core.settings import CoreSettings

SERVICES = ("registration", "quiz", "scoring", "notify")


async def _main(services: list[str], create_database: bool) -> None:
    settings = CoreSettings()
    if create_database:
        await create_database_if_missing(settings.database_url)
    for service in services:
        applied = await migrate_service(settings.database_url, service)
        print(f"{service}: {len(applied)} migration(s) applied", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--create-database", action="store_true")
    parser.add_argument("services", nargs="+", choices=SERVICES)
    args = parser.parse_args()
    configure_logging("migrate")
    asyncio.run(_main(args.services, args.create_database))


if __name__ == "__main__":
    main()
