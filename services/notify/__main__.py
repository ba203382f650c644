"""`python -m services.notify migrate`: bring the notify schema up to date."""

from __future__ import annotations

import argparse
import asyncio
import sys

from services.core.db import migrate_service
from services.core.logs import configure_logging
from services.notify.settings import NotifySettings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.notify")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply the notify migrations (idempotent)")
    args = parser.parse_args()
    settings = NotifySettings()
    configure_logging("notify", settings.log_level)
    if args.command == "migrate":
        applied = asyncio.run(migrate_service(settings.database_url, "notify"))
        print(f"notify: {len(applied)} migration(s) applied", file=sys.stderr)


if __name__ == "__main__":
    main()
