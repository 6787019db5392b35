"""Field reports from files: JSON, JSON Lines, CSV, YAML, and post-mortem pages (a Redmine
"five whys" ticket as pasted). Pure: yields raw field dicts with their position, or problems;
validation and storing are the portal's (portal/reports.py)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .model import ImportProblem
from .pages import detect_page, parse_page

# What people call the fields, folded to the names Earshot uses.
ALIASES = {
    "summary": "title", "subject": "title", "name": "title",
    "version": "release", "openstack_release": "release", "cloudstack_version": "release",
    "os": "distro", "distribution": "distro",
    "hosts": "nodes", "compute_nodes": "nodes", "vms": "instances", "servers": "instances",
    "description": "what_happened", "what_happened_": "what_happened", "problem": "what_happened",
    "steps_to_reproduce": "steps", "reproduce": "steps", "how_to_reproduce": "steps",
    "expected_result": "expected", "expected_behaviour": "expected", "expected_behavior": "expected",
    "actual_result": "actual", "actual_behaviour": "actual", "actual_behavior": "actual",
    "log": "log_excerpt", "logs": "log_excerpt", "log_excerpts": "log_excerpt",
    "tickets": "refs", "references": "refs", "ticket_refs": "refs", "bugs": "refs",
    "urls": "links", "link": "links",
    "what_worked_well": "went_well", "what_went_well": "went_well",
    "improvements": "ideas", "acceptance": "acceptance_criteria",
    "reporter": "author", "email": "author", "date": "created", "created_at": "created",
    "id": "key", "external_id": "key",
}

# Post-mortem headings (## What happened?) and the field each fills.
SECTIONS = [
    (re.compile(r"what\s+happened", re.I), "what_happened"),
    (re.compile(r"(five|5)[\s-]*whys?", re.I), "five_whys"),
    (re.compile(r"what\s+(worked|went)\s+well", re.I), "went_well"),
    (re.compile(r"ideas|improvements|follow[\s-]*ups?", re.I), "ideas"),
    (re.compile(r"acceptance\s+criteria", re.I), "acceptance_criteria"),
    (re.compile(r"suggestions?", re.I), "suggestions"),
    (re.compile(r"steps\s+to\s+reproduce", re.I), "steps"),
    (re.compile(r"workarounds?", re.I), "workaround"),
    (re.compile(r"expected", re.I), "expected"),
    (re.compile(r"(observed|actual)", re.I), "actual"),
]
_HEADING_RE = re.compile(r"^\s{0,3}#{2,3}\s+(.+?)\s*#*\s*$")


@dataclass
class RawReport:
    """One report as a file gave it: field -> value, and where it was."""

    fields: dict[str, Any]
    source_file: str
    position: str
    source: str


def field_name(key: str) -> str:
    folded = re.sub(r"[^a-z0-9]+", "_", str(key).strip().lower()).strip("_")
    return ALIASES.get(folded, folded)


def _fold(obj: dict[str, Any]) -> dict[str, Any]:
    return {field_name(k): v for k, v in obj.items() if str(k).strip()}


def sniff(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".json", ".jsonl", ".ndjson", ".csv", ".yaml", ".yml"):
        return {".ndjson": "jsonl", ".yml": "yaml"}.get(suffix, suffix[1:])
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        return "json"
    if detect_page(text) == "redmine" or _HEADING_RE.match(stripped.splitlines()[0] if stripped else ""):
        return "postmortem"
    if stripped.startswith(("---", "- ")):
        return "yaml"
    return "csv"


def read_reports(path: Path, *, now: datetime | None = None) -> Iterator[RawReport | ImportProblem]:
    """Every report in a file, each with its position; what cannot be read is a problem and the
    rest still comes."""
    name = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        yield ImportProblem(name, "file", f"cannot read: {exc.strerror or exc}")
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    kind = sniff(path, text)
    if kind == "json":
        yield from _json(text, name)
    elif kind == "jsonl":
        yield from _jsonl(text, name)
    elif kind == "csv":
        yield from _csv(text, name)
    elif kind == "yaml":
        yield from _yaml(text, name)
    else:
        yield from _postmortem(text, name, data, now or datetime.now(UTC))


def _items(obj: Any) -> list[Any] | None:
    if isinstance(obj, list):
        return obj
    if isinstance(obj, dict):
        inner = obj.get("reports") if "reports" in obj else obj.get("field_reports")
        return inner if isinstance(inner, list) else [obj]
    return None


def _objects(items: list[Any], name: str, what: str, source: str) -> Iterator[RawReport | ImportProblem]:
    for i, item in enumerate(items, 1):
        if isinstance(item, dict):
            yield RawReport(_fold(item), name, f"{what} {i}", source)
        else:
            yield ImportProblem(name, f"{what} {i}", f"a report is an object of fields, not {type(item).__name__}")


def _json(text: str, name: str) -> Iterator[RawReport | ImportProblem]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        # Perhaps JSON Lines without the suffix.
        if text.lstrip().startswith("{") and "\n{" in text:
            yield from _jsonl(text, name)
            return
        yield ImportProblem(name, f"line {exc.lineno} column {exc.colno}", f"not JSON: {exc.msg}")
        return
    items = _items(obj)
    if items is None:
        yield ImportProblem(name, "file", "expected a list of reports or {\"reports\": [...]}")
        return
    yield from _objects(items, name, "item", "json")


def _jsonl(text: str, name: str) -> Iterator[RawReport | ImportProblem]:
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield ImportProblem(name, f"line {n} column {exc.colno}", f"not JSON: {exc.msg}")
            continue
        if isinstance(obj, dict):
            yield RawReport(_fold(obj), name, f"line {n}", "json")
        else:
            yield ImportProblem(name, f"line {n}", "a report is an object of fields")


def _csv(text: str, name: str) -> Iterator[RawReport | ImportProblem]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        yield ImportProblem(name, "line 1", "empty CSV file")
        return
    except csv.Error as exc:
        yield ImportProblem(name, "line 1", f"unreadable CSV header: {exc}")
        return
    columns = [field_name(h) for h in header]
    if "title" not in columns:
        yield ImportProblem(name, "line 1", f"the header names no title column (columns: {', '.join(header)})")
        return
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield ImportProblem(name, f"line {line}", f"unreadable CSV row: {exc}")
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(columns):
            yield ImportProblem(name, f"line {line}", f"{len(row)} cells under {len(columns)} columns")
            continue
        yield RawReport({c: v for c, v in zip(columns, row, strict=False) if c}, name, f"line {line}", "csv")


def _yaml(text: str, name: str) -> Iterator[RawReport | ImportProblem]:
    import yaml

    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark is not None else "file"
        yield ImportProblem(name, where, f"not YAML: {getattr(exc, 'problem', None) or exc}")
        return
    items: list[Any] = []
    for doc in docs:
        if doc is None:
            continue
        found = _items(doc)
        if found is None:
            yield ImportProblem(name, "file", "expected a list of reports or reports: [...]")
            return
        items.extend(found)
    yield from _objects(items, name, "item", "yaml")


def split_sections(body: str) -> tuple[dict[str, str], str]:
    """Markdown `## Heading` sections mapped to report fields; text before the first heading and
    under unknown headings is returned as notes (with its heading), never dropped."""
    fields: dict[str, list[str]] = {}
    notes: list[str] = []
    current: str | None = None
    heading = ""
    for line in body.splitlines():
        m = _HEADING_RE.match(line)
        if m:
            heading = m.group(1).strip().rstrip("?:").strip()
            current = next((f for rx, f in SECTIONS if rx.fullmatch(heading) or rx.match(heading)), None)
            if current is None:
                notes.append(f"## {heading}")
            continue
        (fields.setdefault(current, []) if current else notes).append(line)
    out = {k: _dedent("\n".join(v)) for k, v in fields.items()}
    return {k: v for k, v in out.items() if v}, _dedent("\n".join(notes))


def _dedent(text: str) -> str:
    lines = text.strip("\n").splitlines()
    margin = min((len(x) - len(x.lstrip(" ")) for x in lines if x.strip()), default=0)
    return "\n".join(x[margin:].rstrip() for x in lines).strip()


def _first_sentence(text: str, limit: int = 110) -> str:
    plain = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", text)
    plain = re.sub(r"^\s*(?:[*\-]|\d+\.)\s+", "", plain, flags=re.M)
    first = re.split(r"(?<=[.!?])\s|\n", plain.strip(), maxsplit=1)[0].strip()
    return first if len(first) <= limit else first[: limit - 1].rsplit(" ", 1)[0] + "…"


def _postmortem(text: str, name: str, raw: bytes, now: datetime) -> Iterator[RawReport | ImportProblem]:
    if detect_page(text) == "redmine":
        try:
            [msg] = parse_page(text, source_file=name, raw=raw, now=now)
        except ValueError as exc:
            yield ImportProblem(name, "page", str(exc))
            return
        fields, notes = split_sections(msg.new_text)
        subject = msg.subject
        ticket = msg.own_refs[0] if msg.own_refs else ""
        if ":" not in subject and fields.get("what_happened"):
            subject = f"Post-mortem {subject}: {_first_sentence(fields['what_happened'])}"
        key = f"redmine-{ticket.split(':', 1)[-1]}" if ticket else ""
        out: dict[str, Any] = {"title": subject, "author": msg.author_name, "refs": [ticket] if ticket else [],
                               "created": msg.date.isoformat() if msg.date else "", "key": key, **fields}
        if notes:
            out["notes"] = notes
        yield RawReport(out, name, "page", "postmortem")
        return
    fields, notes = split_sections(text)
    if not fields:
        yield ImportProblem(name, "file", "not JSON, CSV, YAML or a post-mortem page with ## sections")
        return
    # A level-one heading is the title; otherwise the first sentence of what happened.
    top = re.match(r"\s*#\s+(.+)", text)
    title = top.group(1).strip() if top else f"Post-mortem: {_first_sentence(fields.get('what_happened', ''))}"
    yield RawReport({"title": title, **fields, **({"notes": notes} if notes else {})}, name, "page", "postmortem")
