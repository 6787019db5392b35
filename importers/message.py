"""Turn one raw RFC 5322 message into a normalised ParsedMessage."""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from collections.abc import Callable
from datetime import datetime
from email.header import decode_header, make_header
from email.message import Message

from .model import ParsedMessage
from .quotes import split_new_text
from .text import (
    clean_text,
    deobfuscate,
    generated_id,
    html_to_text,
    list_name_from_id,
    message_ids,
    parse_author,
    parse_date,
    repair_message_id,
)

_FALLBACK_CHARSETS = ("utf-8", "cp1252")
_RECEIVED_DATE_RE = re.compile(r";\s*([^;]+)$")
_SURROGATE_RE = re.compile("[\udc80-\udcff]")
_FOLDED_RE = re.compile(r"\s*\n\s*")


def decode_header_value(value: object) -> str:
    """A header as text, whatever encoded words or raw 8-bit bytes it holds."""
    if value is None:
        return ""
    if not isinstance(value, str):
        value = str(value)
    if "=?" not in value:  # no encoded words: decode_header would hand the value back as it is
        text = value
    else:
        try:
            text = str(make_header(decode_header(value)))
        except (UnicodeError, LookupError, ValueError, email.errors.HeaderParseError):
            text = value
    # compat32 hands raw 8-bit header bytes over as surrogates; read them as UTF-8 or Latin-1.
    if not text.isascii() and _SURROGATE_RE.search(text):
        data = text.encode("utf-8", "surrogateescape")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("cp1252", "replace")
    return clean_text(_FOLDED_RE.sub(" ", text)).strip()


def decode_payload(part: Message) -> str:
    """A part's body as text, trying the declared charset, then UTF-8, then Windows-1252."""
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - a broken transfer encoding must not stop the import
        data = None
    if data is None:
        payload = part.get_payload()
        return clean_text(payload) if isinstance(payload, str) else ""
    if not isinstance(data, bytes):
        return clean_text(str(data))
    charsets = []
    try:
        declared = part.get_content_charset()
    except Exception:  # noqa: BLE001
        declared = None
    if declared:
        charsets.append(declared)
    charsets.extend(_FALLBACK_CHARSETS)
    for charset in charsets:
        try:
            return clean_text(data.decode(charset))
        except (UnicodeDecodeError, LookupError):
            continue
    return clean_text(data.decode("latin-1"))


def body_text(msg: Message) -> str:
    """The readable body: text/plain parts, or HTML turned to text when there is no plain part."""
    plain: list[str] = []
    html: list[str] = []
    for part in msg.walk() if msg.is_multipart() else [msg]:
        if part.is_multipart():
            continue
        disposition = str(part.get("Content-Disposition") or "").lower()
        if disposition.startswith("attachment"):
            continue
        try:
            ctype = part.get_content_type()
        except Exception:  # noqa: BLE001
            ctype = "text/plain"
        if ctype in ("text/plain", "text/enriched") or (ctype == "text/plain" and not disposition):
            plain.append(decode_payload(part))
        elif ctype == "text/html":
            html.append(decode_payload(part))
    if plain and any(p.strip() for p in plain):
        return "\n\n".join(p for p in plain if p.strip())
    if html:
        return "\n\n".join(html_to_text(h) for h in html)
    return ""


def parse_raw_message(
    raw: bytes,
    *,
    source_file: str,
    position: str,
    source_format: str,
    envelope_date: str | None = None,
    obfuscated: bool = False,
    list_name: str | None = None,
) -> ParsedMessage:
    """Parse one message's bytes; raises ValueError when nothing usable is there."""
    if not raw.strip():
        raise ValueError("empty message")
    # Some saved messages open with a line of spaces before the headers.
    msg = email.message_from_bytes(raw.lstrip(b" \t\r\n"), policy=email.policy.compat32)
    if not msg.keys():
        raise ValueError("no headers")
    header = _first_headers(msg)
    subject = decode_header_value(header("subject"))
    from_value = decode_header_value(header("from") or header("sender") or header("reply-to"))
    if obfuscated:
        from_value = deobfuscate(from_value)
    author_name, author_email = parse_author(from_value)
    date, date_trusted = _message_date(msg, header("date"), envelope_date)
    text = body_text(msg)
    if obfuscated:
        text = deobfuscate(text)
    split = split_new_text(text)
    in_reply_to_ids = message_ids(decode_header_value(header("in-reply-to")))
    references = message_ids(decode_header_value(header("references")))
    message_id = repair_message_id(decode_header_value(header("message-id")))
    generated = message_id is None
    if message_id is None:
        body_hash = hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()
        message_id = generated_id(author_email or author_name, date.isoformat() if date else "", subject, body_hash)
    name = list_name or list_name_from_id(decode_header_value(header("list-id")))
    in_reply_to = in_reply_to_ids[-1] if in_reply_to_ids else None
    if in_reply_to == message_id:
        in_reply_to = None
    refs = [r for r in references if r != message_id]
    if in_reply_to and in_reply_to not in refs:
        refs.append(in_reply_to)
    if not from_value and not subject and not text.strip():
        raise ValueError("no sender, subject or readable body")
    return ParsedMessage(
        message_id=message_id,
        subject=subject,
        author_name=author_name,
        author_email=author_email,
        date=date,
        body_text=text,
        new_text=split.new_text,
        quoted_text=split.quoted_text,
        raw=raw,
        source_file=source_file,
        position=position,
        in_reply_to=in_reply_to,
        references=refs,
        list_name=name,
        message_id_generated=generated,
        source_format=source_format,
        date_trusted=date_trusted,
    )


def _first_headers(msg: Message) -> Callable[[str], object]:
    """msg.get for lower-case names, from one pass over the headers (msg.get scans all of them,
    lower-casing each name, every time it is asked)."""
    first: dict[str, tuple[str, str]] = {}
    for name, value in msg.raw_items():
        first.setdefault(name.lower(), (name, value))
    fetch = msg.policy.header_fetch_parse

    def get(name: str) -> object:
        found = first.get(name)
        return None if found is None else fetch(*found)

    return get


def _message_date(msg: Message, date_header: object, envelope_date: str | None) -> tuple[datetime | None, bool]:
    """Date header, else the newest Received stamp, else the mbox envelope's date; and whether
    it was the message's own Date."""
    date = parse_date(decode_header_value(date_header))
    if date:
        return date, True
    for received in msg.get_all("Received") or []:
        m = _RECEIVED_DATE_RE.search(decode_header_value(received))
        if m:
            date = parse_date(m.group(1))
            if date:
                return date, False
    return (parse_date(envelope_date) if envelope_date else None), False
