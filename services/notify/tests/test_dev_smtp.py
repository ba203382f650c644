"""The development SMTP server: every message a winner would get lands as an .eml file."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import uuid
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

from services.notify.dev_smtp import MailFolder, eml_file_name, start_smtp_server
from services.notify.mailer import Mailer
from services.notify.templating import RenderedEmail
from services.notify.tests.support import SmtpServer, free_port, settings_for

REPO = Path(__file__).resolve().parents[3]
EMAIL = RenderedEmail("Chúc mừng Nguyễn Thị An đạt Giải Nhất", "Kính gửi Nguyễn Thị An,", "<p>Kính gửi</p>")


def test_file_names_carry_time_and_recipient_and_nothing_unsafe() -> None:
    at = datetime(2025, 3, 3, 10, 0, 1, 250_000, tzinfo=UTC)
    assert eml_file_name(at, "an@example.vn") == "20250303T100001.250000Z-an@example.vn.eml"
    assert eml_file_name(at, "../../etc/passwd") == "20250303T100001.250000Z-.._.._etc_passwd.eml"


async def test_each_message_is_stored_once_per_recipient(tmp_path: Path) -> None:
    port = free_port()
    server = await start_smtp_server(MailFolder(tmp_path / "mail"), "127.0.0.1", port)
    mailer = Mailer(settings_for(SmtpServer(port)))
    try:
        for _ in range(2):  # same recipient within the same second: two files, none overwritten
            await mailer.send(mailer.build(uuid.uuid4(), "an@example.vn", EMAIL))
    finally:
        server.close()
        await server.wait_closed()

    files = sorted((tmp_path / "mail").iterdir())
    assert len(files) == 2
    assert all(re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-an@example\.vn(-1)?\.eml", f.name) for f in files)
    message = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert message["Subject"] == "Chúc mừng Nguyễn Thị An đạt Giải Nhất"
    assert message["To"] == "an@example.vn"


async def test_the_command_serves_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    folder = tmp_path / "mail"
    env = {**os.environ, "SMTP_PORT": str(port), "DEV_MAIL_DIR": str(folder)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.notify.dev_smtp", "--host", "127.0.0.1",
        cwd=REPO, env=env, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_for_port(port, timeout_s=10)
        mailer = Mailer(settings_for(SmtpServer(port)))
        await mailer.send(mailer.build(uuid.uuid4(), "binh@example.vn", EMAIL))
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 10)

    assert process.returncode == 0, stderr.decode()
    assert [f.name.endswith("-binh@example.vn.eml") for f in folder.iterdir()] == [True]
    log = stderr.decode()
    assert '"msg":"message stored"' in log and '"to":"binh@example.vn"' in log
    assert '"msg":"development SMTP server stopped"' in log


async def wait_for_port(port: int, *, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
