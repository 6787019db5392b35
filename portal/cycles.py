"""Release cycles: from data/cycles.toml (or EARSHOT_CYCLES) and the database, which wins by name."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import select
from sqlmodel import Session

from .models import Cycle

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CYCLES = ROOT / "data" / "cycles.toml"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class CycleError(ValueError):
    """A cycle file or a new cycle that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class CycleSpan:
    name: str
    start: datetime
    end: datetime
    source: str = "file"

    def holds(self, when: datetime | None) -> bool:
        return when is not None and self.start <= when < self.end

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "start": self.start.date().isoformat(), "end": self.end.date().isoformat(),
                "source": self.source}


def _day(value: object, where: str) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            return datetime.strptime(value, "%Y-%m-%d")
        except ValueError:
            pass
    raise CycleError(f"{where}: expected a date YYYY-MM-DD, got {value!r}")


def load_file(path: str | Path | None = None) -> list[CycleSpan]:
    """Cycles of a TOML file, `[cycles.NAME] start = YYYY-MM-DD, end = YYYY-MM-DD`."""
    p = Path(path or DEFAULT_CYCLES)
    if not p.exists():
        return []
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CycleError(f"{p}: {exc}") from exc
    spans = []
    for name, entry in (data.get("cycles") or {}).items():
        where = f"{p}: [cycles.{name}]"
        if not isinstance(entry, dict):
            raise CycleError(f"{where}: expected a table with start and end")
        spans.append(check(name, _day(entry.get("start"), f"{where} start"), _day(entry.get("end"), f"{where} end"),
                           source="file"))
    return spans


def check(name: str, start: datetime, end: datetime, *, source: str) -> CycleSpan:
    if not NAME_RE.match(name):
        raise CycleError(f"cycle name {name!r}: letters, digits, '.', '_' and '-' only")
    if end <= start:
        raise CycleError(f"cycle {name}: its end {end.date()} is not after its start {start.date()}")
    return CycleSpan(name, start, end, source)


def all_cycles(session: Session, path: str | Path | None = None) -> list[CycleSpan]:
    """Every cycle, oldest first (the file is EARSHOT_CYCLES when not given)."""
    if path is None and has_app_context():
        path = current_app.config.get("CYCLES") or None
    spans = {c.name: c for c in load_file(path)}
    for row in session.execute(select(Cycle)).scalars():
        spans[row.name] = CycleSpan(row.name, row.start, row.end, row.source)
    return sorted(spans.values(), key=lambda c: (c.start, c.name))


def add_cycle(session: Session, name: str, start: datetime, end: datetime, *, source: str = "cli") -> CycleSpan:
    """Store a cycle (or move the dates of one stored before)."""
    span = check(name, start, end, source=source)
    row = session.execute(select(Cycle).where(Cycle.name == name)).scalars().first() or Cycle(name=name, start=start,
                                                                                               end=end)
    row.start, row.end, row.source = start, end, source
    session.add(row)
    return span


def cycle_at(cycles: list[CycleSpan], when: datetime) -> CycleSpan | None:
    for c in cycles:
        if c.holds(when):
            return c
    return None


def find(cycles: list[CycleSpan], name: str) -> CycleSpan | None:
    key = name.casefold()
    return next((c for c in cycles if c.name.casefold() == key), None)


def releases_named(cycles: list[CycleSpan], text: str) -> set[str]:
    """The cycles a text names as releases someone runs ("we run Icehouse", "after the Juno upgrade").

    Release names are often words ("Train", "Rocky", "Queens"), so a name counts only capitalised
    as a name, and not as the first word of a sentence or line."""
    if not cycles or not text:
        return set()
    by_name = {c.name.casefold(): c.name for c in cycles}
    found = set()
    for m in re.finditer(r"(?<![\w.])([A-Z][a-z]+|[0-9]{4}\.[12])(?![\w])", text):
        before = text[:m.start()].rstrip(" \t")
        if not before or before[-1] in ".!?\n:":
            continue
        name = by_name.get(m.group(1).casefold())
        if name:
            found.add(name)
    return found
