"""Pain points: the threads about one production problem, with who hurts and what is being done.

Grouping. Every thread judged production pain (portal/threads.painful_threads) belongs to one pain
point. Threads are taken oldest first; a thread joins an existing pain point when

1. it names a ticket that pain point's threads name or a developer linked to it (and nobody
   unlinked it there), or
2. its text is the same problem: title character n-gram cosine >= JOIN_TITLE and BM25 word
   cosine >= JOIN_WORDS, or word cosine >= JOIN_SAME_TEXT on its own (a cross-post), with at
   least one component in common when both sides have components, and at least one ticket in
   common when both sides name tickets (two tickets mean two problems until a developer merges);

otherwise it starts a new pain point. The thresholds are deliberately strict: two problems
wrongly joined hide one of them, while two pain points about one problem are one click to merge
(and the pain point page lists its most similar pain points to make that click easy).

Status, derived from evidence and never typed by hand:

    untracked       no ticket linked
    tracked         a ticket, no fix yet
    fix_in_review   a fix under review, none merged
    fixed_untested  a fix merged (or released), no test evidence
    fixed_tested    a fix merged with a test: a merged fix touching test files, or a "covered by
                    test" link a developer gave
    regressed       pain reported again (a thread first written) after the latest fix merged

Impact, a documented formula shown broken down on every pain point:

    score = (3 x operators + 2 x organisations + reports + votes) x severity x recency x reach

    operators      distinct people with the operator role who wrote in its threads, and
                   operators who said "affects me too"
    organisations  distinct mail domains of those operators (webmail domains do not count)
    reports        its threads
    votes          "affects me too" from people not already counted as operators
    severity       2.0 critical (outage, downtime, corruption), 1.5 high (regression, broken,
                   blocked, crash), 1.0 otherwise
    recency        180 / (180 + days since the last report)
    reach          1.0 unless fixed; once fixed, the share of the releases operators said they
                   run whose cycle ended before the fix merged (a fix on master does not help an
                   operator two releases behind), at least 0.1; 1.0 for a fix not in any release
                   when no release is known, 0.1 for a released one
"""

from __future__ import annotations

import json
import logging
import re
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, insert, select, update
from sqlalchemy import text as sql
from sqlmodel import Session

from importers.refs import extract_refs, ticket_url, tracker_of
from importers.text import normalize_subject

from .cycles import CycleSpan, all_cycles, releases_named
from .models import (
    PAIN_STATUSES,
    AuditEvent,
    Message,
    PainPoint,
    PainPointComponent,
    PainPointMember,
    PainPointTest,
    PainPointTicket,
    PainPointVote,
    Person,
    Thread,
    Ticket,
    TicketEvidence,
    TicketMention,
    User,
    utcnow,
)
from .threads import iso, painful_threads, thread_components, thread_pain, thread_refs

if TYPE_CHECKING:  # (portal.similar brings SciPy: imported where grouping runs)
    from .similar import EarlierPairs, KeptPairs

JOIN_TITLE = 0.8
JOIN_WORDS = 0.3
JOIN_SAME_TEXT = 0.6  # (at least JOIN_WORDS: group() looks at titles only past JOIN_WORDS)

WEBMAIL = frozenset({"gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "live.com",
                     "aol.com", "icloud.com", "me.com", "mail.ru", "yandex.ru", "qq.com", "163.com", "126.com",
                     "gmx.de", "gmx.net", "web.de", "protonmail.com", "proton.me"})
SEVERITY_WEIGHT = {"critical": 2.0, "high": 1.5, "normal": 1.0}
_CRITICAL = ("outage", "outtage", "downtime", "corrupted", "is down", "went down")
_HIGH = ("regression", "regressed", "broken", "broke", "blocked", "blocking", "gate is blocked", "crash",
         "crashed", "crashes", "stopped working", "leak")
GROUP_LOCK = 0x45617273  # pg_advisory_xact_lock key of pain point grouping ("Ears")
FORMULA = "(3*operators + 2*organisations + reports + votes) * severity * recency * reach"
_REF_RE = re.compile(r"^(lp|gerrit|jira|gh|redmine|bp|story):[\w./#+\-]{1,200}$")


class PainPointError(ValueError):
    """A request that cannot be carried out; `field` names what was wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


# --- grouping -----------------------------------------------------------------------------------


@dataclass
class GroupResult:
    pain_points_new: int = 0
    joined_by_ticket: int = 0
    joined_by_similarity: int = 0
    left: int = 0
    refreshed: int = 0
    touched: list[int] = field(default_factory=list)  # the pain points refreshed (for the search index)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if k != "touched"}


def _audit(session: Session, by: str, action: str, kind: str, target: int, **detail: Any) -> AuditEvent:
    event = AuditEvent(by=by, action=action, target_kind=kind, target_id=target, detail=json.dumps(detail))
    session.add(event)
    session.flush()
    return event


def _unlinked(session: Session) -> set[tuple[int, str]]:
    return {(p, r) for p, r in session.execute(select(PainPointTicket.pain_point_id, PainPointTicket.ref)
                                               .where(PainPointTicket.state == "unlinked"))}


def settled_threads(session: Session, thread_ids: Iterable[int], *, threshold: float | None = None) -> list[int]:
    """The threads among these that group() leaves as they are: not judged pain (it places only
    pain) and in no pain point (it takes out, and refreshes, only members). Their search
    documents can be written while it runs."""
    from .threads import _taxonomy

    if threshold is None:
        threshold = _taxonomy().pain.threshold
    # Read once, as sets: asked per chunk of threads, the pain subquery read every message each
    # time (13.7 s for a 200k-message import).
    unsettled = set(session.execute(painful_threads(threshold)).scalars())
    unsettled.update(session.execute(select(PainPointMember.thread_id)).scalars())
    ids = sorted(set(thread_ids) - unsettled)
    return [t for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500))
            for t in session.execute(select(Thread.id).where(Thread.id.in_(chunk)).order_by(Thread.id)).scalars()]


def group(session: Session, *, threshold: float | None = None, now: datetime | None = None,
          keep_index: bool = True) -> GroupResult:
    """Put every pain thread not yet in a pain point into one, take out threads no longer judged
    pain (unless a developer put them there), and refresh the pain points that changed.

    `keep_index` keeps the similarity index of the pain threads for this process's next grouping
    (a web worker or the scheduler, where reports and polls keep coming: the next costs a few
    documents). A one-off run (an import from the command line) compares the threads through an
    EarlierPairs instead, whose memory hardly grows with the archive (a kept index of a
    200k-message archive's pain threads is about 50 MB), and drops any index kept before; both
    place every thread alike."""
    from .bulk import release_free_memory
    from .similar import forget_subset_index
    from .threads import _taxonomy

    if threshold is None:
        threshold = _taxonomy().pain.threshold
    if session.get_bind().dialect.name == "postgresql":
        # One grouping at a time across workers and hosts (until this transaction ends): two
        # at once would both place the same new thread. SQLite serialises writers by itself.
        session.execute(sql("SELECT pg_advisory_xact_lock(:key)"), {"key": GROUP_LOCK})
    result = GroupResult()
    # Sets of ids stay in SQL (subqueries): an archive can bring more pain threads than a
    # database takes bound parameters.
    pain = painful_threads(threshold)
    touched: set[int] = set()
    for m in session.execute(select(PainPointMember).where(PainPointMember.thread_id.not_in(pain),
                                                           PainPointMember.how != "manual")).scalars():
        touched.add(m.pain_point_id)
        session.delete(m)
        result.left += 1
    session.flush()
    members: dict[int, int] = dict(session.execute(  # thread -> its pain point (columns: no objects to hold)
        select(PainPointMember.thread_id, PainPointMember.pain_point_id)).all())
    new_ids = list(session.execute(
        select(Thread.id).where(Thread.id.in_(pain), Thread.id.not_in(select(PainPointMember.thread_id)))
        .order_by(Thread.first_date.is_(None), Thread.first_date, Thread.id)).scalars())
    if new_ids:
        touched |= _place(session, result, members, new_ids, now, keep_index)
    if not keep_index:
        forget_subset_index(str(session.get_bind().url))
        release_free_memory()
    session.flush()
    # Pain points whose threads changed elsewhere (threads merged by an import) are stale too.
    counts = select(PainPointMember.pain_point_id, func.count(PainPointMember.id).label("n")) \
        .group_by(PainPointMember.pain_point_id).subquery()
    touched.update(session.execute(
        select(PainPoint.id).outerjoin(counts, counts.c.pain_point_id == PainPoint.id)
        .where(PainPoint.merged_into_id.is_(None), func.coalesce(counts.c.n, 0) != PainPoint.reports)).scalars())
    result.touched = refresh(session, touched, now=now)
    result.refreshed = len(result.touched)
    return result


def _place(session: Session, result: GroupResult, members: dict[int, int], new_ids: list[int],
           now: datetime | None, keep_index: bool = True) -> set[int]:
    """Put each new pain thread into the pain point of a thread naming the same ticket, of a
    similar thread, or a new one; returns the pain points that changed. (A function of its own:
    its maps, one entry per pain thread, are gone before the pain points are refreshed.)

    With `keep_index` the similar threads come from this process's kept index of pain threads
    (subset_index: the next grouping costs a few documents); without, from an EarlierPairs built
    for this run, whose memory hardly grows with the archive (the same cosines, the same decisions)."""
    from .similar import EarlierPairs, KeptPairs, iter_thread_docs, subset_index

    when = now or utcnow()  # (one for the run: a datetime per thread was a few MB)
    touched: set[int] = set()
    assigned = list(members)
    pairs: EarlierPairs | KeptPairs
    if keep_index:
        index, pos = subset_index(session, str(session.get_bind().url), assigned + new_ids)  # (thread -> document)
        pairs = KeptPairs(index, pos, floor=JOIN_WORDS)
    else:
        # (Documents of placed threads first, new ones in the order they are placed: each new
        # thread's candidates are the documents before it.)
        try:
            pairs = EarlierPairs(iter_thread_docs(session, assigned + new_ids), len(assigned) + len(new_ids),
                                 floor=JOIN_WORDS)
        except OSError as exc:  # (its temporary folder: full, or not writable)
            logging.getLogger(__name__).warning(
                "grouping could not write its temporary files (%s); comparing the pain threads in memory "
                "instead (set TMPDIR to a folder with room)", exc)
            index, pos = subset_index(session, str(session.get_bind().url), assigned + new_ids)
            pairs = KeptPairs(index, pos, floor=JOIN_WORDS)
    try:
        return _decide(session, result, members, assigned, new_ids, pairs, when, touched)
    finally:
        pairs.close()


def _decide(session: Session, result: GroupResult, members: dict[int, int], assigned: list[int],
            new_ids: list[int], pairs: EarlierPairs | KeptPairs, when: datetime, touched: set[int]) -> set[int]:
    from .similar import EarlierPairs

    point_at = np.zeros(len(pairs), dtype=np.int64)  # each placed document's pain point (an array: no map per thread)
    for tid in assigned:
        at = pairs.position(tid)
        if at is not None:
            pairs.mark(at)
            point_at[at] = members[tid]
    # Components are read only for the threads a decision looks at: the new ones and the
    # few similar candidates (reading them for every assigned thread cost seconds).
    # (Threads share a few sets of components: one frozenset each, not one set per thread.)
    comps: dict[int, frozenset[str]] = {}
    shared: dict[frozenset[str], frozenset[str]] = {}

    def comps_of(tids: list[int]) -> None:
        wanted = [t for t in tids if t not in comps]
        for chunk in (wanted[i:i + 500] for i in range(0, len(wanted), 500)):
            found = thread_components(session, chunk, reasons=False)
            for t in chunk:
                names = frozenset(c["name"] for c in found.get(t, []))
                comps[t] = shared.setdefault(names, names)

    comps_of(new_ids)
    unlinked = _unlinked(session)
    ref_point: dict[str, int] = {}
    point_refs: dict[int, set[str]] = {}
    for tid, named in _refs_by_chunk(session, assigned):
        for r in named:
            ref_point.setdefault(r, members[tid])
            point_refs.setdefault(members[tid], set()).add(r)
    for pp, r in session.execute(select(PainPointTicket.pain_point_id, PainPointTicket.ref)
                                 .where(PainPointTicket.state == "linked")):
        ref_point.setdefault(r, pp)
        point_refs.setdefault(pp, set()).add(r)
    if isinstance(pairs, EarlierPairs):
        # It answers a batch of threads at a time: those a ticket will not place. (A thread naming
        # a ticket that an earlier thread named joins that one's pain point, unless a developer
        # unlinked the ticket there: those count as asked.)
        seen, blocked = set(ref_point), {r for _pp, r in unlinked}
        expected = np.zeros(len(pairs), dtype=bool)
        for tid, named in _refs_by_chunk(session, new_ids):
            at = pairs.position(tid)
            if at is not None and not any(r in seen and r not in blocked for r in named):
                expected[at] = True
            seen.update(named)
        pairs.expect(expected)
        del seen
    fresh_titles: list[str] = []
    # (pain point, thread, how, score) of each new member, in arrays: made rows only to be inserted
    fresh_points, fresh_threads, fresh_how, fresh_scores = array("q"), array("q"), array("b"), array("d")
    subjects: dict[int, str | None] = {}  # (a new pain point's title, read 500 new threads at a time)
    for n, (tid, named) in enumerate(_refs_by_chunk(session, new_ids)):
        target, how, score = None, "new", 0.0
        for r in named:
            if r in ref_point and (ref_point[r], r) not in unlinked:
                target, how, score = ref_point[r], "ticket", 1.0
                break
        i = pairs.position(tid)
        if target is None and i is not None:
            # Either way of joining needs words >= JOIN_WORDS (JOIN_SAME_TEXT is higher): the
            # candidates are the placed threads with that, and their title cosines.
            near, words, titles = pairs.near(i)
            ok = (titles >= JOIN_TITLE) | (words >= JOIN_SAME_TEXT)
            fused = (titles + words)[ok]
            order = np.argsort(-fused)[:10]
            best, best_scores = near[ok][order], fused[order]
            comps_of([pairs.thread(j) for j in best])
            for j, fused_score in zip(best, best_scores, strict=True):
                other = pairs.thread(j)
                mine, theirs = comps.get(tid, frozenset()), comps.get(other, frozenset())
                if mine and theirs and not mine & theirs:
                    continue
                known = point_refs.get(int(point_at[j]), set())
                if named and known and not known.intersection(named):
                    continue
                target, how, score = int(point_at[j]), "similar", float(fused_score)
                break
        if target is None:
            # A new pain point gets a provisional (negative) id; all of them are stored at once
            # below (a flush for each cost a fifth of grouping a large archive).
            target = -1 - len(fresh_titles)
            if tid not in subjects:
                subjects = dict(session.execute(select(Thread.id, Thread.subject)
                                                .where(Thread.id.in_(new_ids[n:n + 500]))).all())
            fresh_titles.append((normalize_subject(subjects.get(tid) or "") or "(no subject)")[:500])
            result.pain_points_new += 1
        else:
            result.joined_by_ticket += how == "ticket"
            result.joined_by_similarity += how == "similar"
        fresh_points.append(target)
        fresh_threads.append(tid)
        fresh_how.append(HOW.index(how))
        fresh_scores.append(round(score, 4))
        if i is not None:
            pairs.mark(i)
            point_at[i] = target
        for r in named:
            ref_point.setdefault(r, target)
            point_refs.setdefault(target, set()).add(r)
        touched.add(target)
    # Rows, not objects: an import places tens of thousands of threads, and the session's
    # bookkeeping for as many new objects was the largest share of grouping's memory (and
    # building each pain point object a tenth of grouping's time). Ids come back in order.
    # (A thousand rows a statement: 5,000 held 5 MB of parameters at once, the peak of grouping a
    # large archive.)
    session.flush()
    point_ids = array("q")  # the real id of provisional id -1 - i
    for start in range(0, len(fresh_titles), 1000):
        point_ids.extend(session.execute(
            insert(PainPoint.__table__).returning(PainPoint.__table__.c.id, sort_by_parameter_order=True),
            [{"title": title, "created_at": when} for title in fresh_titles[start:start + 1000]]).scalars())

    def real(pp: int) -> int:
        return point_ids[-1 - pp] if pp < 0 else pp

    for start in range(0, len(fresh_threads), 1000):
        part = slice(start, start + 1000)
        session.execute(insert(PainPointMember.__table__), [
            dict(pain_point_id=real(pp), thread_id=tid, how=HOW[how], score=score, by="earshot", added_at=when)
            for pp, tid, how, score in zip(fresh_points[part], fresh_threads[part], fresh_how[part],
                                           fresh_scores[part], strict=True)])
    return {real(t) for t in touched}


HOW = ("new", "ticket", "similar")  # how grouping placed a thread (PainPointMember.how)


def _refs_by_chunk(session: Session, thread_ids: list[int]) -> Iterator[tuple[int, list[str]]]:
    """Each thread with the ticket references its messages wrote, in order, read 500 threads at a
    time (all of them at once were a list per pain thread held through the placing)."""
    for chunk in (thread_ids[i:i + 500] for i in range(0, len(thread_ids), 500)):
        found = thread_refs(session, chunk)
        for tid in chunk:
            yield tid, found.get(tid, [])


# --- what a pain point is made of -------------------------------------------------------------


@dataclass
class Facts:
    """Everything status and impact are computed from, gathered for a set of pain points."""

    threads: dict[int, list[int]] = field(default_factory=dict)
    thread_dates: dict[int, tuple[datetime | None, datetime | None]] = field(default_factory=dict)
    operators: dict[int, dict[str, str]] = field(default_factory=dict)  # pp -> {person key: email}
    voters: dict[int, list[tuple[str, str]]] = field(default_factory=dict)  # pp -> [(email, role)]
    refs: dict[int, list[str]] = field(default_factory=dict)
    tickets: dict[str, Ticket] = field(default_factory=dict)
    fix_dates: dict[str, datetime | None] = field(default_factory=dict)
    evidence: dict[str, list[TicketEvidence]] = field(default_factory=dict)  # ref -> its evidence
    ref_seen: dict[int, dict[str, datetime | None]] = field(default_factory=dict)  # pp -> ref -> first named
    tests: dict[int, list[datetime | None]] = field(default_factory=dict)
    severity: dict[int, str] = field(default_factory=dict)
    releases: dict[int, set[str]] = field(default_factory=dict)


def _person_key(email: str | None, name: str) -> str:
    return (email or "").casefold() or f"name:{name.casefold()}"


def gather(session: Session, pp_ids: Iterable[int], cycles: list[CycleSpan], *, people: bool = True) -> Facts:
    """The facts of some pain points; `people=False` skips who wrote (operators, releases), which
    only impact needs."""
    ids = sorted(set(pp_ids))
    facts = Facts()
    if not ids:
        return facts
    # (In the order they joined, on every database: a pain point's search document is its first 20.)
    for pp, tid in session.execute(select(PainPointMember.pain_point_id, PainPointMember.thread_id)
                                   .where(PainPointMember.pain_point_id.in_(ids)).order_by(PainPointMember.id)):
        facts.threads.setdefault(pp, []).append(tid)
    all_threads = [t for ts in facts.threads.values() for t in ts]
    owner = {t: pp for pp, ts in facts.threads.items() for t in ts}
    # The threads as a subquery, and lists in chunks: a few pain points can hold many threads.
    member_threads = select(PainPointMember.thread_id).where(PainPointMember.pain_point_id.in_(ids))
    facts.thread_dates = {tid: (a, b) for tid, a, b in session.execute(
        select(Thread.id, Thread.first_date, Thread.last_date).where(Thread.id.in_(member_threads)))}
    for tid, email, name, role, text in session.execute(
            select(Message.thread_id, Person.email, Person.name, Person.role, Message.new_text)
            .join(Person, Person.id == Message.person_id, isouter=True)
            .where(Message.thread_id.in_(member_threads))) if people else []:
        pp = owner[tid]
        if role == "operator":
            facts.operators.setdefault(pp, {})[_person_key(email, name or "")] = email or ""
            facts.releases.setdefault(pp, set()).update(releases_named(cycles, text or ""))
    for pp, email, role in session.execute(
            select(PainPointVote.pain_point_id, User.email, User.role).join(User, User.id == PainPointVote.user_id)
            .where(PainPointVote.pain_point_id.in_(ids))):
        facts.voters.setdefault(pp, []).append((email, role))
    by_thread: dict[int, list[str]] = {}
    pains: dict[int, dict[str, Any]] = {}
    for chunk in (all_threads[i:i + 500] for i in range(0, len(all_threads), 500)):
        by_thread.update(thread_refs(session, chunk))
        pains.update(thread_pain(session, chunk))
    manual: dict[int, dict[str, str]] = {}
    for pp, ref, state in session.execute(select(PainPointTicket.pain_point_id, PainPointTicket.ref,
                                                 PainPointTicket.state).where(PainPointTicket.pain_point_id.in_(ids))):
        manual.setdefault(pp, {})[ref] = state
    for pp in ids:
        refs: list[str] = []
        for tid in facts.threads.get(pp, []):
            refs += [r for r in by_thread.get(tid, []) if r not in refs]
        refs += [r for r, state in manual.get(pp, {}).items() if state == "linked" and r not in refs]
        facts.refs[pp] = [r for r in refs if manual.get(pp, {}).get(r) != "unlinked"]
    wanted = sorted({r for rs in facts.refs.values() for r in rs})
    for some_refs in (wanted[i:i + 500] for i in range(0, len(wanted), 500)):
        facts.tickets.update({t.ref: t for t in session.execute(
            select(Ticket).where(Ticket.ref.in_(some_refs))).scalars()})
    if facts.tickets:
        ref_of = {t.id: ref for ref, t in facts.tickets.items()}
        ticket_ids = sorted(t.id or 0 for t in facts.tickets.values())
        for some_ids in (ticket_ids[i:i + 500] for i in range(0, len(ticket_ids), 500)):
            for ev in session.execute(select(TicketEvidence).where(TicketEvidence.ticket_id.in_(some_ids))).scalars():
                facts.evidence.setdefault(ref_of[ev.ticket_id], []).append(ev)
        for ref, t in facts.tickets.items():
            facts.fix_dates[ref] = _fix_date(t, facts.evidence.get(ref, []))
    # When each pain point first named each ticket: the first message naming it, or the link.
    first_named: dict[tuple[int, str], datetime] = {}
    for tid, ref, when in session.execute(
            select(Message.thread_id, TicketMention.ref, func.min(Message.date))
            .join(Message, Message.id == TicketMention.message_pk)
            .where(Message.thread_id.in_(member_threads)).group_by(Message.thread_id, TicketMention.ref)):
        if when is not None:
            first_named[(tid, ref)] = when
    for pp in ids:
        seen: dict[str, datetime | None] = {}
        for tid in facts.threads.get(pp, []):
            for r in by_thread.get(tid, []):
                when = first_named.get((tid, r), facts.thread_dates.get(tid, (None, None))[0])
                if r not in seen or (when is not None and (seen[r] is None or when < seen[r])):  # type: ignore[operator]
                    seen[r] = when
        facts.ref_seen[pp] = seen
    for pp, ref, at in session.execute(select(PainPointTicket.pain_point_id, PainPointTicket.ref, PainPointTicket.at)
                                       .where(PainPointTicket.pain_point_id.in_(ids),
                                              PainPointTicket.state == "linked")):
        facts.ref_seen.setdefault(pp, {}).setdefault(ref, at)
    for pp, at in session.execute(select(PainPointTest.pain_point_id, PainPointTest.at)
                                  .where(PainPointTest.pain_point_id.in_(ids))):
        facts.tests.setdefault(pp, []).append(at)
    from .reports import severity_of_threads

    declared = severity_of_threads(session, [t for ts in facts.threads.values() for t in ts])
    rank = {"critical": 2, "high": 1}
    for pp, ts in facts.threads.items():
        reasons = " ".join(r for t in ts for r in pains.get(t, {}).get("reasons", [])).casefold()
        judged = ("critical" if any(f"'{w}'" in reasons for w in _CRITICAL)
                  else "high" if any(f"'{w}'" in reasons for w in _HIGH) else "normal")
        # An operator's report says how bad it is; the worse of that and the words counts.
        said = max((declared[t] for t in ts if t in declared), key=lambda v: rank.get(v, 0), default="normal")
        facts.severity[pp] = max(judged, said, key=lambda v: rank.get(v, 0))
    return facts


def derive_status(tickets: list[tuple[str, str, datetime | None]], reports: list[datetime | None],
                  tests: list[datetime | None] | None = None) -> str:
    """Status from (fix_state, test_state, fix_date) of each linked ticket, the dates of the
    reports, and the dates of the "covered by test" links developers gave.

    After a regression only what came later counts: a fix merged after the pain came back, and a
    test of that fix; the test that let it regress does not make the new fix tested."""
    if not tickets:
        return "untracked"
    fixed = [t for t in tickets if t[0] in ("merged", "released")]
    if fixed:
        dates = [d for _f, _t, d in fixed if d is not None]
        seen = [r for r in reports if r is not None]
        if dates and any(r > max(dates) for r in seen):
            return "regressed"
        came_back = max((r for r in seen if any(d < r for d in dates)), default=None)
        if came_back is not None:
            fixed = [t for t in fixed if t[2] is not None and t[2] > came_back]
            tests = [d for d in (tests or []) if d is not None and d > came_back]
        return "fixed_tested" if tests or any(t[1] == "tested" for t in fixed) else "fixed_untested"
    if any(t[0] == "in_review" for t in tickets):
        return "fix_in_review"
    return "tracked"


def impact(facts: Facts, pp: int, status: str, cycles: list[CycleSpan], now: datetime) -> dict[str, Any]:
    """The impact score and its parts (see the module's documentation)."""
    operators = dict(facts.operators.get(pp, {}))
    votes = 0
    for email, role in facts.voters.get(pp, []):
        key = email.casefold()
        if key in operators:
            continue
        if role == "operator":
            operators[key] = email
        else:
            votes += 1
    orgs = {e.rsplit("@", 1)[1].casefold() for e in operators.values() if "@" in e}
    orgs = {d for d in orgs if d not in WEBMAIL}
    threads = facts.threads.get(pp, [])
    lasts = [facts.thread_dates.get(t, (None, None))[1] or facts.thread_dates.get(t, (None, None))[0]
             for t in threads]
    last = max((d for d in lasts if d is not None), default=None)
    days = max(0.0, (now - last).total_seconds() / 86400) if last else 365.0
    recency = 180 / (180 + days)
    severity = facts.severity.get(pp, "normal")
    releases = sorted(facts.releases.get(pp, set()))
    unfixed = releases
    reach = 1.0
    if status in ("fixed_untested", "fixed_tested"):
        fix_dates = [facts.fix_dates.get(r) for r in facts.refs.get(pp, [])]
        fixed_at = max((d for d in fix_dates if d is not None), default=None)
        ends = {c.name: c.end for c in cycles}
        if releases and fixed_at is not None:
            unfixed = [r for r in releases if r in ends and ends[r] <= fixed_at]
            reach = max(0.1, len(unfixed) / len(releases))
        else:
            released = any((facts.tickets.get(r) and facts.tickets[r].fix_state == "released")
                           for r in facts.refs.get(pp, []))
            unfixed = [] if released else releases
            reach = 0.1 if released else 1.0
    base = 3 * len(operators) + 2 * len(orgs) + len(threads) + votes
    score = base * SEVERITY_WEIGHT[severity] * recency * reach
    return {"score": round(score, 3), "formula": FORMULA, "operators": len(operators), "organisations": len(orgs),
            "reports": len(threads), "votes": votes, "severity": severity,
            "severity_weight": SEVERITY_WEIGHT[severity], "recency": round(recency, 3),
            "days_since_last_report": round(days, 1), "releases": releases, "releases_unfixed": unfixed,
            "reach": round(reach, 3)}


def _fix_date(ticket: Ticket, evidence: list[TicketEvidence]) -> datetime | None:
    """When the ticket's fix merged: its latest merged fix or review, else (a tracker that says
    fixed without evidence) when the ticket last changed."""
    dates = [e.date for e in evidence if e.kind in ("fix", "review") and e.merged and e.date is not None]
    if dates:
        return max(dates)
    return ticket.updated_at if ticket.fix_state in ("merged", "released") else None


def ticket_states_at(facts: Facts, pp: int, as_of: datetime | None = None) -> list[dict[str, Any]]:
    """Each ticket of a pain point with its fix and test state as they stood at `as_of` (now when
    None): only what was named, linked and committed by then counts."""
    from types import SimpleNamespace

    from .tickets import derive_states

    out: list[dict[str, Any]] = []
    for r in facts.refs.get(pp, []):
        seen = facts.ref_seen.get(pp, {}).get(r)
        if as_of is not None and seen is not None and seen >= as_of:
            continue
        t = facts.tickets.get(r)
        if t is None:
            out.append({"ref": r, "fix_state": "none", "test_state": "none", "fix_date": None, "ticket": None})
            continue
        if as_of is None:
            out.append({"ref": r, "fix_state": t.fix_state, "test_state": t.test_state,
                        "fix_date": facts.fix_dates.get(r), "ticket": t})
            continue
        evidence = [e for e in facts.evidence.get(r, []) if e.date is None or e.date < as_of]
        tracker_says = t.tracker_fix_state if t.updated_at is None or t.updated_at < as_of else "none"
        fix, test = derive_states(SimpleNamespace(tracker_fix_state=tracker_says), evidence)  # type: ignore[arg-type]
        dates = [e.date for e in evidence if e.kind in ("fix", "review") and e.merged and e.date is not None]
        fix_date = max(dates) if dates else (t.updated_at if tracker_says in ("merged", "released") else None)
        out.append({"ref": r, "fix_state": fix, "test_state": test, "fix_date": fix_date, "ticket": t})
    return out


def status_at(facts: Facts, pp: int, as_of: datetime | None = None) -> str | None:
    """The status a pain point had at `as_of` (now when None); None if nobody had reported it yet."""
    reports = [facts.thread_dates.get(t, (None, None))[0] for t in facts.threads.get(pp, [])]
    if as_of is not None:
        reports = [r for r in reports if r is not None and r < as_of]
        if not reports:
            return None
    tests = [d for d in facts.tests.get(pp, []) if as_of is None or (d is not None and d < as_of)]
    tickets = [(t["fix_state"], t["test_state"], t["fix_date"]) for t in ticket_states_at(facts, pp, as_of)]
    return derive_status(tickets, reports, tests)


def _status_of(facts: Facts, pp: int) -> str:
    return status_at(facts, pp) or "untracked"


def refresh(session: Session, pp_ids: Iterable[int], *, now: datetime | None = None,
            cycles: list[CycleSpan] | None = None) -> list[int]:
    """Recompute and store status and impact; a status change is recorded in the audit log
    (the digest reads it to tell what changed this week)."""
    now = now or utcnow()
    ids = sorted(set(pp_ids))
    if not ids:
        return []
    session.info.setdefault("painpoints_touched", set()).update(ids)  # for the search index, after commit
    cycles = cycles if cycles is not None else all_cycles(session)
    done = []
    for chunk in _by_size(session, ids):
        facts = gather(session, chunk, cycles)
        comps = components_of(session, chunk)
        for point in session.execute(select(PainPoint).where(PainPoint.id.in_(chunk))).scalars():
            pp = point.id or 0
            status = _status_of(facts, pp)
            parts = impact(facts, pp, status, cycles, now)
            if status != point.status or point.status_since is None:
                if point.status_since is not None:
                    _audit(session, "earshot", "status", "pain_point", pp, **{"from": point.status, "to": status})
                point.status, point.status_since = status, now
            firsts = [facts.thread_dates.get(t, (None, None))[0] for t in facts.threads.get(pp, [])]
            lasts = [facts.thread_dates.get(t, (None, None))[1] for t in facts.threads.get(pp, [])]
            point.first_reported = min((d for d in firsts if d), default=None)
            point.last_reported = max((d for d in lasts if d), default=None)
            point.impact, point.operators, point.reports = parts["score"], parts["operators"], parts["reports"]
            point.components = ",".join(comps.get(pp, []))
            session.add(point)
            done.append(pp)
    session.flush()
    return done


def _by_size(session: Session, ids: list[int], *, points: int = 500, threads: int = 2000) -> Iterator[list[int]]:
    """The pain points in chunks of at most `points`, and of at most `threads` member threads
    unless one pain point alone has more: what refreshing a chunk reads (every message of its
    threads) follows its threads, and an archive's oldest pain points hold the most (a 200k-message
    import: 9,137 threads and 39,705 messages in its first 500)."""
    for block in (ids[i:i + points] for i in range(0, len(ids), points)):
        sizes: dict[int, int] = dict(session.execute(
            select(PainPointMember.pain_point_id, func.count(PainPointMember.id))
            .where(PainPointMember.pain_point_id.in_(block)).group_by(PainPointMember.pain_point_id)).all())
        chunk: list[int] = []
        held = 0
        for pp in block:
            n = sizes.get(pp, 0)
            if chunk and held + n > threads:
                yield chunk
                chunk, held = [], 0
            chunk.append(pp)
            held += n
        if chunk:
            yield chunk


def refresh_all(session: Session, *, now: datetime | None = None) -> int:
    ids = list(session.execute(select(PainPoint.id).where(PainPoint.merged_into_id.is_(None))).scalars())
    return len(refresh(session, ids, now=now))


# --- reading ------------------------------------------------------------------------------------


def components_of(session: Session, pp_ids: list[int]) -> dict[int, list[str]]:
    """Components of each pain point: those of its threads, with developers' word on the pain point
    applied (confirmed added, rejected removed), most common first."""
    if not pp_ids:
        return {}
    threads: dict[int, list[int]] = {}
    for pp, tid in session.execute(select(PainPointMember.pain_point_id, PainPointMember.thread_id)
                                   .where(PainPointMember.pain_point_id.in_(pp_ids)).order_by(PainPointMember.id)):
        threads.setdefault(pp, []).append(tid)  # (joined order: ties among components are stable)
    per_thread = thread_components(session, [t for ts in threads.values() for t in ts], reasons=False)
    out: dict[int, dict[str, int]] = {}
    for pp, ts in threads.items():
        counts = out.setdefault(pp, {})
        for t in ts:
            for c in per_thread.get(t, []):
                counts[c["name"]] = counts.get(c["name"], 0) + 1
    for o in session.execute(select(PainPointComponent).where(PainPointComponent.pain_point_id.in_(pp_ids))).scalars():
        counts = out.setdefault(o.pain_point_id, {})
        if o.state == "rejected":
            counts.pop(o.component, None)
        else:
            counts[o.component] = counts.get(o.component, 0) + 1000
    return {pp: sorted(c, key=lambda n: (-c[n], n)) for pp, c in out.items()}


def _live(q: Any) -> Any:
    return q.where(PainPoint.merged_into_id.is_(None), PainPoint.reports > 0)


def with_component(component: str) -> Any:
    """Pain point ids in a component (children count for their parents)."""
    from .threads import threads_with_component

    in_threads = select(PainPointMember.pain_point_id).where(
        PainPointMember.thread_id.in_(threads_with_component(component)))
    like = component.rstrip("/") + "/%"
    confirmed = select(PainPointComponent.pain_point_id).where(
        PainPointComponent.state == "confirmed",
        (PainPointComponent.component == component) | PainPointComponent.component.like(like))
    rejected = select(PainPointComponent.pain_point_id).where(
        PainPointComponent.state == "rejected", PainPointComponent.component == component)
    return select(PainPoint.id).where((PainPoint.id.in_(in_threads) | PainPoint.id.in_(confirmed))
                                      & PainPoint.id.not_in(rejected))


SORTS = ("impact", "recent", "oldest", "reports", "triage")


def list_painpoints(session: Session, *, component: str | None = None, status: str | None = None,
                    cycle: CycleSpan | None = None, sort: str = "impact", limit: int = 25,
                    offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
    q = _live(select(PainPoint))
    if component:
        q = q.where(PainPoint.id.in_(with_component(component)))
    if status:
        q = q.where(PainPoint.status == status)
    if cycle is not None:  # pain reported during the cycle
        q = q.where(PainPoint.id.in_(select(PainPointMember.pain_point_id).join(
            Thread, Thread.id == PainPointMember.thread_id).where(Thread.first_date >= cycle.start,
                                                                   Thread.first_date < cycle.end)))
    total = session.execute(select(func.count()).select_from(q.subquery())).scalar_one()
    order = {"impact": (PainPoint.impact.desc(), PainPoint.id.desc()),
             "recent": (PainPoint.last_reported.desc().nulls_last(), PainPoint.id.desc()),
             "oldest": (PainPoint.first_reported.asc().nulls_last(), PainPoint.id),
             "reports": (PainPoint.reports.desc(), PainPoint.id.desc()),
             "triage": (triage_rank(), PainPoint.impact.desc(), PainPoint.id.desc())}[sort]
    rows = session.execute(q.order_by(*order).limit(limit).offset(offset)).scalars().all()
    return total, summaries(session, list(rows))


def triage_rank() -> Any:
    """Unlinked and unclassified first (untracked with no component, untracked, no component),
    then regressed, tracked, in review, fixed without a test; fixed and tested last."""
    from sqlalchemy import case

    return case(((PainPoint.status == "untracked") & (PainPoint.components == ""), 0),
                (PainPoint.status == "untracked", 1), (PainPoint.components == "", 2),
                (PainPoint.status == "regressed", 3), (PainPoint.status == "tracked", 4),
                (PainPoint.status == "fix_in_review", 5), (PainPoint.status == "fixed_untested", 6), else_=7)


def summaries(session: Session, points: list[PainPoint], *, now: datetime | None = None) -> list[dict[str, Any]]:
    ids = [p.id or 0 for p in points]
    cycles = all_cycles(session)
    facts = gather(session, ids, cycles)
    comps = components_of(session, ids)
    now = now or utcnow()
    out = []
    for p in points:
        pp = p.id or 0
        tickets = []
        for r in facts.refs.get(pp, []):
            t = facts.tickets.get(r)
            tickets.append({"ref": r, "url": (t.url if t else "") or ticket_url(r), "tracker": tracker_of(r),
                            "title": t.title if t else "", "fix_state": t.fix_state if t else "unknown",
                            "test_state": t.test_state if t else "unknown", "id": t.id if t else None})
        out.append({"id": pp, "title": p.title, "components": comps.get(pp, []), "status": p.status,
                    "status_since": iso(p.status_since),
                    "impact": impact(facts, pp, p.status, cycles, now), "reports": len(facts.threads.get(pp, [])),
                    "operators": len(facts.operators.get(pp, {})), "tickets": tickets,
                    "tests": len(facts.tests.get(pp, [])), "first_reported": iso(p.first_reported),
                    "last_reported": iso(p.last_reported)})
    return out


def painpoint_detail(session: Session, pp_id: int) -> dict[str, Any] | None:
    from .threads import list_threads_by_ids

    point = session.get(PainPoint, pp_id)
    if point is None:
        return None
    if point.merged_into_id is not None:
        return {"id": pp_id, "merged_into": point.merged_into_id, "title": point.title,
                "history": _history(session, pp_id)}
    data = summaries(session, [point])[0]
    members = {m.thread_id: m for m in session.execute(
        select(PainPointMember).where(PainPointMember.pain_point_id == pp_id)).scalars()}
    reports = list_threads_by_ids(session, list(members))
    for r in reports:
        m = members[r["id"]]
        r.update({"kind": "thread", "joined": m.how, "join_score": m.score, "added_by": m.by})
    data["reports"] = reports
    data["evidence"] = {
        "tests": [{"id": t.id, "url": t.url, "note": t.note, "by": t.by, "at": iso(t.at)} for t in session.execute(
            select(PainPointTest).where(PainPointTest.pain_point_id == pp_id)).scalars()],
        "commits": [{"ticket": ref, "kind": e.kind, "ident": e.ident, "url": e.url, "summary": e.summary,
                     "date": iso(e.date), "touches_tests": e.touches_tests, "merged": e.merged, "release": e.release}
                    for e, ref in session.execute(
                        select(TicketEvidence, Ticket.ref).join(Ticket, Ticket.id == TicketEvidence.ticket_id)
                        .where(Ticket.ref.in_([t["ref"] for t in data["tickets"]]))
                        .order_by(TicketEvidence.date.desc().nulls_last()))],
    }
    data["history"] = _history(session, pp_id)
    data["merged_from"] = list(session.execute(select(PainPoint.id).where(PainPoint.merged_into_id == pp_id))
                               .scalars())
    return data


def _history(session: Session, pp_id: int, limit: int = 50) -> list[dict[str, Any]]:
    return [{"id": e.id, "at": iso(e.at), "by": e.by, "action": e.action, "detail": json.loads(e.detail or "{}"),
             "undone": e.undone_at is not None}
            for e in session.execute(select(AuditEvent).where(
                AuditEvent.target_kind == "pain_point", AuditEvent.target_id == pp_id)
                .order_by(AuditEvent.id.desc()).limit(limit)).scalars()]


def coverage(session: Session, cycle: CycleSpan | None) -> dict[str, Any]:
    """Share of the cycle's operator pain (pain points with an operator report first written in
    the cycle) that is linked to a ticket."""
    q = _live(select(PainPoint.status)).where(PainPoint.operators > 0)
    if cycle is not None:
        q = q.where(PainPoint.id.in_(select(PainPointMember.pain_point_id).join(
            Thread, Thread.id == PainPointMember.thread_id).where(Thread.first_date >= cycle.start,
                                                                   Thread.first_date < cycle.end)))
    statuses = list(session.execute(q).scalars())
    linked = sum(1 for s in statuses if s != "untracked")
    by_status = {s: statuses.count(s) for s in PAIN_STATUSES}
    return {"cycle": cycle.name if cycle else None, "operator_pain_points": len(statuses), "linked": linked,
            "rate": round(linked / len(statuses), 3) if statuses else None, "by_status": by_status}


# --- developers' actions (each audited) ---------------------------------------------------------


def _point(session: Session, pp_id: int, field: str = "id") -> PainPoint:
    point = session.get(PainPoint, pp_id)
    if point is None:
        raise PainPointError(field, f"no pain point {pp_id}")
    if point.merged_into_id is not None:
        raise PainPointError(field, f"pain point {pp_id} was merged into {point.merged_into_id}")
    return point


def normalise_ref(value: str) -> str:
    """A ticket reference as Earshot writes it (lp:1234567), from that form or from a ticket URL."""
    value = (value or "").strip()
    if _REF_RE.match(value):
        return value
    found = extract_refs(value)
    if len(found) == 1:
        return found[0]
    raise PainPointError("ref", "a ticket reference such as lp:1234567 or jira:PROJ-12, or the ticket's URL")


def link_ticket(session: Session, pp_id: int, value: str, by: str, *, linked: bool = True) -> str:
    _point(session, pp_id)
    ref = normalise_ref(value)
    row = session.execute(select(PainPointTicket).where(PainPointTicket.pain_point_id == pp_id,
                                                        PainPointTicket.ref == ref)).scalars().first()
    row = row or PainPointTicket(pain_point_id=pp_id, ref=ref)
    row.state, row.by, row.at = ("linked" if linked else "unlinked"), by, utcnow()
    session.add(row)
    _audit(session, by, "link" if linked else "unlink", "pain_point", pp_id, ref=ref)
    refresh(session, [pp_id])
    return ref


def set_components(session: Session, pp_id: int, known: set[str], by: str, *, confirm: Iterable[str] = (),
                   reject: Iterable[str] = ()) -> None:
    _point(session, pp_id)
    for name in [*confirm, *reject]:
        if name not in known:
            raise PainPointError("components", f"unknown component {name!r}")
    for state, names in (("confirmed", list(confirm)), ("rejected", list(reject))):
        for name in names:
            row = session.execute(select(PainPointComponent).where(
                PainPointComponent.pain_point_id == pp_id, PainPointComponent.component == name)).scalars().first()
            row = row or PainPointComponent(pain_point_id=pp_id, component=name, state=state)
            row.state, row.by, row.at = state, by, utcnow()
            session.add(row)
            _audit(session, by, f"component_{state}", "pain_point", pp_id, component=name)
    session.flush()


def mark_tested(session: Session, pp_id: int, url: str, by: str, note: str = "") -> PainPointTest:
    _point(session, pp_id)
    url = (url or "").strip()
    if not re.match(r"^https?://[^\s/]+\S*$", url) or len(url) > 2000:
        raise PainPointError("url", "a link (http or https) to the test or the change that adds it")
    row = PainPointTest(pain_point_id=pp_id, url=url, note=(note or "").strip()[:2000], by=by)
    session.add(row)
    session.flush()
    _audit(session, by, "tested", "pain_point", pp_id, url=url, test_id=row.id)
    refresh(session, [pp_id])
    return row


def vote(session: Session, pp_id: int, user: User, *, on: bool = True) -> bool:
    """"Affects me too" (or taking it back); answers whether anything changed."""
    _point(session, pp_id)
    row = session.execute(select(PainPointVote).where(PainPointVote.pain_point_id == pp_id,
                                                      PainPointVote.user_id == user.id)).scalars().first()
    if on == (row is not None):
        return False
    if on:
        session.add(PainPointVote(pain_point_id=pp_id, user_id=user.id or 0))
    else:
        session.delete(row)
    _audit(session, user.email, "vote" if on else "unvote", "pain_point", pp_id)
    refresh(session, [pp_id])
    return True


def merge(session: Session, source_id: int, into_id: int, by: str) -> AuditEvent:
    """Move everything of `source` into `into`; operators and votes count once (they are sets),
    and the event keeps what undo needs."""
    if source_id == into_id:
        raise PainPointError("into", "a pain point cannot be merged into itself")
    source = _point(session, source_id)
    _point(session, into_id, "into")
    threads = list(session.execute(select(PainPointMember.thread_id).where(
        PainPointMember.pain_point_id == source_id)).scalars())
    session.execute(update(PainPointMember).where(PainPointMember.pain_point_id == source_id)
                    .values(pain_point_id=into_id))
    tests = list(session.execute(select(PainPointTest.id).where(PainPointTest.pain_point_id == source_id)).scalars())
    session.execute(update(PainPointTest).where(PainPointTest.pain_point_id == source_id).values(pain_point_id=into_id))
    theirs = set(session.execute(select(PainPointVote.user_id).where(PainPointVote.pain_point_id == into_id)).scalars())
    moved_votes, dropped_votes = [], []
    for v in session.execute(select(PainPointVote).where(PainPointVote.pain_point_id == source_id)).scalars():
        if v.user_id in theirs:
            dropped_votes.append(v.user_id)
            session.delete(v)
        else:
            moved_votes.append(v.user_id)
            v.pain_point_id = into_id
            session.add(v)
    target_links = {r for (r,) in session.execute(select(PainPointTicket.ref).where(
        PainPointTicket.pain_point_id == into_id))}
    links = []
    for link in session.execute(select(PainPointTicket).where(PainPointTicket.pain_point_id == source_id)).scalars():
        if link.ref not in target_links:
            links.append(link.ref)
            link.pain_point_id = into_id
            session.add(link)
    source.merged_into_id = into_id
    session.add(source)
    event = _audit(session, by, "merge", "pain_point", source_id, into=into_id, threads=threads, tests=tests,
                   votes_moved=moved_votes, votes_dropped=dropped_votes, links=links)
    _audit(session, by, "merged_in", "pain_point", into_id, source=source_id, event=event.id)
    refresh(session, [into_id, source_id])
    return event


def split(session: Session, pp_id: int, thread_ids: list[int], by: str, title: str | None = None) -> PainPoint:
    """Move some of a pain point's threads into a new pain point."""
    _point(session, pp_id)
    members = set(session.execute(select(PainPointMember.thread_id).where(
        PainPointMember.pain_point_id == pp_id)).scalars())
    chosen = sorted(set(thread_ids))
    if not chosen or not set(chosen) <= members:
        raise PainPointError("threads", "choose threads of this pain point")
    if set(chosen) == members:
        raise PainPointError("threads", "leave at least one thread where it is")
    if not title:
        subject = session.execute(select(Thread.subject).where(Thread.id.in_(chosen))
                                  .order_by(Thread.first_date.is_(None), Thread.first_date)).scalars().first()
        title = normalize_subject(subject or "") or "(no subject)"
    point = PainPoint(title=title.strip()[:500])
    session.add(point)
    session.flush()
    assert point.id is not None
    session.execute(update(PainPointMember).where(PainPointMember.thread_id.in_(chosen))
                    .values(pain_point_id=point.id, how="manual", by=by))
    event = _audit(session, by, "split", "pain_point", pp_id, new=point.id, threads=chosen)
    _audit(session, by, "split_from", "pain_point", point.id, source=pp_id, event=event.id)
    refresh(session, [pp_id, point.id])
    return point


def undo(session: Session, event_id: int, by: str) -> AuditEvent:
    """Undo a merge or a split (once)."""
    event = session.get(AuditEvent, event_id)
    if event is None or event.target_kind != "pain_point" or event.action not in ("merge", "split"):
        raise PainPointError("event", "only a merge or a split can be undone")
    if event.undone_at is not None:
        raise PainPointError("event", "this was undone already")
    detail = json.loads(event.detail)
    if event.action == "merge":
        source, into = event.target_id, int(detail["into"])
        point = session.get(PainPoint, source)
        assert point is not None
        point.merged_into_id = None
        session.add(point)
        if detail["threads"]:
            session.execute(update(PainPointMember).where(PainPointMember.thread_id.in_(detail["threads"]),
                                                          PainPointMember.pain_point_id == into)
                            .values(pain_point_id=source))
        if detail["tests"]:
            session.execute(update(PainPointTest).where(PainPointTest.id.in_(detail["tests"]))
                            .values(pain_point_id=source))
        if detail["votes_moved"]:
            session.execute(update(PainPointVote).where(PainPointVote.pain_point_id == into,
                                                        PainPointVote.user_id.in_(detail["votes_moved"]))
                            .values(pain_point_id=source))
        for user_id in detail["votes_dropped"]:
            session.add(PainPointVote(pain_point_id=source, user_id=user_id))
        if detail["links"]:
            session.execute(update(PainPointTicket).where(PainPointTicket.pain_point_id == into,
                                                          PainPointTicket.ref.in_(detail["links"]))
                            .values(pain_point_id=source))
        touched = [source, into]
    else:
        source, new = event.target_id, int(detail["new"])
        session.execute(update(PainPointMember).where(PainPointMember.pain_point_id == new,
                                                      PainPointMember.thread_id.in_(detail["threads"]))
                        .values(pain_point_id=source))
        remaining = session.execute(select(func.count(PainPointMember.id)).where(
            PainPointMember.pain_point_id == new)).scalar_one()
        if remaining == 0:
            session.execute(update(PainPoint).where(PainPoint.id == new).values(merged_into_id=source))
        touched = [source, new]
    event.undone_at = utcnow()
    session.add(event)
    redo = _audit(session, by, "undo", "pain_point", event.target_id, event=event.id, undid=event.action)
    refresh(session, touched)
    return redo




def similar_painpoints(session: Session, url: str, pp_id: int, k: int = 5) -> list[dict[str, Any]]:
    """Other pain points most like this one (candidates to merge), by its title and first report."""
    from .similar import similar_items, thread_docs

    point = session.get(PainPoint, pp_id)
    if point is None:
        return []
    first = session.execute(select(PainPointMember.thread_id).join(Thread, Thread.id == PainPointMember.thread_id)
                            .where(PainPointMember.pain_point_id == pp_id)
                            .order_by(Thread.first_date.is_(None), Thread.first_date)).scalars().first()
    docs = thread_docs(session, [first]) if first is not None else []
    text = docs[0].text if docs else point.title
    found = similar_items(session, url, text, title=point.title, k=k + 1, kind="painpoint")
    return [f for f in found if f["id"] != pp_id][:k]
