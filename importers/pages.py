"""Pages operators paste: text copied from a pipermail message page, from an Apache mod_mbox or
Pony Mail "Message view", and from a Redmine ticket page. Each becomes the message it shows plus
the earlier messages its quoted history names."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta

from dateutil.relativedelta import relativedelta

from .model import ParsedMessage
from .quotes import recover_history, split_new_text
from .text import (
    clean_text,
    deobfuscate,
    generated_id,
    list_name_from_address,
    list_name_from_tag,
    normalize_subject,
    parse_author,
    parse_date,
)

_MODMBOX_FIELD_RE = re.compile(r"^(From|Subject|Date|List|To|Cc)\s*:?\s+(.*)$")
_ARCHIVE_TITLE_RE = re.compile(r"^(\S+?)\s+mailing list archives\s*$", re.I)
_PIPERMAIL_DATE_RE = re.compile(
    r"^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\w*\s+\w{3}\s+\d{1,2}\s+\d\d:\d\d:\d\d\s+(?:[A-Z]{2,5}\s+)?\d{4}\s*$"
)
_OBF_EMAIL_RE = re.compile(r"[\w.+\-=]+ at [\w\-]+(?:\.[\w\-]+)+")
_FOOTER_LIST_RE = re.compile(r"More information about the\s+(\S+)\s+mailing\s+list", re.I | re.S)
_REDMINE_ID_RE = re.compile(
    r"^(action|bug|feature|support|task|story|epic|defect|tracker|coordination|issue)\s+#(\d+)\s*(?::\s*(.*))?$",
    re.I,
)
_REDMINE_BY_RE = re.compile(
    r"^(?:Updated|Added)\s+by\s+(.+?)\s+((?:about|over|almost|less than)?\s*.*?\s+ago|\d{4}-\d\d-\d\d.*?)\s*\.?$",
    re.I,
)
_REDMINE_HOST_RE = re.compile(r"https?://([\w.\-]+)/issues/\d+")
_RELATIVE_RE = re.compile(r"(\d+|an?|a few)?\s*(minute|hour|day|month|year)s?", re.I)


def detect_page(text: str) -> str | None:
    """Which kind of pasted page this is, from its content alone."""
    head = [x.strip() for x in text.strip().splitlines()[:40] if x.strip()]
    fields = {m.group(1).lower() for x in head[:16] if (m := _MODMBOX_FIELD_RE.match(x))}
    mod_mbox = any(x.lower().startswith("message view") for x in head[:8]) or (
        bool(head) and bool(_ARCHIVE_TITLE_RE.match(head[0])) and len(fields) >= 3)
    # Pony Mail's view: From:, Subject:, Date: and List: under the list's name.
    pony_mail = {"from", "subject", "date"} <= fields and (
        "list" in fields or any("pony mail" in x.lower() for x in head[:4]))
    if mod_mbox or pony_mail:
        return "modmbox"
    if any(_REDMINE_ID_RE.match(x) for x in head[:12]) and any(_REDMINE_BY_RE.match(x) for x in head[:16]):
        return "redmine"
    if any(_PIPERMAIL_DATE_RE.match(x) for x in head[:6]) and any(_OBF_EMAIL_RE.search(x) for x in head[:6]):
        return "pipermail"
    return None


def parse_page(text: str, *, source_file: str, raw: bytes, list_name: str | None = None,
               now: datetime | None = None) -> list[ParsedMessage]:
    """The messages a pasted page holds, newest first; raises ValueError when unrecognised."""
    text = clean_text(text.replace("\r\n", "\n").lstrip("\ufeff"))
    kind = detect_page(text)
    if kind == "modmbox":
        return _modmbox(text, source_file, raw, list_name)
    if kind == "pipermail":
        return _pipermail(text, source_file, raw, list_name)
    if kind == "redmine":
        return [_redmine(text, source_file, raw, list_name, now or datetime.now(UTC))]
    raise ValueError("not a recognised pasted page (pipermail, mod_mbox/Pony Mail or Redmine)")


def _message(*, subject: str, name: str, email: str, date: datetime | None, body: str, list_name: str | None,
             source_file: str, raw: bytes, kind: str) -> ParsedMessage:
    split = split_new_text(body)
    mid = generated_id("page", list_name or "", email or name.casefold(), date.isoformat() if date else "", subject)
    return ParsedMessage(
        message_id=mid, subject=subject, author_name=name, author_email=email, date=date, body_text=body,
        new_text=split.new_text, quoted_text=split.quoted_text, raw=raw, source_file=source_file,
        position="page", list_name=list_name, message_id_generated=True, headerless=True,
        source_format=f"page-{kind}",
    )


def _with_history(top: ParsedMessage, body: str) -> list[ParsedMessage]:
    """The top message followed by the earlier ones its quotes name, chained by In-Reply-To."""
    result = [top]
    base_subject = normalize_subject(top.subject)
    seen = set()
    for seg in recover_history(body, top.date):
        key = (seg.author_email or seg.author_name.casefold(), seg.date)
        if key in seen or not (seg.author_name or seg.author_email):
            continue
        seen.add(key)
        earlier = _message(
            subject=base_subject, name=seg.author_name, email=seg.author_email, date=seg.date,
            body=seg.text, list_name=top.list_name, source_file=top.source_file, raw=b"",
            kind=top.source_format.removeprefix("page-"),
        )
        earlier.new_text = seg.text
        earlier.quoted_text = ""
        earlier.recovered = True
        earlier.position = f"page, quoted message {len(result)}"
        prev = result[-1]
        earlier.date = _before(earlier.date, prev.date)
        prev.in_reply_to = earlier.message_id
        prev.references = [earlier.message_id]
        result.append(earlier)
    return result


def _before(date: datetime | None, reply_date: datetime | None) -> datetime | None:
    """A quoted message is older than its reply. Attribution dates carry no zone, so one that
    lands after the reply is read as local time: shifted back by whole hours (at most 14)."""
    if date is None or reply_date is None or date <= reply_date:
        return date
    hours = -(-(date - reply_date) // timedelta(hours=1))
    if hours <= 14:
        return date - timedelta(hours=hours)
    return reply_date - timedelta(minutes=1)


def _modmbox(text: str, source_file: str, raw: bytes, list_name: str | None) -> list[ParsedMessage]:
    lines = text.splitlines()
    fields: dict[str, str] = {}
    body_start = 0
    archive = None
    for i, line in enumerate(lines[:60]):
        stripped = line.strip()
        if fields and not _MODMBOX_FIELD_RE.match(stripped) and stripped:
            if {"from", "subject", "date"} <= fields.keys():
                body_start = i
                break
        title = _ARCHIVE_TITLE_RE.match(stripped)
        if title and archive is None:
            archive = title.group(1).lower()
        m = _MODMBOX_FIELD_RE.match(stripped)
        if m and m.group(1).lower() not in fields:
            fields[m.group(1).lower()] = m.group(2).strip()
            body_start = i + 1
    if not {"from", "subject", "date"} <= fields.keys():
        raise ValueError("Message view page without From, Subject and Date")
    body_lines = lines[body_start:]
    while body_lines and body_lines[-1].strip().lower() in ("", "view raw message", "mime", "unnamed text/plain",
                                                            "view this message in plain text"):
        body_lines.pop()
    body = "\n".join(body_lines).strip("\n")
    name, email = parse_author(fields["from"].replace("<>", ""))
    listed = fields.get("list", "")
    lst = (list_name or (list_name_from_address(listed) if listed else None) or archive
           or list_name_from_tag(fields["subject"]))
    top = _message(subject=fields["subject"], name=name, email=email, date=parse_date(fields["date"]), body=body,
                   list_name=lst, source_file=source_file, raw=raw, kind="modmbox")
    return _with_history(top, body)


def _pipermail(text: str, source_file: str, raw: bytes, list_name: str | None) -> list[ParsedMessage]:
    lines = text.splitlines()
    nonblank = [(i, x.strip()) for i, x in enumerate(lines) if x.strip()]
    date_idx = next(n for n, (_i, x) in enumerate(nonblank[:6]) if _PIPERMAIL_DATE_RE.match(x))
    head = [x for _i, x in nonblank[:date_idx]]
    subject = head[0] if head else ""
    author_text = " ".join(head[1:])
    found = _OBF_EMAIL_RE.search(author_text)
    email_text = found.group(0) if found else ""
    name = author_text.replace(email_text, "").strip()
    name, email = parse_author(f"{name} <{deobfuscate(email_text)}>" if email_text else name)
    date = parse_date(nonblank[date_idx][1])
    body = "\n".join(lines[nonblank[date_idx][0] + 1:]).strip("\n")
    footer = _FOOTER_LIST_RE.search(text)
    lst = list_name or list_name_from_tag(subject) or (footer.group(1).lower() if footer else None)
    body = deobfuscate(body)
    top = _message(subject=subject, name=name, email=email, date=date, body=body, list_name=lst,
                   source_file=source_file, raw=raw, kind="pipermail")
    return _with_history(top, body)


def _relative_date(text: str, now: datetime) -> datetime | None:
    absolute = parse_date(text) if re.match(r"\d{4}-\d\d-\d\d", text) else None
    if absolute:
        return absolute
    m = _RELATIVE_RE.search(text)
    if not m:
        return None
    count_text = (m.group(1) or "1").lower()
    count = 1 if count_text in ("a", "an") else 3 if count_text == "a few" else int(count_text)
    unit = m.group(2).lower()
    if unit == "month":
        return (now - relativedelta(months=count)).replace(second=0, microsecond=0)
    if unit == "year":
        return (now - relativedelta(years=count)).replace(second=0, microsecond=0)
    return (now - timedelta(**{f"{unit}s": count})).replace(second=0, microsecond=0)


def _redmine(text: str, source_file: str, raw: bytes, list_name: str | None, now: datetime) -> ParsedMessage:
    lines = text.splitlines()
    ticket = title = None
    author = ""
    date = None
    body_start = 0
    for i, line in enumerate(lines[:40]):
        stripped = line.strip()
        m = _REDMINE_ID_RE.match(stripped)
        if m and ticket is None:
            ticket = (m.group(1).capitalize(), m.group(2))
            title = (m.group(3) or "").strip() or None
            continue
        by = _REDMINE_BY_RE.match(stripped)
        if by and ticket is not None:
            author = by.group(1).strip()
            date = _relative_date(by.group(2), now)
            body_start = i + 1
            break
    if ticket is None:
        raise ValueError("Redmine page without a ticket number")
    body_lines = lines[body_start:]
    while body_lines and body_lines[-1].strip() in ("", "Back"):
        body_lines.pop()
    body = "\n".join(body_lines).strip("\n")
    hosts = Counter(_REDMINE_HOST_RE.findall(text))
    lst = list_name or (hosts.most_common(1)[0][0] if hosts else "redmine")
    subject = f"{ticket[0]} #{ticket[1]}" + (f": {title}" if title else "")
    msg = _message(subject=subject, name=author, email="", date=date, body=body, list_name=lst,
                   source_file=source_file, raw=raw, kind="redmine")
    # The ticket number names the message, not the paste time: re-pasting it matches.
    msg.message_id = generated_id("redmine", lst, ticket[1])
    msg.own_refs = [f"redmine:{int(ticket[1])}"]
    msg.date_trusted = False  # relative to the paste, not the ticket
    msg.new_text = body.strip()
    msg.quoted_text = ""
    return msg
