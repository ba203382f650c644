"""`python -m services.notify.dev_smtp [--host H] [--port P] [--dir D]`: an SMTP server
for development that delivers nothing and keeps every message it receives as
`<timestamp>-<recipient>.eml` in a folder (`var/mail` by default), one file per
recipient, so a person can open exactly what a winner would receive.

Defaults come from the environment: SMTP_PORT, DEV_MAIL_DIR, and DEV_SMTP_HOST (else
BIND_HOST, as in containers, else 127.0.0.1). Stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from services.core.logs import configure_logging
from services.core.process import stop_on_signals

log = logging.getLogger("services.notify.dev_smtp")

_UNSAFE_IN_FILE_NAME = re.compile(r"[^A-Za-z0-9@._+-]")


def eml_file_name(received_at: datetime, recipient: str) -> str:
    stamp = received_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{stamp}-{_UNSAFE_IN_FILE_NAME.sub('_', recipient)[:200]}.eml"


class MailFolder:
    """aiosmtpd handler: write each accepted message to `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8")
        received_at = datetime.now(UTC)
        for recipient in envelope.rcpt_tos:
            path = self._write(received_at, recipient, content)
            log.info("message stored", extra={"from": envelope.mail_from, "to": recipient, "file": str(path)})
        return "250 Message accepted for delivery"

    def _write(self, received_at: datetime, recipient: str, content: bytes) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = eml_file_name(received_at, recipient)
        for n in range(1000):
            path = self.folder / (name if n == 0 else name.replace(".eml", f"-{n}.eml"))
            try:
                with path.open("xb") as file:
                    file.write(content)
                return path
            except FileExistsError:
                continue
        raise FileExistsError(f"too many messages named {name}")


async def start_smtp_server(handler: Any, host: str, port: int) -> asyncio.AbstractServer:
    """An aiosmtpd server on the running loop (tests use it with their own handler).
    SMTPUTF8 is on, so addresses with Vietnamese letters are accepted as a real relay would."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(handler, enable_SMTPUTF8=True, hostname="hoithi-dev-smtp"), host=host, port=port
    )


async def serve(host: str, port: int, folder: Path) -> None:
    stop = stop_on_signals()
    server = await start_smtp_server(MailFolder(folder), host, port)
    log.info("development SMTP server listening", extra={"address": f"{host}:{port}", "folder": str(folder)})
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        log.info("development SMTP server stopped")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.notify.dev_smtp", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("DEV_SMTP_HOST") or os.environ.get("BIND_HOST") or "127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SMTP_PORT") or 8025))
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("DEV_MAIL_DIR") or "var/mail"))
    args = parser.parse_args()
    configure_logging("dev-smtp", os.environ.get("LOG_LEVEL", "INFO"))
    asyncio.run(serve(args.host, args.port, args.dir))


if __name__ == "__main__":
    main()
