"""Tickets from the trackers' own JSON: Jira REST (issues, search pages, dev-status commits),
Launchpad API bugs and bug tasks, GitHub issues and pulls (also recorded request/response
fixtures), Gerrit changes, Redmine issues. The tracker is found from the JSON's shape."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .model import ImportProblem
from .sources import open_archive
from .text import parse_date

TRACKERS = ("jira", "launchpad", "github", "gerrit", "redmine")


@dataclass
class TicketRecord:
    ref: str
    tracker: str
    title: str = ""
    status: str = ""
    url: str = ""
    assignee: str = ""
    external_id: str = ""
    fix_state: str = "none"  # what the tracker itself says: none | in_review | merged | released
    fixed_in: str = ""
    updated: datetime | None = None


@dataclass
class EvidenceRecord:
    """A commit or review the tracker links to a ticket."""

    tracker: str
    kind: str  # fix | progress | review
    ident: str
    ref: str | None = None
    external_id: str | None = None
    url: str = ""
    summary: str = ""
    date: datetime | None = None
    files: list[str] = field(default_factory=list)
    merged: bool = True


Item = TicketRecord | EvidenceRecord | ImportProblem


def load_json(path: Path) -> Any:
    with open_archive(path) as fh:
        text = fh.read().decode("utf-8", "replace")
    if text.startswith(")]}'"):  # Gerrit's XSSI guard
        text = text.split("\n", 1)[1] if "\n" in text else ""
    return json.loads(text)


def iter_tickets(path: Path, tracker: str | None = None) -> Iterator[Item]:
    """Every ticket and evidence record in a file or folder (folders: tickets first)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        # Evidence files name tickets by tracker id, so read the tickets first.
        files.sort(key=lambda p: ("commits" in p.name, str(p)))
        for f in files:
            yield from iter_tickets(f, tracker)
        return
    try:
        data = load_json(path)
    except (OSError, EOFError) as exc:
        yield ImportProblem(str(path), "file", f"cannot read: {exc}")
        return
    except json.JSONDecodeError as exc:
        yield ImportProblem(str(path), f"line {exc.lineno}, column {exc.colno}", f"not JSON: {exc.msg}")
        return
    found = False
    for i, obj in enumerate(_objects(data)):
        kind = tracker or detect(obj)
        if kind is None:
            continue
        found = True  # a record of a known tracker, even one that links nothing
        try:
            yield from PARSERS[kind](obj, path)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            yield ImportProblem(str(path), f"item {i + 1}", f"not a {kind} record: {exc.__class__.__name__}: {exc}")
    if not found and not _is_empty_collection(data):
        yield ImportProblem(str(path), "file", "no tickets of a known tracker in this JSON")


def _is_empty_collection(data: Any) -> bool:
    return (isinstance(data, list) and not data) or (
        isinstance(data, dict) and any(isinstance(data.get(k), list) and not data[k]
                                       for k in ("entries", "issues", "detail", "data")))


def _objects(data: Any) -> Iterator[dict[str, Any]]:
    """Top-level records, unwrapping listings and recorded HTTP fixtures."""
    if isinstance(data, list):
        for x in data:
            if isinstance(x, dict) and "response" in x and "method" in x:  # recorded request/response
                yield from _objects(x["response"])
            elif isinstance(x, dict):
                yield x
    elif isinstance(data, dict):
        if isinstance(data.get("issues"), list) and "startAt" in data or "total_count" in data:
            yield from _objects(data.get("issues") or data.get("items") or [])
        elif isinstance(data.get("entries"), list):
            yield from _objects(data["entries"])
        elif isinstance(data.get("issues"), list):  # Redmine listing
            yield from ({"issue": x} for x in data["issues"] if isinstance(x, dict))
        elif isinstance(data.get("items"), list):
            yield from _objects(data["items"])
        else:
            yield data


def detect(obj: dict[str, Any]) -> str | None:
    if "key" in obj and isinstance(obj.get("fields"), dict) or "detail" in obj and "errors" in obj:
        return "jira"
    if "bug_link" in obj or re.search(r"launchpad\.net/.*(?:\+bug|bugs)/\d+", str(obj.get("web_link", ""))):
        return "launchpad"
    if "_number" in obj and "change_id" in obj or "change_id" in obj and "project" in obj:
        return "gerrit"
    if "number" in obj and "html_url" in obj and "github.com" in str(obj.get("html_url")):
        return "github"
    if isinstance(obj.get("issue"), dict) and "subject" in obj["issue"] or "tracker" in obj and "subject" in obj:
        return "redmine"
    return None


def _name(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("displayName") or value.get("name") or value.get("login") or "")
    return str(value or "")


def _jira(obj: dict[str, Any], path: Path) -> Iterator[Item]:
    if "detail" in obj:  # dev-status: commits linked to the issue whose id names the file
        m = re.search(r"(\d+)", path.stem)
        for detail in obj.get("detail") or []:
            for repo in detail.get("repositories") or []:
                for c in repo.get("commits") or []:
                    yield EvidenceRecord(
                        tracker="jira", kind="fix", ident=str(c["id"]), external_id=m.group(1) if m else None,
                        url=str(c.get("url", "")), summary=str(c.get("message", "")).split("\n", 1)[0],
                        date=parse_date(c.get("authorTimestamp")),
                        files=[f.get("path", "") for f in c.get("files") or []])
        return
    f = obj["fields"]
    status = _name(f.get("status"))
    resolution = _name(f.get("resolution"))
    versions = f.get("fixVersions") or []
    fixed = resolution.lower() in ("fixed", "done", "resolved")
    released = fixed and any(v.get("released") for v in versions if isinstance(v, dict))
    base = str(obj.get("self", "")).split("/rest/")[0]
    yield TicketRecord(
        ref=f"jira:{obj['key']}", tracker="jira", title=str(f.get("summary") or ""),
        status=f"{status} ({resolution})" if resolution else status, assignee=_name(f.get("assignee")),
        url=f"{base}/browse/{obj['key']}" if base else "", external_id=str(obj.get("id", "")),
        fix_state="released" if released else "merged" if fixed else "none",
        fixed_in=", ".join(_name(v) for v in versions), updated=parse_date(f.get("updated")))


_LP_STATES = {"fix released": "released", "fix committed": "merged", "in progress": "in_review"}


def _launchpad(obj: dict[str, Any], path: Path) -> Iterator[Item]:
    link = str(obj.get("bug_link") or obj.get("web_link") or obj.get("self_link") or "")
    m = re.search(r"/bugs?/(\d+)", link) or re.search(r"\+bug/(\d+)", str(obj.get("web_link", "")))
    number = int(obj["id"]) if "id" in obj and "bug_link" not in obj else int(m.group(1)) if m else None
    if number is None:
        raise ValueError("no bug number")
    status = str(obj.get("status") or "")
    title = str(obj.get("title") or "")
    title = re.sub(r"^Bug #\d+ in [^:]+:\s*", "", title).strip('"')
    yield TicketRecord(
        ref=f"lp:{number}", tracker="launchpad", title=title, status=status,
        url=f"https://bugs.launchpad.net/bugs/{number}",
        assignee=str(obj.get("assignee_link") or "").rsplit("~", 1)[-1] if obj.get("assignee_link") else "",
        external_id=str(number), fix_state=_LP_STATES.get(status.lower(), "none"),
        fixed_in=str(obj.get("milestone_link") or "").rsplit("/", 1)[-1],
        updated=parse_date(obj.get("date_last_updated") or obj.get("date_fix_released") or obj.get("date_created")))


def _github(obj: dict[str, Any], path: Path) -> Iterator[Item]:
    m = re.match(r"https://github\.com/([^/]+/[^/]+)/(?:issues|pull)/(\d+)", str(obj["html_url"]))
    if not m:
        raise ValueError("html_url is not an issue or pull request")
    repo, number = m.group(1), int(m.group(2))
    is_pull = "/pull/" in obj["html_url"] or "merged_at" in obj
    merged = bool(obj.get("merged_at") or obj.get("merged"))
    state = str(obj.get("state") or "")
    fix_state = "merged" if merged else "in_review" if is_pull and state == "open" else "none"
    ref = f"gh:{repo}#{number}"
    yield TicketRecord(ref=ref, tracker="github", title=str(obj.get("title") or ""),
                       status=("merged" if merged else state), url=obj["html_url"],
                       assignee=_name(obj.get("assignee")), external_id=str(obj.get("id", "")), fix_state=fix_state,
                       fixed_in=_name(obj.get("milestone")) if obj.get("milestone") else "",
                       updated=parse_date(obj.get("updated_at")))
    if is_pull:
        yield EvidenceRecord(tracker="github", kind="review", ident=ref, ref=ref, url=obj["html_url"],
                             summary=str(obj.get("title") or ""), merged=merged,
                             date=parse_date(obj.get("merged_at") or obj.get("updated_at")))


def _gerrit(obj: dict[str, Any], path: Path) -> Iterator[Item]:
    number = int(obj["_number"])
    status = str(obj.get("status") or "").upper()
    ref = f"gerrit:{number}"
    fix = {"MERGED": "merged", "NEW": "in_review"}.get(status, "none")
    yield TicketRecord(ref=ref, tracker="gerrit", title=str(obj.get("subject") or ""), status=status,
                       url=str(obj.get("url") or ""), assignee=_name(obj.get("owner")),
                       external_id=str(obj.get("change_id") or ""), fix_state=fix,
                       updated=parse_date(obj.get("updated")))
    files = list((obj.get("revisions") or {}).get(obj.get("current_revision", ""), {}).get("files", {}) or [])
    yield EvidenceRecord(tracker="gerrit", kind="review", ident=ref, ref=ref, summary=str(obj.get("subject") or ""),
                         merged=status == "MERGED", date=parse_date(obj.get("submitted") or obj.get("updated")),
                         files=files)


_REDMINE_DONE = ("resolved", "closed", "done", "fixed")


def _redmine(obj: dict[str, Any], path: Path) -> Iterator[Item]:
    issue = obj.get("issue", obj)
    number = int(issue["id"])
    status = _name(issue.get("status"))
    yield TicketRecord(
        ref=f"redmine:{number}", tracker="redmine", title=str(issue.get("subject") or ""), status=status,
        url=f"https://progress.opensuse.org/issues/{number}" if "progress.opensuse.org" in path.name else "",
        assignee=_name(issue.get("assigned_to")), external_id=str(number),
        fix_state="merged" if status.lower() in _REDMINE_DONE else "in_review" if status.lower() == "feedback"
        else "none", fixed_in=_name(issue.get("fixed_version")), updated=parse_date(issue.get("updated_on")))
    for cs in issue.get("changesets") or []:
        yield EvidenceRecord(tracker="redmine", kind="fix", ident=str(cs.get("revision", "")),
                             ref=f"redmine:{number}", summary=str(cs.get("comments", "")).split("\n", 1)[0],
                             date=parse_date(cs.get("committed_on")))


PARSERS = {"jira": _jira, "launchpad": _launchpad, "github": _github, "gerrit": _gerrit, "redmine": _redmine}
