"""Reading threads back: the shape the API and the pages share."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import func, literal, select
from sqlmodel import Session

from importers.text import parse_date

from .classify import aggregate, load_taxonomy
from .models import (
    MailingList,
    Message,
    MessageComponent,
    Person,
    Thread,
    ThreadComponentOverride,
    ThreadPainOverride,
    Ticket,
    TicketMention,
)


class BadParameter(ValueError):
    """A query parameter a caller got wrong; names the parameter."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def iso(dt: datetime | None) -> str | None:
    return dt.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z") if dt else None


def parse_when(name: str, value: str | None) -> datetime | None:
    """A since/until bound: a date or date-time; naive UTC."""
    if not value:
        return None
    parsed = parse_date(value) if any(c.isdigit() for c in value) else None
    if parsed is None:
        raise BadParameter(name, "expected a date such as 2015-09-28 or 2015-09-28T11:49:36Z")
    return parsed.replace(tzinfo=None)


def parse_int(name: str, value: str | None, default: int, lo: int, hi: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise BadParameter(name, "expected a whole number") from None
    if not lo <= number <= hi:
        raise BadParameter(name, f"expected a number from {lo} to {hi}")
    return number


def _taxonomy() -> Any:
    return load_taxonomy(current_app.config.get("TAXONOMY") or None if has_app_context() else None)


def list_threads(session: Session, *, list_name: str | None = None, since: datetime | None = None,
                 until: datetime | None = None, component: str | None = None, pain: bool | None = None,
                 limit: int = 25, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
    """Threads newest first, filtered by list, component, pain and activity between since and until."""
    q = select(Thread, MailingList.name).join(MailingList, MailingList.id == Thread.list_id)
    if component:
        q = q.where(Thread.id.in_(threads_with_component(component)))
    if pain is not None:
        painful = painful_threads(_taxonomy().pain.threshold)
        q = q.where(Thread.id.in_(painful) if pain else Thread.id.not_in(painful))
    if list_name:
        q = q.where(MailingList.name == list_name.lower())
    if since:
        q = q.where(Thread.__table__.c.last_date >= since)
    if until:
        q = q.where(Thread.__table__.c.first_date <= until)
    total = session.execute(select(func.count()).select_from(q.subquery())).scalar_one()
    rows = session.execute(q.order_by(Thread.last_date.desc().nulls_last(), Thread.id.desc())
                           .limit(limit).offset(offset)).all()
    return total, _thread_dicts(session, rows)


def _thread_dicts(session: Session, rows: list[Any]) -> list[dict[str, Any]]:
    ids = [t.id for t, _ in rows]
    people, comps, refs = participants(session, ids), thread_components(session, ids), thread_refs(session, ids)
    pains = thread_pain(session, ids)
    return [{**thread_dict(t, name, people.get(t.id, []), comps.get(t.id, []), refs.get(t.id, [])),
             "pain": pains.get(t.id, NO_PAIN)} for t, name in rows]


NO_PAIN = {"is_pain": False, "score": 0.0, "reasons": [], "source": "rules"}


def painful_threads(threshold: float) -> Any:
    """Thread ids judged production pain: a message reached the threshold, or a developer said so
    (and no developer said otherwise)."""
    judged = select(Message.thread_id).where(Message.pain_score >= threshold)
    said_yes = select(ThreadPainOverride.thread_id).where(ThreadPainOverride.is_pain.is_(True))
    said_no = select(ThreadPainOverride.thread_id).where(ThreadPainOverride.is_pain.is_(False))
    return select(Thread.id).where((Thread.id.in_(judged) | Thread.id.in_(said_yes)) & Thread.id.not_in(said_no))


def thread_pain(session: Session, thread_ids: list[int | None]) -> dict[int, dict[str, Any]]:
    """Each thread's pain: its most painful message's score and reasons, or a developer's word."""
    if not thread_ids:
        return {}
    threshold = _taxonomy().pain.threshold
    best: dict[int, tuple[float, str]] = {}
    for tid, score, reasons in session.execute(select(Message.thread_id, Message.pain_score, Message.pain_reasons)
                                               .where(Message.thread_id.in_(thread_ids))):
        if tid not in best or score > best[tid][0]:
            best[tid] = (score, reasons)
    out = {tid: {"is_pain": score >= threshold, "score": score, "reasons": json.loads(reasons or "[]"),
                 "source": "rules"} for tid, (score, reasons) in best.items()}
    for o in session.execute(select(ThreadPainOverride).where(ThreadPainOverride.thread_id.in_(thread_ids))).scalars():
        base = out.get(o.thread_id, dict(NO_PAIN))
        out[o.thread_id] = {**base, "is_pain": o.is_pain, "source": "manual",
                            "reasons": [f"{'pain' if o.is_pain else 'talk'} by {o.by}"]}
    return out


def threads_with_component(component: str) -> Any:
    """Thread ids the classifier or a developer put in a component (children count for parents),
    less those a developer rejected."""
    like = component.rstrip("/") + "/%"
    judged = (select(Message.thread_id).join(MessageComponent, MessageComponent.message_pk == Message.id)
              .where((MessageComponent.component == component) | MessageComponent.component.like(like)))
    confirmed = select(ThreadComponentOverride.thread_id).where(
        ThreadComponentOverride.component == component, ThreadComponentOverride.state == "confirmed")
    rejected = select(ThreadComponentOverride.thread_id).where(
        ThreadComponentOverride.component == component, ThreadComponentOverride.state == "rejected")
    return select(Thread.id).where((Thread.id.in_(judged) | Thread.id.in_(confirmed)) & Thread.id.not_in(rejected))


def thread_components(session: Session, thread_ids: list[int | None], *,
                      reasons: bool = True) -> dict[int, list[dict[str, Any]]]:
    """Each thread's components: the best judgment over its messages, with developers' corrections
    applied (confirmed ones added, rejected ones removed). `reasons=False` leaves the judgments'
    reasons out (empty lists): callers that want only the names (grouping, the search index) need
    not decode every judgment's JSON."""
    if not thread_ids:
        return {}
    per_thread: dict[int, list[tuple[str, float, list[str]]]] = {}
    versions: dict[int, str] = {}
    why = MessageComponent.reasons if reasons else literal("")
    rows = session.execute(
        select(Message.thread_id, MessageComponent.component, MessageComponent.confidence, why,
               MessageComponent.ruleset_version)
        .join(Message, Message.id == MessageComponent.message_pk).where(Message.thread_id.in_(thread_ids))).all()
    for tid, comp, conf, said, version in rows:
        per_thread.setdefault(tid, []).append((comp, conf, json.loads(said or "[]") if reasons else []))
        versions[tid] = version
    ratio = _taxonomy().secondary_ratio
    best: dict[int, dict[str, dict[str, Any]]] = {
        tid: {c["name"]: {**c, "source": "rules", "ruleset_version": versions[tid]} for c in aggregate(js, ratio)}
        for tid, js in per_thread.items()
    }
    for o in session.execute(select(ThreadComponentOverride).where(
            ThreadComponentOverride.thread_id.in_(thread_ids))).scalars():
        comps = best.setdefault(o.thread_id, {})
        if o.state == "rejected":
            comps.pop(o.component, None)
        else:
            comps[o.component] = {"name": o.component, "confidence": 1.0, "reasons": [f"confirmed by {o.by}"],
                                  "source": "manual", "ruleset_version": None}
    return {tid: sorted(c.values(), key=lambda x: (x["source"] != "manual", -x.get("support", 1.0)))
            for tid, c in best.items()}


def thread_refs(session: Session, thread_ids: list[int | None]) -> dict[int, list[str]]:
    """Ticket references each thread's messages wrote, in order of first mention."""
    if not thread_ids:
        return {}
    out: dict[int, list[str]] = {}
    rows = session.execute(
        select(Message.thread_id, TicketMention.ref).join(Message, Message.id == TicketMention.message_pk)
        .where(Message.thread_id.in_(thread_ids))
        .order_by(Message.date.is_(None), Message.date, TicketMention.id)).all()
    # Change-Ids count once a Gerrit change with that id is known, as that change.
    change_ids = {ref.split(":", 1)[1] for _tid, ref in rows if ref.startswith("changeid:")}
    resolved: dict[str, str] = dict(session.execute(select(Ticket.external_id, Ticket.ref).where(
        Ticket.tracker == "gerrit", Ticket.external_id.in_(change_ids))).all()) if change_ids else {}
    for tid, ref in rows:
        if ref.startswith("changeid:"):
            ref = resolved.get(ref.split(":", 1)[1], "")
        if ref and ref not in out.setdefault(tid, []):
            out[tid].append(ref)
    return out


def participants(session: Session, thread_ids: list[int | None]) -> dict[int, list[dict[str, Any]]]:
    """Distinct authors of each thread, in order of first message."""
    if not thread_ids:
        return {}
    rows = session.execute(
        select(Message.thread_id, Person.id, Person.name, Person.email, Person.role, func.min(Message.id))
        .join(Person, Person.id == Message.person_id)
        .where(Message.thread_id.in_(thread_ids))
        .group_by(Message.thread_id, Person.id, Person.name, Person.email, Person.role)
        .order_by(func.min(Message.id))
    ).all()
    result: dict[int, list[dict[str, Any]]] = {}
    for tid, _pid, name, email, role, _first in rows:
        result.setdefault(tid, []).append({"name": name, "email": email, "role": role})
    return result


def thread_dict(thread: Thread, list_name: str, people: list[dict[str, Any]],
                components: list[dict[str, Any]] | None = None, refs: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": thread.id,
        "subject": thread.subject,
        "list": list_name,
        "first_date": iso(thread.first_date),
        "last_date": iso(thread.last_date),
        "message_count": thread.message_count,
        "participants": people,
        "components": components or [],
        "refs": refs or [],
    }


def thread_detail(session: Session, thread_id: int) -> dict[str, Any] | None:
    """A thread with its messages in date order (each message's new text and quoted text)."""
    row = session.execute(select(Thread, MailingList.name).join(MailingList, MailingList.id == Thread.list_id)
                          .where(Thread.id == thread_id)).first()
    if row is None:
        return None
    thread, list_name = row
    data = thread_dict(thread, list_name, participants(session, [thread.id]).get(thread.id, []),
                       thread_components(session, [thread.id]).get(thread.id, []),
                       thread_refs(session, [thread.id]).get(thread.id, []))
    from .tickets import tickets_for_refs

    data["tickets"] = tickets_for_refs(session, data["refs"])
    data["pain"] = thread_pain(session, [thread.id]).get(thread.id, NO_PAIN)
    msgs = session.execute(
        select(Message.id, Message.message_id, Message.subject, Message.date, Message.new_text, Message.quoted_text,
               Message.parent_id, Message.recovered, Person.name, Person.email, Person.role)
        .outerjoin(Person, Person.id == Message.person_id)
        .where(Message.thread_id == thread_id)
        .order_by(Message.date.is_(None), Message.date, Message.id)
    ).all()
    data["messages"] = [
        {
            "id": m.id,
            "message_id": m.message_id,
            "author": {"name": m.name or "", "email": m.email, "role": m.role or "unknown"},
            "date": iso(m.date),
            "subject": m.subject,
            "text": m.new_text,
            "quoted_text": m.quoted_text,
            "parent_id": m.parent_id,
            "recovered": m.recovered,
        }
        for m in msgs
    ]
    return data


def list_names(session: Session) -> list[str]:
    return [n for (n,) in session.execute(select(MailingList.name).order_by(MailingList.name))]


def list_threads_by_ids(session: Session, thread_ids: list[int]) -> list[dict[str, Any]]:
    """Threads by id (newest first), in the list shape."""
    if not thread_ids:
        return []
    rows = session.execute(select(Thread, MailingList.name).join(MailingList, MailingList.id == Thread.list_id)
                           .where(Thread.id.in_(thread_ids)).order_by(Thread.last_date.desc().nulls_last())).all()
    return _thread_dicts(session, rows)
