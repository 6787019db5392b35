"""Outgoing mail over SMTP, configured by one URL (EARSHOT_SMTP_URL).

    smtp://host:25                     plain (a local relay)
    smtp+starttls://user:pass@host:587 STARTTLS, then login
    smtps://user:pass@host:465         TLS from the start
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

SCHEMES = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


class MailConfigError(ValueError):
    pass


@dataclass(frozen=True)
class SmtpTarget:
    scheme: str
    host: str
    port: int
    user: str | None = None
    password: str | None = None

    def __str__(self) -> str:  # never prints the password
        return f"{self.scheme}://{self.user + '@' if self.user else ''}{self.host}:{self.port}"


def parse_smtp_url(url: str) -> SmtpTarget:
    parts = urlsplit(url or "")
    if parts.scheme not in SCHEMES:
        raise MailConfigError(f"EARSHOT_SMTP_URL must start with {', '.join(s + '://' for s in SCHEMES)}")
    if not parts.hostname:
        raise MailConfigError("EARSHOT_SMTP_URL names no host")
    try:
        port = parts.port or SCHEMES[parts.scheme]
    except ValueError as exc:
        raise MailConfigError(f"EARSHOT_SMTP_URL: {exc}") from exc
    return SmtpTarget(parts.scheme, parts.hostname, port, unquote(parts.username) if parts.username else None,
                      unquote(parts.password) if parts.password else None)


class Mailer:
    """One SMTP connection for a batch of messages (opened on enter, closed on exit)."""

    def __init__(self, target: SmtpTarget, timeout: float = 30.0):
        self.target = target
        self.timeout = timeout
        self.smtp: smtplib.SMTP | None = None

    def __enter__(self) -> Mailer:
        t = self.target
        if t.scheme == "smtps":
            self.smtp = smtplib.SMTP_SSL(t.host, t.port, timeout=self.timeout, context=ssl.create_default_context())
        else:
            self.smtp = smtplib.SMTP(t.host, t.port, timeout=self.timeout)
        self.smtp.ehlo()
        if t.scheme == "smtp+starttls":
            self.smtp.starttls(context=ssl.create_default_context())
            self.smtp.ehlo()
        if t.user:
            self.smtp.login(t.user, t.password or "")
        return self

    def send(self, message: EmailMessage) -> None:
        assert self.smtp is not None, "use Mailer as a context manager"
        self.smtp.send_message(message)

    def __exit__(self, *exc: object) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (smtplib.SMTPException, OSError):
                self.smtp.close()
            self.smtp = None
