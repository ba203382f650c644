"""Sending one email over SMTP (aiosmtplib), and turning its failures into plain facts
the domain can classify."""

from __future__ import annotations

import uuid
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, getaddresses

import aiosmtplib

from services.notify.domain import SendError
from services.notify.settings import NotifySettings
from services.notify.templating import RenderedEmail


class Mailer:
    def __init__(self, settings: NotifySettings) -> None:
        self._settings = settings
        self._sender_domain = _domain_of(settings.mail_from)

    def message_id(self, delivery_id: uuid.UUID) -> str:
        # Stable per delivery: a retry after a crash carries the same Message-ID, so a relay
        # (or the recipient's mail server) can drop the duplicate.
        return f"<{delivery_id}@{self._sender_domain}>"

    def build(self, delivery_id: uuid.UUID, recipient: str, email: RenderedEmail) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._settings.mail_from
        message["To"] = recipient
        message["Subject"] = email.subject  # non-ASCII is RFC 2047-encoded as UTF-8
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = self.message_id(delivery_id)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
        message.set_content(email.text, subtype="plain", charset="utf-8")
        message.add_alternative(email.html, subtype="html", charset="utf-8")
        return message

    async def send(self, message: EmailMessage) -> None:
        s = self._settings
        await aiosmtplib.send(
            message,
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password is not None else None,
            start_tls=s.smtp_starttls,
            use_tls=s.smtp_use_tls,
            timeout=s.smtp_timeout_s,
        )


def send_error_of(exc: BaseException) -> SendError:
    """The facts of a failed send: the exception's type name, its SMTP reply code if the
    server answered, and its text."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        # One recipient per message, so "all refused" is that recipient's own answer.
        refused = exc.recipients[0]
        return SendError(type(refused).__name__, refused.code, refused.message)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return SendError(type(exc).__name__, exc.code, exc.message)
    return SendError(type(exc).__name__, None, str(exc) or repr(exc))


def _domain_of(mail_from: str) -> str:
    addresses = getaddresses([mail_from])
    address = addresses[0][1] if addresses else ""
    _, _, domain = address.rpartition("@")
    if not domain:
        raise ValueError(f"MAIL_FROM has no address with a domain: {mail_from!r}")
    # Validates the address the way the email package will when it writes the header.
    Address(addr_spec=address)
    return domain
