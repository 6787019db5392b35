"""Followed sources: feeds and remote list archives, polled politely and incrementally.

Every URL a source reads is fetched with a conditional GET (its ETag and Last-Modified kept in
`source_document`), so an unchanged month or feed costs a 304 and nothing else. What changed is
saved under the data folder and imported through the same pipeline as `flask import` (threading,
duplicates, problems with file and position, pain points), so a second poll of the same content
stores nothing even when a server ignores conditional requests.

    feed        RSS, Atom or JSON Feed (feedparser); each entry becomes a message of the list
    tracker     a feed of tickets (Launchpad, Redmine, GitHub, Jira): entries update tickets
    pipermail   a Mailman 2 list URL: its index, then each month's .txt / .txt.gz
    ponymail    a Pony Mail host and list@domain: each month's mbox (api/mbox.lua)
    hyperkitty  a HyperKitty list URL (.../archives/list/NAME@DOMAIN/): each month's export
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlparse

from sqlalchemy import select
from sqlmodel import Session

from importers.refs import extract_refs, tracker_of
from importers.text import html_to_text

from .fetch import Fetched, Fetcher, FetchError
from .models import ROLES, SOURCE_KINDS, Source, SourceDocument, utcnow

_EVERY_RE = re.compile(r"^(\d+)\s*([mhd])$")
_MONTH_LINK_RE = re.compile(r"""href=["']?([^"'>\s]*?(\d{4})-([A-Za-z]+)\.txt(?:\.gz)?)["'>\s]""", re.I)
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


class SourceError(ValueError):
    """A source definition that cannot be used; `field` names what is wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def parse_every(value: str) -> int:
    """"30m", "1h", "2d" in minutes (at least 5)."""
    m = _EVERY_RE.match((value or "").strip().lower())
    if not m:
        raise SourceError("every", "an interval such as 30m, 1h or 1d")
    minutes = int(m.group(1)) * {"m": 1, "h": 60, "d": 1440}[m.group(2)]
    if minutes < 5:
        raise SourceError("every", "at least 5m: be polite to the archive")
    return minutes


def check_source(kind: str, url: str, list_name: str, role: str, since: str = "") -> None:
    if kind not in SOURCE_KINDS:
        raise SourceError("kind", f"one of {', '.join(SOURCE_KINDS)}")
    parts = urlparse(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceError("url", "an http or https URL")
    if kind != "tracker" and not list_name.strip():
        raise SourceError("list", "the list the messages belong to")
    if kind == "ponymail" and "@" not in list_name:
        raise SourceError("list", "Pony Mail lists are named list@domain")
    if role not in ROLES:
        raise SourceError("role", f"one of {', '.join(ROLES)}")
    if since and not re.match(r"^\d{4}-(0[1-9]|1[0-2])$", since):
        raise SourceError("since", "a month, YYYY-MM")


def add_source(session: Session, *, name: str, kind: str, url: str, list_name: str = "", role: str = "unknown",
               every: str = "1h", since: str = "") -> Source:
    name = (name or list_name or urlparse(url).hostname or "").strip()
    if not name or len(name) > 200:
        raise SourceError("name", "a short name for the source")
    check_source(kind, url, list_name, role, since)
    if session.execute(select(Source.id).where(Source.name == name)).first():
        raise SourceError("name", f"a source named {name} exists")
    source = Source(name=name, kind=kind, url=url.strip(), list_name=list_name.strip().lower(), role=role,
                    every_minutes=parse_every(every), since=since)
    session.add(source)
    session.flush()
    return source


@dataclass
class PollResult:
    source: str
    status: str = "unchanged"  # new | unchanged | problems | failed
    messages_new: int = 0
    duplicates: int = 0
    tickets: int = 0
    fetched: int = 0
    not_modified: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "status": self.status, "unchanged": self.status == "unchanged",
                "messages_new": self.messages_new, "duplicates": self.duplicates, "tickets_updated": self.tickets,
                "fetched": self.fetched, "not_modified": self.not_modified, "problems": self.problems}


def fetcher_from(config: Any) -> Fetcher:
    hosts = {h.strip() for h in str(config.get("FETCH_ALLOW_HOSTS") or "").split(",") if h.strip()}
    return Fetcher(allow_hosts=hosts or None, host_interval=float(config.get("FETCH_HOST_INTERVAL", 1.0)),
                   max_bytes=int(config.get("FETCH_MAX_BYTES", 50 * 1024 * 1024)))


def _document(session: Session, source: Source, url: str) -> SourceDocument:
    doc = session.execute(select(SourceDocument).where(SourceDocument.source_id == source.id,
                                                       SourceDocument.url == url)).scalars().first()
    return doc or SourceDocument(source_id=source.id or 0, url=url[:2000])


def _fetch(session: Session, fetcher: Fetcher, source: Source, url: str, result: PollResult) -> Fetched | None:
    """The body when it changed since the last poll; None when the server said 304 or the bytes
    are the ones seen last time."""
    doc = _document(session, source, url)
    got = fetcher.get(url, etag=doc.etag, last_modified=doc.last_modified)
    if got.unchanged:
        result.not_modified += 1
        return None
    result.fetched += 1
    digest = hashlib.sha256(got.body).hexdigest()
    same = digest == doc.sha256
    doc.etag, doc.last_modified, doc.sha256, doc.fetched_at = got.etag[:500], got.last_modified[:100], digest, utcnow()
    session.add(doc)
    return None if same else got


def _months(since: str, now: datetime) -> list[str]:
    start = since or f"{(now - timedelta(days=31)):%Y-%m}"
    y, m = int(start[:4]), int(start[5:7])
    out = []
    while (y, m) <= (now.year, now.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def archive_urls(source: Source, fetcher: Fetcher, session: Session, result: PollResult, now: datetime
                 ) -> list[tuple[str, str]]:
    """(url, file name to save as) of every archive file the source consists of."""
    if source.kind == "pipermail":
        index_url = source.url if source.url.endswith("/") or source.url.endswith(".html") else source.url + "/"
        doc = _document(session, source, index_url)
        got = fetcher.get(index_url, etag=doc.etag, last_modified=doc.last_modified)
        if got.unchanged:
            result.not_modified += 1
            body = (Path(_folder(source)) / "index.html").read_bytes() if (Path(_folder(source)) / "index.html"
                                                                             ).exists() else b""
        else:
            result.fetched += 1
            body = got.body
            doc.etag, doc.last_modified, doc.fetched_at = got.etag[:500], got.last_modified[:100], utcnow()
            session.add(doc)
            _folder(source).mkdir(parents=True, exist_ok=True)
            (_folder(source) / "index.html").write_bytes(body)
        seen: dict[str, str] = {}
        for href, _year, month in _MONTH_LINK_RE.findall(body.decode("utf-8", "replace")):
            if month.capitalize() in MONTHS:
                url = urljoin(index_url, href)
                seen.setdefault(url, url.rsplit("/", 1)[-1])
        return list(seen.items())
    if source.kind == "ponymail":
        base = source.url.rstrip("/")
        return [(f"{base}/api/mbox.lua?list={quote(source.list_name)}&date={month}", f"{month}.mbox")
                for month in _months(source.since, now)]
    if source.kind == "hyperkitty":
        base = source.url.rstrip("/")
        name = source.list_name.split("@", 1)[0]
        out = []
        for month in _months(source.since, now):
            y, m = int(month[:4]), int(month[5:])
            end = f"{y + (m == 12):04d}-{1 if m == 12 else m + 1:02d}-01"
            out.append((f"{base}/export/{name}-{month}.mbox.gz?start={month}-01&end={end}", f"{month}.mbox.gz"))
        return out
    return []


def _folder(source: Source) -> Path:
    from flask import current_app

    return Path(str(current_app.config["DATA_DIR"])) / "sources" / str(source.id)


@dataclass
class Entry:
    ident: str
    link: str
    title: str
    content: str
    when: datetime | None
    author: str


def read_feed(body: bytes) -> tuple[list[Entry], str, str | None]:
    """Entries of an RSS, Atom (feedparser) or JSON Feed document; (entries, feed title, problem)."""
    text = body.lstrip()[:1]
    if text == b"{":
        return _read_json_feed(body)
    import feedparser

    parsed = feedparser.parse(body)
    if not parsed.entries:
        reason = str(parsed.get("bozo_exception") or "no entries") if parsed.get("bozo") else "no entries"
        return [], "", f"not a feed Earshot can read: {reason}"
    entries = []
    for e in parsed.entries:
        when = e.get("published_parsed") or e.get("updated_parsed")
        content = (e.content[0].get("value", "") if e.get("content") else "") or e.get("summary", "")
        entries.append(Entry(e.get("id") or e.get("link") or e.get("title") or "", e.get("link") or "",
                             e.get("title") or "", content, datetime(*when[:6]) if when else None,
                             e.get("author") or ""))
    return entries, parsed.feed.get("title") or "", None


def _read_json_feed(body: bytes) -> tuple[list[Entry], str, str | None]:
    import json

    from importers.text import parse_date

    try:
        data = json.loads(body)
    except ValueError as exc:
        return [], "", f"not a feed Earshot can read: invalid JSON ({exc})"
    if not isinstance(data, dict) or not str(data.get("version", "")).startswith("https://jsonfeed.org/version/"):
        return [], "", "not a feed Earshot can read: JSON without a JSON Feed version"
    entries = []
    for item in data.get("items") or []:
        if not isinstance(item, dict):
            continue
        authors = item.get("authors") or ([item["author"]] if isinstance(item.get("author"), dict) else [])
        author = next((a.get("name", "") for a in authors if isinstance(a, dict)), "")
        when = parse_date(str(item.get("date_published") or item.get("date_modified") or "")) or None
        entries.append(Entry(str(item.get("id") or item.get("url") or ""), str(item.get("url") or ""),
                             str(item.get("title") or ""),
                             str(item.get("content_html") or item.get("content_text") or item.get("summary") or ""),
                             when.replace(tzinfo=None) if when and when.tzinfo is None else
                             (when.astimezone(UTC).replace(tzinfo=None) if when else None), author))
    if not entries:
        return [], "", "not a feed Earshot can read: no items"
    return entries, str(data.get("title") or ""), None


def feed_to_mbox(body: bytes, list_name: str, feed_url: str) -> tuple[bytes, int, str | None]:
    """The entries of a feed as an mbox of messages of the list; (mbox, entries, problem)."""
    entries, feed_title, problem = read_feed(body)
    if problem:
        return b"", 0, problem
    host = urlparse(feed_url).hostname or "feed.invalid"
    chunks = []
    for entry in entries:
        mid = f"<feed-{hashlib.sha1(f'{feed_url}|{entry.ident or entry.title}'.encode()).hexdigest()[:24]}@{host}>"
        author = (entry.author or feed_title or host).replace("\n", " ")[:200]
        text = html_to_text(entry.content) if "<" in entry.content else entry.content
        title = (entry.title or "(no title)").replace("\n", " ")
        headers = [f"From: {_quote_name(author)} <feed@{host}>", f"Subject: {title}", f"Message-ID: {mid}",
                   f"List-Id: <{list_name}>", "Content-Type: text/plain; charset=utf-8"]
        if entry.when:
            headers.append(f"Date: {format_datetime(entry.when.replace(tzinfo=UTC))}")
        body_text = f"{text}\n\n{entry.link}\n" if entry.link else f"{text}\n"
        lines = [(">" + line if line.lstrip(">").startswith("From ") else line) for line in body_text.split("\n")]
        chunks.append("From feed@earshot Mon Jan  1 00:00:00 2024\n" + "\n".join(headers) + "\n\n" + "\n".join(lines))
    return "\n".join(chunks).encode("utf-8"), len(entries), None


def _quote_name(name: str) -> str:
    return '"' + name.replace("\\", "").replace('"', "'") + '"'


def feed_tickets(body: bytes) -> tuple[list[Any], str | None]:
    """Ticket updates from a tracker's feed: each entry's link or title names the ticket."""
    from importers.trackers import TicketRecord

    entries, _title, problem = read_feed(body)
    if problem:
        return [], problem
    records = []
    for entry in entries:
        refs = extract_refs(f"{entry.link} {entry.title}")
        if not refs:
            continue
        title = re.sub(r"^\s*(?:Bug\s*#?\d+|#\d+|[A-Z][A-Z0-9]+-\d+)\s*[:\-]\s*", "", entry.title)
        records.append(TicketRecord(ref=refs[0], tracker=tracker_of(refs[0]), title=title[:500], url=entry.link,
                                    updated=entry.when))
    return records, None


def poll(session: Session, source: Source, fetcher: Fetcher, *, now: datetime | None = None) -> PollResult:
    """Poll one source: fetch what changed, import it, record the outcome on the source."""
    from .cli import run_import
    from .ingest import set_list_role

    now = now or utcnow()
    result = PollResult(source.name)
    try:
        if source.kind in ("feed", "tracker"):
            got = _fetch(session, fetcher, source, source.url, result)
            files: list[Path] = []
            if got is not None and source.kind == "feed":
                mbox, _n, problem = feed_to_mbox(got.body, source.list_name, source.url)
                if problem:
                    result.problems.append({"file": source.url, "where": "feed", "reason": problem})
                else:
                    files.append(_save(source, "feed.mbox", mbox))
            elif got is not None:
                from .painpoints import refresh_all
                from .tickets import store_tracker_items

                records, problem = feed_tickets(got.body)
                if problem:
                    result.problems.append({"file": source.url, "where": "feed", "reason": problem})
                stored = store_tracker_items(session, records)
                result.tickets = stored.tickets_new + stored.tickets_updated
                refresh_all(session)
                session.commit()
                from .cli import _reindex

                why = _reindex(painpoint_ids=None, tickets=True).get("index_problem")
                if why:
                    result.problems.append({"file": source.url, "where": "search index", "reason": str(why)})
        else:
            files = []
            for url, name in archive_urls(source, fetcher, session, result, now):
                try:
                    got = _fetch(session, fetcher, source, url, result)
                except FetchError as exc:  # one month failing never stops the others
                    result.problems.append({"file": url, "where": "fetch", "reason": str(exc)})
                    continue
                if got is not None:
                    files.append(_save(source, name, got.body))
        session.commit()
        if files:
            if source.role in ("operator", "developer"):
                set_list_role(session, source.list_name, source.role)
                session.commit()
            summary = run_import(files, list_name=source.list_name or None)
            result.messages_new = int(summary["messages_new"])  # type: ignore[call-overload]
            result.duplicates = int(summary["duplicates"])  # type: ignore[call-overload]
            result.problems += list(summary["problems"])  # type: ignore[call-overload]
            source.last_run_id = summary.get("run_id")  # type: ignore[assignment]
        result.status = "problems" if result.problems else ("new" if result.messages_new or result.tickets
                                                            else "unchanged")
    except FetchError as exc:
        session.rollback()
        result.status = "failed"
        result.problems.append({"file": source.url, "where": "fetch", "reason": str(exc)})
    source = session.get(Source, source.id) or source
    source.last_run_at, source.last_status = now, result.status
    source.last_error = "; ".join(p["reason"] for p in result.problems)[:4000]
    source.messages_total += result.messages_new
    session.add(source)
    session.commit()
    return result


def _save(source: Source, name: str, body: bytes) -> Path:
    folder = _folder(source)
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "download"
    path = folder / safe
    path.write_bytes(body)
    return path


def due(session: Session, now: datetime) -> list[Source]:
    sources = session.execute(select(Source).where(Source.enabled.is_(True)).order_by(Source.id)).scalars()
    return [s for s in sources if s.last_run_at is None or s.last_run_at + timedelta(minutes=s.every_minutes) <= now]
