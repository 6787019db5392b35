"""Tickets and their evidence: storing tracker records and commits, deriving fix and test state."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from importers.gitlog import DEFAULT_TEST_GLOBS, Commit, ticket_links, touches_tests
from importers.model import ImportProblem
from importers.refs import ticket_url, tracker_of
from importers.text import clean_text
from importers.trackers import EvidenceRecord, TicketRecord

from .models import FIX_STATES, Message, Ticket, TicketEvidence, TicketMention, utcnow
from .threads import iso


@dataclass
class TicketImportResult:
    tickets_new: int = 0
    tickets_updated: int = 0
    evidence_new: int = 0
    commits: int = 0
    fixes: set[str] = field(default_factory=set)
    tested: set[str] = field(default_factory=set)
    problems: list[ImportProblem] = field(default_factory=list)
    # Every tag the history carries, with the date of its commit (release cycles can come from them).
    tags: list[tuple[str, datetime]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"tickets_new": self.tickets_new, "tickets_updated": self.tickets_updated,
                "evidence_new": self.evidence_new, "commits": self.commits,
                "bugs_fixed": len(self.fixes), "bugs_with_test_evidence": len(self.tested),
                "problems": [p.as_dict() for p in self.problems]}


def _ticket(session: Session, ref: str, result: TicketImportResult) -> Ticket:
    ticket = session.execute(select(Ticket).where(Ticket.ref == ref)).scalars().first()
    if ticket is None:
        ticket = Ticket(ref=ref, tracker=tracker_of(ref), url=ticket_url(ref))
        session.add(ticket)
        session.flush()
        result.tickets_new += 1
    return ticket


def _add_evidence(session: Session, ticket: Ticket, result: TicketImportResult, **values: Any) -> None:
    exists = session.execute(select(TicketEvidence.id).where(
        TicketEvidence.ticket_id == ticket.id, TicketEvidence.kind == values["kind"],
        TicketEvidence.ident == values["ident"])).first()
    if exists is None:
        session.add(TicketEvidence(ticket_id=ticket.id, **values))
        result.evidence_new += 1


def derive_states(ticket: Ticket, evidence: Iterable[TicketEvidence]) -> tuple[str, str]:
    """Fix state: the furthest of what the tracker says and what the evidence shows. Test state:
    `tested` when a merged fix or review touched test files."""
    rank = FIX_STATES.index(ticket.tracker_fix_state if ticket.tracker_fix_state in FIX_STATES else "none")
    tested = False
    for ev in evidence:
        if ev.kind in ("fix", "review"):
            state = ("released" if ev.release else "merged") if ev.merged else "in_review"
            rank = max(rank, FIX_STATES.index(state))
            tested = tested or (ev.merged and ev.touches_tests)
        elif ev.kind == "test":
            tested = True
    return FIX_STATES[rank], "tested" if tested else "none"


def refresh(session: Session, tickets: Iterable[Ticket]) -> None:
    for ticket in tickets:
        evidence = session.execute(select(TicketEvidence).where(TicketEvidence.ticket_id == ticket.id)).scalars()
        ticket.fix_state, ticket.test_state = derive_states(ticket, evidence)
        session.add(ticket)


def store_tracker_items(session: Session, items: Iterable[TicketRecord | EvidenceRecord | ImportProblem],
                        test_globs: Iterable[str] = DEFAULT_TEST_GLOBS) -> TicketImportResult:
    """Upsert tickets from tracker records and attach the evidence they link."""
    result = TicketImportResult()
    touched: dict[int, Ticket] = {}
    globs = list(test_globs)
    for item in items:
        if isinstance(item, ImportProblem):
            result.problems.append(item)
            continue
        if isinstance(item, TicketRecord):
            existed = session.execute(select(Ticket.id).where(Ticket.ref == item.ref)).first() is not None
            ticket = _ticket(session, item.ref, result)
            if existed:
                result.tickets_updated += 1
            for name in ("title", "status", "url", "assignee", "external_id", "fixed_in"):
                value = clean_text(str(getattr(item, name) or ""))
                if value:
                    setattr(ticket, name, value[:300] if name in ("status", "assignee") else value)
            ticket.tracker = item.tracker
            ticket.tracker_fix_state = item.fix_state
            ticket.updated_at = item.updated.replace(tzinfo=None) if item.updated else utcnow()
            touched[ticket.id or 0] = ticket
            continue
        target: Ticket | None = None
        if item.ref:
            target = _ticket(session, item.ref, result)
        elif item.external_id:
            target = session.execute(select(Ticket).where(Ticket.tracker == item.tracker,
                                                          Ticket.external_id == item.external_id)).scalars().first()
        if target is None:
            result.problems.append(ImportProblem(item.url or item.ident, "evidence",
                                                 f"no {item.tracker} ticket {item.external_id} imported yet"))
            continue
        commit = Commit(sha=item.ident, parents=[], files=item.files)
        _add_evidence(session, target, result, kind=item.kind, ident=item.ident[:300], url=item.url,
                      summary=clean_text(item.summary), date=item.date.replace(tzinfo=None) if item.date else None,
                      touches_tests=touches_tests(commit, globs), merged=item.merged)
        touched[target.id or 0] = target
    session.flush()
    refresh(session, touched.values())
    return result


def store_commits(session: Session, commits: Iterable[Commit | ImportProblem], *, jira_projects: Iterable[str],
                  repo: str | None = None, repo_url: str = "",
                  test_globs: Iterable[str] = DEFAULT_TEST_GLOBS) -> TicketImportResult:
    """Fix and progress evidence from code history. Commits come newest first, as git prints
    them; a fix belongs to the nearest newer release tag."""
    result = TicketImportResult()
    touched: dict[int, Ticket] = {}
    projects = list(jira_projects)
    globs = list(test_globs)
    release = ""
    for commit in commits:
        if isinstance(commit, ImportProblem):
            result.problems.append(commit)
            continue
        result.commits += 1
        if commit.tags:
            release = commit.tags[0]
            when = commit.commit_date or commit.author_date
            if when is not None:
                result.tags += [(tag, when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when)
                                for tag in commit.tags]
        for link in ticket_links(commit, jira_projects=projects, repo=repo):
            ticket = _ticket(session, link.ref, result)
            tested = touches_tests(commit, globs)
            kind = "fix" if link.kind == "fix" else "progress"
            if kind == "fix":
                result.fixes.add(link.ref)
                if tested:
                    result.tested.add(link.ref)
            _add_evidence(session, ticket, result, kind=kind, ident=commit.sha, summary=clean_text(commit.subject),
                          url=f"{repo_url.rstrip('/')}/commit/{commit.sha}" if repo_url else "",
                          date=(commit.commit_date or commit.author_date).replace(tzinfo=None)
                          if (commit.commit_date or commit.author_date) else None,
                          touches_tests=tested, merged=True, release=release)
            touched[ticket.id or 0] = ticket
    session.flush()
    refresh(session, touched.values())
    return result


def ticket_dict(ticket: Ticket) -> dict[str, Any]:
    return {"id": ticket.id, "ref": ticket.ref, "tracker": ticket.tracker, "url": ticket.url, "title": ticket.title,
            "status": ticket.status, "assignee": ticket.assignee, "fix_state": ticket.fix_state,
            "test_state": ticket.test_state, "fixed_in": ticket.fixed_in, "updated": iso(ticket.updated_at)}


def list_tickets(session: Session, *, tracker: str | None = None, fix: str | None = None, test: str | None = None,
                 limit: int = 25, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
    q = select(Ticket)
    if tracker:
        q = q.where(Ticket.tracker == tracker)
    if fix:
        q = q.where(Ticket.fix_state == fix)
    if test == "yes":
        q = q.where(Ticket.test_state == "tested")
    elif test == "no":
        q = q.where(Ticket.test_state != "tested")
    total = session.execute(select(func.count()).select_from(q.subquery())).scalar_one()
    rows = session.execute(q.order_by(Ticket.updated_at.desc().nulls_last(), Ticket.id.desc())
                           .limit(limit).offset(offset)).scalars().all()
    return total, [ticket_dict(t) for t in rows]


def ticket_detail(session: Session, ticket_id: int) -> dict[str, Any] | None:
    from .threads import list_threads_by_ids

    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        return None
    data = ticket_dict(ticket)
    evidence = session.execute(select(TicketEvidence).where(TicketEvidence.ticket_id == ticket_id)
                               .order_by(TicketEvidence.date.desc().nulls_last())).scalars()
    data["evidence"] = [{"kind": e.kind, "ident": e.ident, "url": e.url, "summary": e.summary, "date": iso(e.date),
                         "touches_tests": e.touches_tests, "merged": e.merged, "release": e.release} for e in evidence]
    thread_ids = [t for (t,) in session.execute(
        select(Message.thread_id).join(TicketMention, TicketMention.message_pk == Message.id)
        .where(TicketMention.ref.in_([ticket.ref, *([f"changeid:{ticket.external_id}"]
                                                    if ticket.tracker == "gerrit" and ticket.external_id else [])]))
        .distinct())]
    data["threads"] = list_threads_by_ids(session, thread_ids)
    return data


def tickets_for_refs(session: Session, refs: list[str]) -> list[dict[str, Any]]:
    """What Earshot knows of each reference a thread makes, in the thread's order."""
    if not refs:
        return []
    known = {t.ref: t for t in session.execute(select(Ticket).where(Ticket.ref.in_(refs))).scalars()}
    out = []
    for ref in refs:
        t = known.get(ref)
        out.append(ticket_dict(t) if t else {"id": None, "ref": ref, "tracker": tracker_of(ref),
                                             "url": ticket_url(ref), "title": "", "status": "",
                                             "fix_state": "unknown", "test_state": "unknown"})
    return out


def tracker_urls(config: Any) -> dict[str, str]:
    """Base URLs of the trackers this deployment fetches from (EARSHOT_*_URL); unset ones are skipped."""
    keys = {"launchpad": "LAUNCHPAD_API_URL", "jira": "JIRA_URL", "github": "GITHUB_API_URL",
            "gerrit": "GERRIT_URL", "redmine": "REDMINE_URL"}
    return {tracker: str(config.get(key) or "").rstrip("/") for tracker, key in keys.items() if config.get(key)}


def api_urls(ref: str, base: str) -> list[str]:
    """Where a tracker's API describes a ticket (first the ticket, then its linked evidence)."""
    kind, _, value = ref.partition(":")
    if kind == "lp":
        return [f"{base}/bugs/{value}", f"{base}/bugs/{value}/bug_tasks"]
    if kind == "jira":
        return [f"{base}/rest/api/2/issue/{value}"]
    if kind == "gh":
        repo, _, number = value.partition("#")
        return [f"{base}/repos/{repo}/issues/{number}"]
    if kind == "gerrit":
        return [f"{base}/changes/{value}?o=CURRENT_REVISION&o=CURRENT_FILES"]
    if kind == "redmine":
        return [f"{base}/issues/{value}.json"]
    return []


def fetch_tickets(session: Session, config: Any, refs: list[str] | None = None,
                  test_globs: Iterable[str] = DEFAULT_TEST_GLOBS) -> TicketImportResult:
    """Fetch the tickets threads mention (or `refs`) from every configured tracker."""
    import json as jsonlib
    import tempfile
    from pathlib import Path

    from importers.trackers import iter_tickets

    from .fetch import FetchError, get

    bases = tracker_urls(config)
    if refs is None:
        refs = [r for (r,) in session.execute(select(TicketMention.ref).distinct().order_by(TicketMention.ref))]
    result = TicketImportResult()
    items: list[TicketRecord | EvidenceRecord | ImportProblem] = []
    with tempfile.TemporaryDirectory(prefix="earshot-fetch-") as tmp:
        for ref in refs:
            tracker = tracker_of(ref)
            base = bases.get(tracker)
            if not base:
                continue
            for i, url in enumerate(api_urls(ref, base)):
                try:
                    body = get(url)
                except FetchError as exc:
                    items.append(ImportProblem(url, ref, str(exc)))
                    break
                path = Path(tmp) / f"{tracker}-{len(items)}-{i}.json"
                path.write_bytes(body)
                fetched = list(iter_tickets(path, tracker))
                for item in fetched:
                    if isinstance(item, ImportProblem):
                        item.file = url
                    elif isinstance(item, TicketRecord) and tracker == "launchpad":
                        item.ref = ref  # bug tasks describe the bug through their own links
                items.extend(fetched)
                if tracker == "jira" and i == 0:
                    try:
                        issue_id = jsonlib.loads(body).get("id")
                    except (ValueError, AttributeError):
                        issue_id = None
                    if issue_id:
                        dev = f"{base}/rest/dev-status/1.0/issue/detail?issueId={issue_id}&applicationType=github" \
                              "&dataType=repository"
                        try:
                            dev_path = Path(tmp) / f"commits_{issue_id}.json"
                            dev_path.write_bytes(get(dev))
                            items.extend(iter_tickets(dev_path, "jira"))
                        except FetchError as exc:
                            items.append(ImportProblem(dev, ref, str(exc)))
        stored = store_tracker_items(session, items, test_globs)
    result.tickets_new, result.tickets_updated = stored.tickets_new, stored.tickets_updated
    result.evidence_new, result.problems = stored.evidence_new, stored.problems
    return result
