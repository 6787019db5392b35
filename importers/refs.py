"""Developer-ticket references in free text, normalised to ids such as `lp:1234567`,
`gerrit:65113`, `jira:CLOUDSTACK-8697`, `gh:owner/repo#61`, `redmine:170209`, `bp:name`,
`story:2004567`. Pure functions: text in, ordered unique ids out."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Jira keys found without a browse URL only count for projects a deployment names (or these).
DEFAULT_JIRA_PROJECTS = frozenset({"CLOUDSTACK", "EUCA"})
DEFAULT_REDMINE_HOSTS = frozenset({"progress.opensuse.org"})

_URL_TAIL = r"(?=[\s)\]>.,;:!?'\"]|$)"
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    # Gerrit changes, old and new URL shapes; settings and query pages are not changes.
    ("gerrit", re.compile(r"https?://review\.(?:openstack|opendev)\.org/(?:#/c/|c/[\w.\-/]+?/\+/)?(\d{3,8})"
                          r"(?:/[\d,]*)?" + _URL_TAIL)),
    ("lp", re.compile(r"https?://(?:bugs\.)?launchpad\.net/(?:[\w.+\-]+/)?(?:\+bug|bugs)/(\d{1,8})" + _URL_TAIL)),
    ("bp", re.compile(r"https?://blueprints\.launchpad\.net/[\w.+\-]+/\+spec/([a-z0-9][a-z0-9.+\-]*[a-z0-9])",
                      re.I)),
    ("gh", re.compile(r"https?://github\.com/([\w.\-]+/[\w.\-]+)/(?:issues|pull)/(\d+)" + r"(?![\w/]*#L\d)")),
    ("story", re.compile(r"https?://storyboard\.openstack\.org/#!/story/(\d+)" + _URL_TAIL)),
    ("jira-url", re.compile(r"https?://[\w.\-]+/(?:jira/)?browse/([A-Z][A-Z0-9]{1,15}-\d{1,7})" + _URL_TAIL)),
    ("redmine-url", re.compile(r"https?://([\w.\-]+)/issues/(\d{1,8})(?:#note-\d+)?" + _URL_TAIL)),
    # Trailers and conventions of commit messages and list mail.
    ("lp", re.compile(r"(?:(?:Closes|Partial|Related|Fixes)-Bug|LP)\s*:?\s*#(\d{3,8})\b", re.I)),
    ("lp", re.compile(r"(?:(?:Closes|Partial|Related|Fixes)-Bug)\s*:\s*(\d{3,8})\b", re.I)),
    ("lp", re.compile(r"\b[Bb]ug\s*#(\d{4,8})\b")),
    ("bp", re.compile(r"^\s*(?:Implements|Partially[- ]Implements|Related)\s*:?\s*blueprint\s+"
                      r"([a-z0-9][\w.+\-]*[a-z0-9])", re.I | re.M)),
    ("story", re.compile(r"^\s*Story\s*:\s*#?(\d{5,8})\b", re.M)),
    ("redmine", re.compile(r"\bpoo#(\d{1,8})\b")),
    ("jira", re.compile(r"(?<![\w./\-])([A-Z][A-Z0-9]{1,15})-(\d{1,7})\b(?![.\-]\d)")),
    ("gh-bare", re.compile(r"(?<![\w&/#])#(\d{1,6})\b(?![.\-]\d)")),
]


# Lower-case strings one of which must occur for the pattern at the same position to match.
_HINTS: list[tuple[str, ...]] = [
    ("review.openstack.org", "review.opendev.org"), ("launchpad.net",), ("blueprints.launchpad",),
    ("github.com",), ("storyboard",), ("browse/",), ("/issues/",), ("bug", "lp"), ("bug",), ("bug",),
    ("blueprint",), ("story",), ("poo#",), (), ("#",),
]


def extract_refs(text: str, *, jira_projects: Iterable[str] = DEFAULT_JIRA_PROJECTS,
                 redmine_hosts: Iterable[str] = DEFAULT_REDMINE_HOSTS, repo: str | None = None) -> list[str]:
    """Ticket ids in order of first appearance, without duplicates.

    `repo` ("owner/name") maps bare `#N` to GitHub for lists that belong to one repository; without
    it bare numbers are list numbering or footnotes, not tickets.
    """
    if not text:
        return []
    projects = {p.upper() for p in jira_projects}
    hosts = {h.lower() for h in redmine_hosts}
    found: list[tuple[int, str]] = []
    lowered = text.lower()
    for (kind, pattern), hints in zip(_PATTERNS, _HINTS, strict=True):
        # Most text names no ticket at all: skip a pattern whose literal parts are absent.
        if hints and not any(h in lowered for h in hints):
            continue
        if kind == "jira" and not any(p in text for p in projects):
            continue
        if kind == "gh-bare" and not repo:
            continue
        for m in pattern.finditer(text):
            ref = _normalise(kind, m, projects, hosts, repo)
            if ref:
                found.append((m.start(), ref))
    # A key seen in a browse URL is a Jira project for the rest of the text too.
    url_projects = {r.split(":", 1)[1].rsplit("-", 1)[0] for _pos, r in found if r.startswith("jira:")}
    if url_projects - projects:
        return extract_refs(text, jira_projects=projects | url_projects, redmine_hosts=hosts, repo=repo)
    seen: dict[str, int] = {}
    for pos, ref in sorted(found):
        seen.setdefault(ref, pos)
    return list(seen)


def _normalise(kind: str, m: re.Match[str], projects: set[str], hosts: set[str], repo: str | None) -> str | None:
    if kind == "gerrit":
        return f"gerrit:{int(m.group(1))}"
    if kind == "lp":
        return f"lp:{int(m.group(1))}"
    if kind == "bp":
        return f"bp:{m.group(1).lower()}"
    if kind == "gh":
        return f"gh:{m.group(1)}#{int(m.group(2))}"
    if kind == "story":
        return f"story:{int(m.group(1))}"
    if kind == "jira-url":
        return f"jira:{m.group(1)}"
    if kind == "redmine-url":
        return f"redmine:{int(m.group(2))}" if m.group(1).lower() in hosts else None
    if kind == "redmine":
        return f"redmine:{int(m.group(1))}"
    if kind == "jira":
        return f"jira:{m.group(1)}-{int(m.group(2))}" if m.group(1) in projects else None
    if kind == "gh-bare":
        return f"gh:{repo}#{int(m.group(1))}" if repo else None
    return None


# Reference kind -> (tracker, where the ticket lives when no tracker record says otherwise).
KINDS: dict[str, tuple[str, str]] = {
    "lp": ("launchpad", "https://bugs.launchpad.net/bugs/{value}"),
    "bp": ("launchpad", "https://blueprints.launchpad.net/+spec/{value}"),
    "gerrit": ("gerrit", "https://review.opendev.org/{value}"),
    "jira": ("jira", ""),
    "gh": ("github", "https://github.com/{repo}/issues/{number}"),
    "redmine": ("redmine", "https://progress.opensuse.org/issues/{value}"),
    "story": ("storyboard", "https://storyboard.openstack.org/#!/story/{value}"),
}


def tracker_of(ref: str) -> str:
    """`lp:123` -> `launchpad`; the tracker a normalised reference points into."""
    return KINDS.get(ref.split(":", 1)[0], ("other", ""))[0]


def ticket_url(ref: str) -> str:
    """Where a reference points when no tracker record said so ("" when it cannot be known)."""
    kind, _, value = ref.partition(":")
    repo, _, number = value.partition("#")
    return KINDS.get(kind, ("", ""))[1].format(value=value, repo=repo, number=number)


_CHANGE_ID_RE = re.compile(r"^\s*Change-Id:\s*(I[0-9a-f]{40})\b", re.M)


def extract_change_ids(text: str) -> list[str]:
    """Gerrit Change-Ids (`changeid:I...`): a change by its id, resolved to `gerrit:N` once the
    change itself is known."""
    return [f"changeid:{c}" for c in dict.fromkeys(_CHANGE_ID_RE.findall(text or ""))]
