"""Commits from `git log --format=fuller` output (with or without --numstat/--raw/--decorate),
plain or gzipped, or straight from a repository folder. Pure parsing: text in, Commits out."""

from __future__ import annotations

import fnmatch
import re
import subprocess  # noqa: S404 - runs the local git binary on a folder the operator names
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .model import ImportProblem
from .refs import extract_refs
from .sources import open_archive
from .text import parse_date

_COMMIT_RE = re.compile(r"^commit ([0-9a-f]{7,40})((?: [0-9a-f]{7,40})*)(?: \((.*)\))?\s*$")
_HEADER_RE = re.compile(r"^(Author|AuthorDate|Commit|CommitDate|Merge|Date):\s*(.*)$")
_NUMSTAT_RE = re.compile(r"^(?:\d+|-)\t(?:\d+|-)\t(.+)$")
_RAW_RE = re.compile(r"^:+\d{6}(?: \d{6})+ (?:[0-9a-f.]+ )+[A-Z]+\d*\t(.+)$")
_TAG_RE = re.compile(r"tag: (?:refs/tags/)?([^,)]+)")
_RENAME_RE = re.compile(r"\{([^{}]*) => ([^{}]*)\}")

DEFAULT_TEST_GLOBS = (
    "tests/*", "*/tests/*", "test/*", "*/test/*", "*/functional/*", "*/integration/*", "tempest/*",
    "*/tempest/*", "test_*.py", "*/test_*.py", "*_test.py", "*_test.go", "*Test.java", "*Tests.java",
    "*IT.java", "spec/*", "*_spec.rb", "*.t", "t/*", "*/t/*", "*/marvin/*", "test/integration/*",
)
# Trailers and subjects that close a ticket, and those that only make progress on one.
_CLOSING_TRAILER_RE = re.compile(r"^\s*(Closes-Bug|Fixes-Bug|Fixes|Closes|Resolves|Resolve|Fix)\s*:\s*(.+)$",
                                 re.I | re.M)
_PROGRESS_TRAILER_RE = re.compile(r"^\s*(Partial-Bug|Related-Bug|Related|Partial|Implements|"
                                  r"Partially-Implements|Related-Blueprint)\s*:\s*(.+)$", re.I | re.M)
_GITHUB_KEYWORD_RE = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s+#(\d+)\b", re.I)
_SUBJECT_JIRA_RE = re.compile(r"\b([A-Z][A-Z0-9]{1,15}-\d{1,7})\b")


@dataclass
class Commit:
    sha: str
    parents: list[str]
    author: str = ""
    author_date: datetime | None = None
    committer: str = ""
    commit_date: datetime | None = None
    message: str = ""
    files: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    position: str = ""

    @property
    def subject(self) -> str:
        return self.message.strip().split("\n", 1)[0].strip()

    @property
    def is_merge(self) -> bool:
        return len(self.parents) > 1


@dataclass
class TicketLink:
    """What one commit says about one ticket."""

    ref: str
    kind: str  # "fix" (closes it) or "progress" (partial, related)


def iter_commits(path: Path) -> Iterator[Commit | ImportProblem]:
    """Commits of a saved log file or a repository folder, newest first as git prints them."""
    if path.is_dir():
        if not (path / ".git").exists() and not (path / "HEAD").exists():
            # A folder of saved logs: read each one.
            files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            if not files:
                yield ImportProblem(str(path), "folder", "neither a git repository nor saved git logs")
            for f in files:
                yield from iter_commits(f)
            return
        try:
            # git from PATH on purpose: the operator's own git reads the operator's repository.
            command = ["git", "-C", str(path), "log", "--format=fuller", "--numstat", "--decorate=full", "--parents"]
            out = subprocess.run(command, capture_output=True, check=True, timeout=600).stdout  # noqa: S603
        except (OSError, subprocess.SubprocessError) as exc:
            yield ImportProblem(str(path), "folder", f"git log failed: {exc}")
            return
        yield from parse_log(out.decode("utf-8", "replace").splitlines(), str(path))
        return
    try:
        with open_archive(path) as fh:
            lines = (raw.decode("utf-8", "replace").rstrip("\r\n") for raw in fh)
            yield from parse_log(lines, str(path))
    except (OSError, EOFError) as exc:
        yield ImportProblem(str(path), "file", f"cannot read: {exc}")


def parse_log(lines: Iterable[str], source: str) -> Iterator[Commit | ImportProblem]:
    """Split git log text into commits; a block that is not a commit is a problem, not a crash."""
    current: Commit | None = None
    body: list[str] = []
    reported = False  # text that is not git log is reported once, where it starts
    for number, line in enumerate(lines, 1):
        line = line.replace("\r", "")
        m = _COMMIT_RE.match(line)
        if m:
            if current is not None:
                yield _finish(current, body)
            parents = m.group(2).split()
            current = Commit(sha=m.group(1), parents=parents, position=f"line {number}",
                             tags=_TAG_RE.findall(m.group(3) or ""))
            body = []
            continue
        if current is None:
            if line.strip() and not reported:
                reported = True
                yield ImportProblem(source, f"line {number}", "not git log output: no `commit <sha>` line before it")
            continue
        h = _HEADER_RE.match(line)
        if h and not body:
            key, value = h.group(1), h.group(2).strip()
            if key == "Author":
                current.author = value
            elif key in ("AuthorDate", "Date"):
                current.author_date = parse_date(value)
            elif key == "Commit":
                current.committer = value
            elif key == "CommitDate":
                current.commit_date = parse_date(value)
            elif key == "Merge" and len(current.parents) < 2:
                current.parents = value.split()
            continue
        if line.startswith("    ") or (line == "" and not current.files):
            body.append(line[4:] if line.startswith("    ") else "")
            continue
        f = _NUMSTAT_RE.match(line) or _RAW_RE.match(line)
        if f:
            current.files.append(_new_path(f.group(1)))
    if current is not None:
        yield _finish(current, body)


def _new_path(spec: str) -> str:
    """The path after a rename: `a\tb` (raw) or `{x => y}/f` (numstat)."""
    if "\t" in spec:
        spec = spec.split("\t")[-1]
    spec = _RENAME_RE.sub(lambda m: m.group(2), spec)
    if " => " in spec:
        spec = spec.split(" => ")[-1]
    return spec.replace("//", "/")


def _finish(commit: Commit, body: list[str]) -> Commit:
    commit.message = "\n".join(body).strip("\n")
    commit.files = list(dict.fromkeys(commit.files))
    return commit


def touches_tests(commit: Commit, globs: Iterable[str] = DEFAULT_TEST_GLOBS) -> bool:
    """True when the commit changes a file the globs call a test."""
    patterns = list(globs)
    return any(fnmatch.fnmatch(f, g) or fnmatch.fnmatch(f.rsplit("/", 1)[-1], g) for f in commit.files
               for g in patterns)


def ticket_links(commit: Commit, *, jira_projects: Iterable[str], repo: str | None = None) -> list[TicketLink]:
    """Which tickets a commit closes and which it only advances."""
    if commit.is_merge:
        return []
    projects = frozenset(jira_projects)
    msg = commit.message
    links: dict[str, str] = {}

    def add(refs: list[str], kind: str) -> None:
        for ref in refs:
            if links.get(ref) != "fix":
                links[ref] = kind

    for m in _PROGRESS_TRAILER_RE.finditer(msg):
        value = m.group(2)
        if m.group(1).lower().endswith(("blueprint", "implements")):
            add([f"bp:{value.strip().split()[-1].lower()}"], "progress")
        else:
            add(_trailer_refs(value, projects, repo, bug=m.group(1).lower().endswith("bug")), "progress")
    for m in _CLOSING_TRAILER_RE.finditer(msg):
        if re.fullmatch(r"\s*[0-9a-f]{7,40}\b.*", m.group(2)) and "bug" not in m.group(1).lower():
            continue  # kernel-style "Fixes: <sha> (subject)" names a commit, not a ticket
        add(_trailer_refs(m.group(2), projects, repo, bug=m.group(1).lower().endswith("bug")), "fix")
    if repo:
        add([f"gh:{repo}#{int(n)}" for n in _GITHUB_KEYWORD_RE.findall(msg)], "fix")
    # CloudStack's convention: the Jira key in the subject of the fixing commit.
    subject_keys = [k for k in _SUBJECT_JIRA_RE.findall(commit.subject) if k.rsplit("-", 1)[0] in projects]
    add([f"jira:{k}" for k in subject_keys], "fix")
    return [TicketLink(ref, kind) for ref, kind in links.items()]


def _trailer_refs(value: str, projects: frozenset[str], repo: str | None, bug: bool = False) -> list[str]:
    if bug:  # Launchpad trailers: "#1552446" or "1552446", possibly several
        return [f"lp:{int(n)}" for n in re.findall(r"#?(\d{3,8})\b", value)]
    found = extract_refs(value, jira_projects=projects, repo=repo)
    if not found:
        found = [f"jira:{k}" for k in _SUBJECT_JIRA_RE.findall(value) if k.rsplit("-", 1)[0] in projects]
    return found
