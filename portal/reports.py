"""Field reports: operators' structured reports, filed on the portal, through the API or in bulk.

A report is a row (its structure, its author) and one message of the `field-reports` list: the
message carries the words, so classification, ticket links, pain point grouping and search treat
a report like any thread. The operator's component is a confirmed component of that thread and
the report counts as production pain (whoever files a field report hurts)."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import nh3
from markdown_it import MarkdownIt
from sqlalchemy import delete, func, select, update
from sqlmodel import Session

from importers.model import ImportProblem, ParsedMessage
from importers.text import clean_text, parse_date

from .models import (
    AuditEvent,
    FieldReport,
    Message,
    MessageComponent,
    MessageRef,
    PainPoint,
    PainPointMember,
    Thread,
    ThreadComponentOverride,
    ThreadPainOverride,
    TicketMention,
    User,
    utcnow,
)

LIST_NAME = "field-reports"
SEVERITIES = ("critical", "high", "normal", "low")
# The operator's words, in the order a report reads; post-mortem sections after the usual ones.
TEXT_FIELDS = {
    "what_happened": "What happened",
    "steps": "Steps to reproduce",
    "expected": "Expected",
    "actual": "Actual",
    "workaround": "Workaround",
    "log_excerpt": "Log excerpt",
    "five_whys": "Five whys",
    "went_well": "What worked well",
    "ideas": "Ideas",
    "acceptance_criteria": "Acceptance criteria",
    "suggestions": "Suggestions",
    "notes": "Notes",
}
SCALAR_FIELDS = ("title", "component", "severity", "release", "distro", "nodes", "instances", "refs", "links")
# What developers (and admins) may change on someone else's report: the triage, not the words.
TRIAGE_FIELDS = frozenset({"component", "severity", "refs"})
ALL_FIELDS = frozenset(SCALAR_FIELDS) | frozenset(TEXT_FIELDS)
LIMITS = {"title": 300, "component": 100, "severity": 20, "release": 100, "distro": 100}
TEXT_LIMIT = 20000
LOG_LIMIT = 50000


class ReportError(ValueError):
    """Validation failed; `errors` maps each field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


# --- validation -----------------------------------------------------------------------------


def _as_text(value: Any) -> str | None:
    if value is None:
        return ""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return clean_text(str(value)).replace("\r\n", "\n").strip()
    return None


def _as_list(value: Any) -> list[str] | None:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v for v in re.split(r"[\s,]+", value) if v]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    return None


def validate(data: dict[str, Any], components: set[str], *, partial: bool = False) -> dict[str, Any]:
    """Clean fields from a form, JSON or a file row. Raises ReportError with a message for each
    bad field; returns only the fields given (all of them when not partial)."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    unknown = sorted(k for k in data if k not in ALL_FIELDS)
    for k in unknown:
        errors[k] = "not a field of a report"
    for name in (*SCALAR_FIELDS, *TEXT_FIELDS):
        if name not in data:
            if partial:
                continue
            value: Any = None
        else:
            value = data[name]
        if name in ("refs", "links"):
            items = _as_list(value)
            if items is None:
                errors[name] = "a list of strings, or one string separated by spaces or commas"
                continue
            if name == "links":
                bad = [u for u in items if not re.match(r"https?://[^\s<>\"]+$", u)]
                if bad:
                    errors[name] = f"links are http(s) addresses: {bad[0][:80]}"
                    continue
            else:
                from .painpoints import PainPointError, normalise_ref

                refs: list[str] = []
                for item in items:
                    try:
                        refs.append(normalise_ref(item))
                    except PainPointError:
                        errors[name] = f"not a ticket reference: {item[:80]} (e.g. lp:1234567, CLOUDSTACK-8697, " \
                                       "a ticket URL)"
                        break
                if name in errors:
                    continue
                items = list(dict.fromkeys(refs))
            out[name] = items[:50]
            continue
        if name in ("nodes", "instances"):
            if value in (None, ""):
                out[name] = None
                continue
            try:
                number = int(str(value).replace(",", "").replace("_", "").strip())
            except ValueError:
                errors[name] = "a whole number"
                continue
            if not 0 <= number <= 10**9:
                errors[name] = "between 0 and 1,000,000,000"
                continue
            out[name] = number
            continue
        text = _as_text(value)
        if text is None:
            errors[name] = "text, not a list or an object"
            continue
        limit = LIMITS.get(name, LOG_LIMIT if name == "log_excerpt" else TEXT_LIMIT)
        if len(text) > limit:
            errors[name] = f"at most {limit:,} characters (this has {len(text):,})"
            continue
        if name == "title":
            text = " ".join(text.split())
            if len(text) < 5:
                errors[name] = "Give the report a title (at least 5 characters)." if not text else \
                    "A title of at least 5 characters."
                continue
        elif name == "component" and text and text not in components:
            errors[name] = f"unknown component {text!r}; choose one of the taxonomy"
            continue
        elif name == "severity":
            text = text.lower() or ("" if partial else "normal")
            if text not in SEVERITIES:
                errors[name] = f"one of {', '.join(SEVERITIES)}"
                continue
        out[name] = text
    if not partial and not errors and not any(out.get(f) for f in TEXT_FIELDS):
        errors["what_happened"] = "Say what happened."
    if errors:
        raise ReportError(errors)
    return out


# --- rendering ------------------------------------------------------------------------------

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")
ALLOWED_TAGS = {"p", "br", "pre", "code", "em", "strong", "ul", "ol", "li", "blockquote", "a", "h3", "h4", "h5",
                "h6", "hr", "table", "thead", "tbody", "tr", "th", "td", "del"}


def render_markdown(text: str) -> str:
    """Markdown to HTML that cannot run: markdown-it with raw HTML off, then nh3's allow-list
    (no attributes but http(s)/mailto links, which get rel=noopener nofollow)."""
    html = _md.render(text or "")
    # Headings inside a report stay below the page's own.
    html = re.sub(r"<(/?)h[12]>", r"<\1h4>", html)
    return nh3.clean(html, tags=ALLOWED_TAGS, attributes={"a": {"href"}}, url_schemes={"http", "https", "mailto"},
                     link_rel="noopener nofollow ugc")


def message_text(fields: dict[str, Any]) -> str:
    """The words of a report as its message carries them (what classification and search read)."""
    facts = []
    if fields.get("component"):
        facts.append(f"Component: {fields['component']}")
    if fields.get("severity"):
        facts.append(f"Severity: {fields['severity']}")
    if fields.get("release"):
        facts.append(f"Release: {fields['release']}")
    if fields.get("distro"):
        facts.append(f"Distribution: {fields['distro']}")
    scale = ", ".join(f"{fields[k]:,} {k}" for k in ("nodes", "instances") if fields.get(k) is not None)
    if scale:
        facts.append(f"Scale: {scale}")
    parts = ["\n".join(facts)] if facts else []
    for name, label in TEXT_FIELDS.items():
        if fields.get(name):
            parts.append(f"{label}:\n{fields[name]}")
    if fields.get("refs"):
        parts.append("Tickets: " + " ".join(fields["refs"]))
    if fields.get("links"):
        parts.append("Links:\n" + "\n".join(fields["links"]))
    return "\n\n".join(parts)


# --- storing --------------------------------------------------------------------------------


def _fields_of(report: FieldReport) -> dict[str, Any]:
    body = json.loads(report.body or "{}")
    return {"title": report.title, "component": report.component, "severity": report.severity,
            "release": report.release, "distro": report.distro, "nodes": report.nodes,
            "instances": report.instances, "refs": [r for r in report.refs.split() if r],
            "links": [u for u in report.links.split() if u], **{k: body.get(k, "") for k in TEXT_FIELDS}}


def _apply(report: FieldReport, fields: dict[str, Any]) -> None:
    body = json.loads(report.body or "{}")
    for name, value in fields.items():
        if name in TEXT_FIELDS:
            if value:
                body[name] = value
            else:
                body.pop(name, None)
        elif name in ("refs", "links"):
            setattr(report, name, " ".join(value))
        else:
            setattr(report, name, value)
    report.body = json.dumps(body, ensure_ascii=False)


def _audit(session: Session, by: str, action: str, report_id: int, **detail: Any) -> None:
    session.add(AuditEvent(by=by, action=action, target_kind="field_report", target_id=report_id,
                           detail=json.dumps(detail, ensure_ascii=False, default=str)))


@dataclass
class Stored:
    """What a change touched, for the search index and the caller's summary."""

    report_ids: list[int] = field(default_factory=list)
    thread_ids: set[int] = field(default_factory=set)
    painpoint_ids: set[int] = field(default_factory=set)
    gone_threads: set[int] = field(default_factory=set)


def _message(report: FieldReport, fields: dict[str, Any], author_name: str, author_email: str) -> ParsedMessage:
    text = message_text(fields)
    raw = f"Subject: {fields['title']}\n\n{text}".encode()
    return ParsedMessage(message_id=report.message_id, subject=fields["title"], author_name=author_name,
                         author_email=author_email, date=report.created_at, body_text=text, new_text=text,
                         quoted_text="", raw=raw, source_file=report.source_file or "portal",
                         position=f"report {report.key}", list_name=LIST_NAME, source_format="field-report",
                         own_refs=list(fields.get("refs") or []))


def _enricher(config: Any) -> Any:
    from .enrich import Enricher

    return Enricher.from_config(config)


def _place(session: Session, report: FieldReport, fields: dict[str, Any], by: str) -> None:
    """The report's thread: its component confirmed by the operator, judged pain."""
    assert report.thread_id is not None
    tid = report.thread_id
    session.execute(delete(ThreadComponentOverride).where(ThreadComponentOverride.thread_id == tid,
                                                          ThreadComponentOverride.state == "confirmed"))
    if fields.get("component"):
        session.add(ThreadComponentOverride(thread_id=tid, component=fields["component"], state="confirmed", by=by))
    if session.execute(select(ThreadPainOverride).where(ThreadPainOverride.thread_id == tid)).first() is None:
        session.add(ThreadPainOverride(thread_id=tid, is_pain=True, by=by))


def create(session: Session, config: Any, fields: dict[str, Any], *, author: User | None = None,
           author_name: str = "", author_email: str = "", key: str | None = None,
           created: datetime | None = None, source: str = "portal", source_file: str = "",
           group_now: bool = True, enricher: Any = None) -> tuple[FieldReport, bool]:
    """Store a validated report; with a key already stored, nothing is added (idempotent
    imports). Returns (report, created). Bulk callers pass one `enricher` for all their reports
    (making one reads the learned model from disk)."""
    from .ingest import Ingest

    if key:
        existing = session.execute(select(FieldReport).where(FieldReport.key == key)).scalars().first()
        if existing is not None:
            return existing, False
    key = key or f"portal-{uuid.uuid4().hex}"
    when = created or utcnow()
    name = author.name if author is not None else author_name
    email = author.email if author is not None else author_email
    report = FieldReport(key=key[:200], author_id=author.id if author is not None else None,
                         author_name=(name or email or "")[:300], title=fields["title"],
                         message_id=f"field-report.{hashlib.sha1(key.encode()).hexdigest()[:24]}@earshot.invalid",
                         source=source, source_file=source_file, created_at=when, updated_at=when)
    _apply(report, fields)
    ingest = Ingest(session, enricher=enricher or _enricher(config))
    ingest.write([_message(report, fields, name, email)])
    report.thread_id = session.execute(select(Message.thread_id).where(
        Message.message_id == report.message_id)).scalar_one()
    session.add(report)
    session.flush()
    assert report.id is not None
    _place(session, report, fields, email or name or "import")
    _audit(session, email or name or "import", "report_create", report.id, title=report.title, source=source)
    if group_now:
        group_reports(session)
    return report, True


def group_reports(session: Session) -> set[int]:
    from .painpoints import group

    return set(group(session).touched)


def update_report(session: Session, config: Any, report: FieldReport, changes: dict[str, Any], by: str) -> None:
    """Change some fields, re-judge the report's message and regroup. Audited with the old values."""
    from .ingest import Ingest, reenrich

    before = _fields_of(report)
    changed = {k: v for k, v in changes.items() if before.get(k) != v}
    if not changed:
        return
    _apply(report, changed)
    report.updated_at = utcnow()
    fields = _fields_of(report)
    text = message_text(fields)
    raw = zlib.compress(f"Subject: {fields['title']}\n\n{text}".encode())
    session.execute(update(Message).where(Message.message_id == report.message_id).values(
        subject=fields["title"], new_text=text, raw=raw))
    pk = session.execute(select(Message.id).where(Message.message_id == report.message_id)).scalar_one()
    reenrich(session, _enricher(config), [pk], own_refs={pk: fields["refs"]})
    if report.thread_id is not None:
        Ingest(session)._refresh_threads({report.thread_id})
        _place(session, report, fields, by)
    session.add(report)
    _audit(session, by, "report_update", report.id or 0,
           before={k: before.get(k) for k in changed}, after=changed)
    group_reports(session)


def delete_report(session: Session, report: FieldReport, by: str) -> Stored:
    """Remove a report and its words (message, thread, its place in a pain point). The audit
    keeps that it was deleted, by whom, and its title; not the text."""
    from .painpoints import refresh

    done = Stored()
    tid = report.thread_id
    pks = list(session.execute(select(Message.id).where(Message.message_id == report.message_id)).scalars())
    if pks:
        for table in (MessageRef, TicketMention, MessageComponent):
            session.execute(delete(table).where(table.message_pk.in_(pks)))  # type: ignore[attr-defined]
        session.execute(delete(Message).where(Message.id.in_(pks)))
    points: list[int] = []
    if tid is not None:
        left = session.execute(select(func.count()).select_from(Message).where(Message.thread_id == tid)).scalar_one()
        points = list(session.execute(select(PainPointMember.pain_point_id).where(
            PainPointMember.thread_id == tid)).scalars())
        if not left:
            session.execute(delete(PainPointMember).where(PainPointMember.thread_id == tid))
            session.execute(delete(ThreadComponentOverride).where(ThreadComponentOverride.thread_id == tid))
            session.execute(delete(ThreadPainOverride).where(ThreadPainOverride.thread_id == tid))
            report.thread_id = None
            session.add(report)
            session.flush()
            session.execute(delete(Thread).where(Thread.id == tid))
            done.gone_threads.add(tid)
        else:
            from .ingest import Ingest

            Ingest(session)._refresh_threads({tid})
            done.thread_ids.add(tid)
    _audit(session, by, "report_delete", report.id or 0, title=report.title)
    session.delete(report)
    session.flush()
    if points:
        # A pain point left without reports is emptied (shown nowhere) by its refresh.
        refresh(session, points)
        done.painpoint_ids.update(points)
    done.painpoint_ids |= group_reports(session)
    return done


# --- reading --------------------------------------------------------------------------------


def may_edit(user: User | None, report: FieldReport) -> bool:
    return user is not None and report.author_id is not None and report.author_id == user.id


def may_triage(user: User | None) -> bool:
    return user is not None and user.role in ("developer", "admin")


def report_dict(session: Session, report: FieldReport, *, html: bool = False) -> dict[str, Any]:
    from .threads import iso, thread_components

    fields = _fields_of(report)
    point = None
    if report.thread_id is not None:
        row = session.execute(select(PainPoint.id, PainPoint.title, PainPoint.status)
                              .join(PainPointMember, PainPointMember.pain_point_id == PainPoint.id)
                              .where(PainPointMember.thread_id == report.thread_id)).first()
        if row is not None:
            point = {"id": row.id, "title": row.title, "status": row.status}
    comps = thread_components(session, [report.thread_id]).get(report.thread_id or 0, []) if report.thread_id else []
    out: dict[str, Any] = {
        "id": report.id, "url": f"/reports/{report.id}", "title": report.title, "author": report.author_name,
        "author_id": report.author_id, "created": iso(report.created_at), "updated": iso(report.updated_at),
        "source": report.source, "thread_id": report.thread_id,
        "components": [c["name"] for c in comps] or ([report.component] if report.component else []),
        "status": point["status"] if point else "unreviewed", "painpoint": point,
        **fields,
    }
    if html:
        out["html"] = {k: render_markdown(fields[k]) for k in TEXT_FIELDS if fields.get(k)}
    return out


def list_reports(session: Session, *, limit: int, offset: int, author_id: int | None = None
                 ) -> tuple[int, list[dict[str, Any]]]:
    q = select(FieldReport)
    if author_id is not None:
        q = q.where(FieldReport.author_id == author_id)
    total = session.execute(select(func.count()).select_from(q.subquery())).scalar_one()
    rows = session.execute(q.order_by(FieldReport.created_at.desc(), FieldReport.id.desc())
                           .limit(limit).offset(offset)).scalars().all()
    items = []
    for r in rows:
        d = report_dict(session, r)
        items.append({k: d[k] for k in ("id", "url", "title", "components", "refs", "status", "created", "author",
                                        "severity", "release")})
    return total, items


def severity_of_threads(session: Session, thread_ids: list[int]) -> dict[int, str]:
    """The severity operators declared in their reports, by thread."""
    out: dict[int, str] = {}
    for chunk in (thread_ids[i:i + 500] for i in range(0, len(thread_ids), 500)):
        for tid, sev in session.execute(select(FieldReport.thread_id, FieldReport.severity)
                                        .where(FieldReport.thread_id.in_(chunk))):
            out[tid] = sev
    return out


# --- bulk import ----------------------------------------------------------------------------


@dataclass
class BulkResult:
    reports_new: int = 0
    already_stored: int = 0
    problems: list[ImportProblem] = field(default_factory=list)
    stored: Stored = field(default_factory=Stored)

    def as_dict(self) -> dict[str, Any]:
        return {"reports_new": self.reports_new, "already_stored": self.already_stored,
                "problems": [p.as_dict() for p in self.problems]}


def _content_key(fields: dict[str, Any], author: str, created: str) -> str:
    blob = json.dumps([fields.get("title"), fields.get("what_happened"), author, created], ensure_ascii=False)
    return "import-" + hashlib.sha256(blob.encode()).hexdigest()[:40]


def import_files(session: Session, config: Any, paths: list[Any], components: set[str], *,
                 now: datetime | None = None, progress: Any = None) -> BulkResult:
    """Import report files. Each bad report (or field) is a problem with its file and position;
    the good ones are stored, each once however often the file is imported. `progress(n)` is
    called after each report read."""
    from importers.reports import RawReport, read_reports

    result = BulkResult()
    enricher = _enricher(config)
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            for item in read_reports(file, now=now):
                if progress is not None:
                    progress(1)
                if isinstance(item, ImportProblem):
                    result.problems.append(item)
                    continue
                assert isinstance(item, RawReport)
                _import_one(session, config, item, components, result, enricher)
    result.stored.painpoint_ids |= group_reports(session)
    session.commit()
    return result


def _import_one(session: Session, config: Any, item: Any, components: set[str], result: BulkResult,
                enricher: Any) -> None:
    raw = dict(item.fields)
    key = str(raw.pop("key", "") or "").strip()
    author = str(raw.pop("author", "") or "").strip()
    created_text = str(raw.pop("created", "") or "").strip()
    created = None
    if created_text:
        created = parse_date(created_text)
        if created is None:
            result.problems.append(ImportProblem(item.source_file, f"{item.position}, field created",
                                                 f"not a date: {created_text[:60]}"))
            return
        if created.tzinfo is not None:
            created = created.astimezone(UTC).replace(tzinfo=None)
    try:
        fields = validate(raw, components)
    except ReportError as exc:
        for name, message in exc.errors.items():
            result.problems.append(ImportProblem(item.source_file, f"{item.position}, field {name}", message))
        return
    name, email = (("", author) if "@" in author else (author, ""))
    if key and not key.startswith("redmine-"):
        key = f"import-{key}"  # the file's own id (JSON, CSV and YAML exports of one report match)
    key = key or _content_key(fields, author, created_text)
    try:
        with session.begin_nested():
            report, new = create(session, config, fields, author_name=name, author_email=email, key=key,
                                 created=created, source=item.source, source_file=item.source_file, group_now=False,
                                 enricher=enricher)
    except Exception as exc:  # noqa: BLE001 - one report that cannot be stored never stops the rest
        result.problems.append(ImportProblem(item.source_file, item.position,
                                             f"could not store: {exc.__class__.__name__}: {exc}"[:500]))
        return
    if new:
        result.reports_new += 1
        result.stored.report_ids.append(report.id or 0)
        if report.thread_id is not None:
            result.stored.thread_ids.add(report.thread_id)
    else:
        result.already_stored += 1


def index_after(session: Session, config: Any, *, report_ids: Iterable[int | None] = (),
                stored: Stored | None = None, removed: Iterable[str] = ()) -> None:
    """Bring search up to date after a report change committed. Search is derived data: a
    failure is logged, never the request's; `flask index rebuild` catches up."""
    import logging

    from .search import reindex

    threads: set[int] = set(stored.thread_ids) if stored else set()
    points: set[int] = set(stored.painpoint_ids) if stored else set()
    ids = [i for i in report_ids if i is not None]
    if ids:
        threads |= {t for t in session.execute(select(FieldReport.thread_id).where(
            FieldReport.id.in_(ids))).scalars() if t is not None}
        points |= set(session.execute(select(PainPointMember.pain_point_id).where(
            PainPointMember.thread_id.in_(threads))).scalars()) if threads else set()
    points |= set(session.info.pop("painpoints_touched", set()) or set())
    try:
        reindex(session, config, thread_ids=sorted(threads), painpoint_ids=sorted(points), removed=list(removed))
    except Exception:  # noqa: BLE001
        logging.getLogger(__name__).exception("search index not updated after report change")
