"""The weekly digest: for a release cycle and an ISO week, the production pain each developer's
components still have with no fix or no test, as things stood at the end of that week.

Building is done once per week for every pain point (statuses are recomputed as of the end of the
week and of the week before, from dated evidence only), then filtered per recipient. Sending is
exactly-once per (recipient, cycle, week): each digest is frozen (its content stored under a
unique key) before anything is sent, claimed by an atomic update just before it is handed to the
SMTP server, and marked sent after. A sender that dies before the claim leaves it frozen, and the
next run sends it; one that dies inside the SMTP exchange leaves it "sending", which is reported
and never resent on its own (a second copy is worse than a question to the admin).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from .cycles import CycleSpan
from .models import Digest, PainPoint, PainPointMember, Subscription, Thread, User, utcnow
from .painpoints import components_of, gather, status_at, ticket_states_at

SECTIONS = [
    ("new", "New this week", "first reported this week"),
    ("untracked", "No fix: nobody has a ticket", "production pain with no ticket"),
    ("no_fix", "Tracked, no fix yet", "a ticket, but no fix merged"),
    ("no_test", "No test: fixed without a test", "a fix merged with no test evidence"),
    ("regressed", "Regressed", "reported again after its fix merged"),
    ("fixed_tested", "Good news: fixed and tested this week", "fixed with a test during the week"),
]
OPEN = ("untracked", "tracked", "fix_in_review", "fixed_untested", "regressed")
_WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")
SPARK = "▁▂▃▄▅▆▇█"


class DigestError(ValueError):
    """A week, cycle or recipient that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Week:
    name: str  # 2014-W23
    start: datetime  # Monday 00:00 UTC
    end: datetime  # the next Monday 00:00 UTC: "as of the end of the week"


def parse_week(value: str) -> Week:
    m = _WEEK_RE.match((value or "").strip())
    if not m:
        raise DigestError(f"week {value!r}: expected an ISO week such as 2014-W23")
    try:
        monday = date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)
    except ValueError as exc:
        raise DigestError(f"week {value!r}: {exc}") from exc
    start = datetime(monday.year, monday.month, monday.day)
    return Week(f"{m.group(1)}-W{int(m.group(2)):02d}", start, start + timedelta(days=7))


def week_of(when: datetime) -> Week:
    year, week, _ = when.isocalendar()
    return parse_week(f"{year}-W{week:02d}")


def check_week_in_cycle(cycle: CycleSpan, week: Week) -> None:
    if week.end <= cycle.start or week.start >= cycle.end:
        raise DigestError(f"week {week.name} is outside cycle {cycle.name} "
                          f"({cycle.start.date()} to {cycle.end.date()})")


def parse_components(value: str, known: Iterable[str]) -> frozenset[str] | None:
    """"all" or "*" (everything), or a comma-separated list of known components."""
    text = (value or "").strip()
    if text in ("all", "*"):
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in names if c not in set(known)]
    if not names:
        raise DigestError("name components (comma-separated) or all")
    if unknown:
        raise DigestError(f"unknown component {unknown[0]!r}")
    return frozenset(names)


def build(session: Session, cycle: CycleSpan, week: Week, *, base_url: str) -> dict[str, Any]:
    """Every pain point of the cycle as it stood at the end of the week and the week before."""
    check_week_in_cycle(cycle, week)
    as_of, before = week.end, week.start
    ids = list(session.execute(
        select(PainPoint.id).where(PainPoint.merged_into_id.is_(None), PainPoint.id.in_(
            select(PainPointMember.pain_point_id).join(Thread, Thread.id == PainPointMember.thread_id)
            .where(Thread.first_date >= cycle.start, Thread.first_date < as_of)))).scalars())
    weeks = []
    w = week_of(max(cycle.start, week.start - timedelta(days=7 * 26)))
    while w.start <= week.start:
        weeks.append(w)
        w = parse_week(_next_week(w))
    items: list[dict[str, Any]] = []
    base = base_url.rstrip("/")
    for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)):
        facts = gather(session, chunk, [], people=False)
        comps = components_of(session, chunk)
        points = {p.id: p for p in session.execute(select(PainPoint).where(PainPoint.id.in_(chunk))).scalars()}
        for pp in chunk:
            now_status = status_at(facts, pp, as_of)
            if now_status is None:
                continue
            point = points[pp]
            threads = facts.threads.get(pp, [])
            firsts = [d for t in threads if (d := facts.thread_dates.get(t, (None, None))[0]) and d < as_of]
            first = min(firsts) if firsts else None
            tickets = [{"ref": t["ref"], "fix_state": t["fix_state"], "test_state": t["test_state"],
                        "url": (t["ticket"].url if t["ticket"] else "") or ""}
                       for t in ticket_states_at(facts, pp, as_of)]
            evidence = sorted((t for t in threads if (d := facts.thread_dates.get(t, (None, None))[0]) and d < as_of),
                              key=lambda t: facts.thread_dates[t][0] or as_of)[-3:]
            items.append({
                "id": pp, "title": point.title, "components": comps.get(pp, []), "status": now_status,
                "status_before": status_at(facts, pp, before), "impact": round(point.impact, 2),
                "operators": point.operators, "reports": len(firsts),
                "first_reported": first.isoformat() if first else None,
                "age_days": (as_of - first).days if first else None,
                "new": bool(first and first >= week.start), "tickets": tickets,
                "url": f"{base}/painpoints/{pp}", "evidence": [f"{base}/threads/{t}" for t in evidence],
                "series": _open_by_week(facts, pp, weeks),
            })
    return {"cycle": cycle.name, "week": week.name, "as_of": as_of.isoformat(), "base_url": base,
            "weeks": [w.name for w in weeks], "items": items}


def _open_by_week(facts: Any, pp: int, weeks: list[Week]) -> list[bool]:
    """Whether the pain point was open at the end of each week. Its status can only change on the
    day of one of its events (a report, a ticket named or linked, a commit, a test), so it is
    recomputed only for weeks in which something happened."""
    events = sorted({d for d in _event_dates(facts, pp) if d is not None})
    out: list[bool] = []
    state: bool | None = None
    k = 0
    previous_end = None
    for w in weeks:
        changed = state is None
        while k < len(events) and events[k] < w.end:
            if previous_end is None or events[k] >= previous_end:
                changed = True
            k += 1
        if changed:
            state = status_at(facts, pp, w.end) in OPEN
        out.append(bool(state))
        previous_end = w.end
    return out


def _event_dates(facts: Any, pp: int) -> Iterable[datetime | None]:
    for t in facts.threads.get(pp, []):
        yield facts.thread_dates.get(t, (None, None))[0]
    yield from facts.ref_seen.get(pp, {}).values()
    yield from facts.tests.get(pp, [])
    for r in facts.refs.get(pp, []):
        for e in facts.evidence.get(r, []):
            yield e.date
        t = facts.tickets.get(r)
        if t is not None:
            yield t.updated_at


def _next_week(w: Week) -> str:
    return week_of(w.start + timedelta(days=7)).name


def _section(item: dict[str, Any], status_key: str = "status") -> str | None:
    status = item[status_key]
    if status is None:
        return None
    return {"untracked": "untracked", "tracked": "no_fix", "fix_in_review": "no_fix", "fixed_untested": "no_test",
            "regressed": "regressed"}.get(status)


def _index(data: dict[str, Any]) -> dict[str, Any]:
    """Once per build: items by impact, the items of each component (and of each parent), and
    each component's open pain per week; recipients then only read them."""
    cached = data.get("_index")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    items = sorted(data["items"], key=lambda i: (-i["impact"], i["id"]))
    rank = {i["id"]: n for n, i in enumerate(items)}
    members: dict[str, set[int]] = {}
    for item in items:
        for c in item["components"]:
            for name in {c, c.split("/", 1)[0]}:
                members.setdefault(name, set()).add(item["id"])
    weeks = len(data["weeks"])
    by_id = {i["id"]: i for i in items}
    series = {name: [sum(1 for pp in ids if by_id[pp]["series"][k]) for k in range(weeks)]
              for name, ids in members.items()}
    data["_index"] = {"items": items, "rank": rank, "members": members, "by_id": by_id, "series": series}
    return data["_index"]  # type: ignore[no-any-return]


def for_recipient(data: dict[str, Any], components: frozenset[str] | None, *,
                  per_section: int = 25) -> dict[str, Any]:
    """One recipient's digest: their components' pain, in sections (the `per_section` with the
    most impact listed, all counted), the change from last week, the coverage rate and open pain
    per component over the cycle."""
    index = _index(data)
    if components is None:
        mine = index["items"]
    else:
        ids: set[int] = set()
        for name in components:
            ids |= index["members"].get(name, set())
        mine = sorted((index["by_id"][pp] for pp in ids), key=lambda i: index["rank"][i["id"]])
    sections: dict[str, list[dict[str, Any]]] = {key: [] for key, _t, _h in SECTIONS}
    counts = dict.fromkeys(("untracked", "no_fix", "no_test", "regressed"), 0)
    before = dict.fromkeys(counts, 0)
    totals = {key: 0 for key, _t, _h in SECTIONS}
    operator_pain = linked = 0
    for item in mine:
        keys = []
        if item["new"]:
            keys.append("new")
        section = _section(item)
        if section:
            keys.append(section)
            counts[section] += 1
        elif item["status"] == "fixed_tested" and item["status_before"] != "fixed_tested":
            keys.append("fixed_tested")
        for key in keys:
            totals[key] += 1
            if len(sections[key]) < per_section:
                sections[key].append({k: v for k, v in item.items() if k != "series"})
        earlier = _section(item, "status_before")
        if earlier in before:
            before[earlier] += 1
        if item["operators"] > 0:
            operator_pain += 1
            linked += item["status"] != "untracked"
    names = sorted(components) if components is not None else sorted(n for n in index["series"] if "/" not in n)
    chart = []
    for name in names:
        series = index["series"].get(name, [0] * len(data["weeks"]))
        chart.append({"component": name, "series": series, "spark": spark(series), "now": series[-1] if series else 0})
    base = data["base_url"]
    return {"cycle": data["cycle"], "week": data["week"], "as_of": data["as_of"], "base_url": base,
            "components": sorted(components) if components is not None else ["all"],
            "sections": [{"key": k, "title": t, "hint": h, "items": sections[k], "total": totals[k],
                          "more_url": f"{base}/painpoints?status={_STATUS_OF.get(k, '')}" if totals[k] > per_section
                          else ""} for k, t, h in SECTIONS],
            "counts": counts, "change": {k: counts[k] - before[k] for k in counts},
            "coverage": {"operator_pain_points": operator_pain, "linked": linked,
                         "rate": round(linked / operator_pain, 3) if operator_pain else None},
            "chart": {"weeks": data["weeks"], "components": chart}}


_STATUS_OF = {"untracked": "untracked", "no_fix": "tracked", "no_test": "fixed_untested", "regressed": "regressed",
              "fixed_tested": "fixed_tested"}


def spark(series: list[int]) -> str:
    top = max(series, default=0)
    if top == 0:
        return SPARK[0] * len(series)
    return "".join(SPARK[min(len(SPARK) - 1, round(v / top * (len(SPARK) - 1)))] for v in series)


def subject_of(d: dict[str, Any]) -> str:
    c = d["counts"]
    return (f"[Earshot] {d['cycle']} {d['week']}: {c['untracked'] + c['no_fix']} without a fix, "
            f"{c['no_test']} without a test, {c['regressed']} regressed")


# --- unsubscribe tokens ---------------------------------------------------------------------------


def _signer(secret: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt="earshot-unsubscribe")


def unsubscribe_token(secret: str, user_id: int) -> str:
    return _signer(secret).dumps(user_id)


def user_for_unsubscribe(secret: str, token: str) -> int | None:
    try:
        value = _signer(secret).loads(token)
    except BadSignature:
        return None
    return value if isinstance(value, int) else None


# --- rendering and mail ---------------------------------------------------------------------------


def render(d: dict[str, Any], fmt: str, *, unsubscribe_url: str = "") -> str:
    from flask import render_template

    if fmt == "json":
        return json.dumps(d, indent=2)
    template = {"text": "email/digest/digest.txt", "html": "email/digest/digest.html"}[fmt]
    return render_template(template, d=d, subject=subject_of(d), unsubscribe_url=unsubscribe_url)


def compose(d: dict[str, Any], *, to: str, mail_from: str, message_id: str, unsubscribe_url: str,
            now: datetime) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = mail_from
    msg["To"] = to
    msg["Subject"] = subject_of(d)
    msg["Date"] = format_datetime(now.replace(tzinfo=UTC))
    msg["Message-ID"] = message_id
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(render(d, "text", unsubscribe_url=unsubscribe_url))
    msg.add_alternative(render(d, "html", unsubscribe_url=unsubscribe_url), subtype="html")
    return msg


def recipients(session: Session) -> list[tuple[User, Subscription]]:
    return list(session.execute(select(User, Subscription).join(Subscription, Subscription.user_id == User.id)
                                .where(Subscription.active.is_(True)).order_by(User.id)).all())


def components_of_subscription(sub: Subscription) -> frozenset[str] | None:
    text = sub.components.strip()
    return None if text in ("", "*", "all") else frozenset(c for c in text.split(",") if c)


def freeze(session: Session, data: dict[str, Any], *, mail_from: str) -> int:
    """Store each subscribed recipient's digest of the week, once; answers how many are new."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "earshot.invalid"
    frozen = 0
    for user, sub in recipients(session):
        exists = session.execute(select(Digest.id).where(Digest.user_id == user.id, Digest.cycle == data["cycle"],
                                                         Digest.week == data["week"])).first()
        if exists:
            continue
        mine = for_recipient(data, components_of_subscription(sub))
        row = Digest(user_id=user.id or 0, cycle=data["cycle"], week=data["week"], subject=subject_of(mine),
                     content=json.dumps(mine), message_id=make_msgid(f"digest.{user.id}.{data['week']}", domain))
        try:
            with session.begin_nested():
                session.add(row)
            frozen += 1
        except IntegrityError:  # another sender froze it first: theirs stands
            pass
    session.commit()
    return frozen


def send_frozen(session: Session, cycle: str, week: str, *, mailer_factory: Any, mail_from: str, base_url: str,
                secret: str, max_attempts: int, now: datetime | None = None) -> dict[str, int]:
    """Send every frozen (or failed, not too often) digest of the week; each is claimed first."""
    result = {"sent": 0, "skipped": 0, "failed": 0, "uncertain": 0}
    rows = list(session.execute(select(Digest.id, Digest.status, Digest.attempts).where(
        Digest.cycle == cycle, Digest.week == week).order_by(Digest.id)).all())
    todo = [r.id for r in rows if r.status == "frozen" or (r.status == "failed" and r.attempts < max_attempts)]
    result["skipped"] = sum(1 for r in rows
                            if r.status == "sent" or (r.status == "failed" and r.attempts >= max_attempts))
    result["uncertain"] = sum(1 for r in rows if r.status == "sending")
    if not todo:
        return result
    # Connect before claiming anything: a sender that cannot reach the server leaves digests frozen.
    with mailer_factory() as mailer:
        for digest_id in todo:
            claimed = session.execute(
                update(Digest).where(Digest.id == digest_id, Digest.status.in_(("frozen", "failed")))
                .values(status="sending", claimed_at=now or utcnow(), attempts=Digest.attempts + 1))
            session.commit()
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                result["skipped"] += 1  # another sender has it
                continue
            row = session.get(Digest, digest_id)
            assert row is not None
            user = session.get(User, row.user_id)
            assert user is not None
            url = f"{base_url.rstrip('/')}/unsubscribe/{unsubscribe_token(secret, user.id or 0)}"
            message = compose(json.loads(row.content), to=formataddr((user.name, user.email)), mail_from=mail_from,
                              message_id=row.message_id, unsubscribe_url=url, now=now or utcnow())
            try:
                mailer.send(message)
            except Exception as exc:  # noqa: BLE001 - the server's refusal is recorded and retried
                row.status, row.last_error = "failed", f"{exc.__class__.__name__}: {exc}"[:2000]
                result["failed"] += 1
            else:
                row.status, row.sent_at, row.last_error = "sent", now or utcnow(), ""
                result["sent"] += 1
            session.add(row)
            session.commit()
    return result


def send_week(session: Session, config: Any, cycle: CycleSpan, week: Week, *,
              now: datetime | None = None) -> dict[str, int]:
    """Build, freeze and send one week's digests (what `flask digest send` and the scheduler run)."""
    from .mail import Mailer, parse_smtp_url

    target = parse_smtp_url(str(config["SMTP_URL"]))
    data = build(session, cycle, week, base_url=str(config["BASE_URL"]))
    result = {"frozen": freeze(session, data, mail_from=str(config["MAIL_FROM"]))}
    result.update(send_frozen(session, cycle.name, week.name, mailer_factory=lambda: Mailer(target),
                              mail_from=str(config["MAIL_FROM"]), base_url=str(config["BASE_URL"]),
                              secret=str(config["SECRET_KEY"]), max_attempts=int(config["DIGEST_MAX_ATTEMPTS"]),
                              now=now))
    return result


def subscribe(session: Session, user: User, components: frozenset[str] | None) -> Subscription:
    sub = session.execute(select(Subscription).where(Subscription.user_id == user.id)).scalars().first() \
        or Subscription(user_id=user.id or 0)
    sub.components = "*" if components is None else ",".join(sorted(components))
    sub.active, sub.unsubscribed_at = True, None
    session.add(sub)
    return sub


def unsubscribe(session: Session, user_id: int) -> bool:
    sub = session.execute(select(Subscription).where(Subscription.user_id == user_id)).scalars().first()
    if sub is None or not sub.active:
        return False
    sub.active, sub.unsubscribed_at = False, utcnow()
    session.add(sub)
    return True
