"""Per-component counts and monthly trends, for the components page and its API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from .classify import Taxonomy
from .models import Message, MessageComponent


def _month_index(dt: datetime) -> int:
    return dt.year * 12 + dt.month - 1


def component_stats(session: Session, taxonomy: Taxonomy, bins: int = 24) -> dict[str, Any]:
    """Threads per component, and threads started over time: the span from the first to the
    newest message cut into at most `bins` equal runs of whole months."""
    rows = session.execute(
        select(MessageComponent.component, Message.thread_id, func.min(Message.date))
        .join(Message, Message.id == MessageComponent.message_pk)
        .group_by(MessageComponent.component, Message.thread_id)).all()
    first, last = session.execute(select(func.min(Message.date), func.max(Message.date))).one()
    labels: list[str] = []
    width = 1
    start = 0
    if first is not None and last is not None:
        start, end = _month_index(first), _month_index(last)
        span = end - start + 1
        width = -(-span // bins)  # months per bin, rounded up
        count = -(-span // width)
        labels = [f"{(start + i * width) // 12:04d}-{(start + i * width) % 12 + 1:02d}" for i in range(count)]
    stats: dict[str, dict[str, Any]] = {}
    for name, comp in taxonomy.components.items():
        stats[name] = {"name": name, "description": comp.description, "owner": comp.owner, "threads": 0,
                       "series": [0] * len(labels)}
    for component, _tid, began in rows:
        entry = stats.get(component)
        if entry is None:
            continue
        entry["threads"] += 1
        if began is not None and labels:
            entry["series"][min((_month_index(began) - start) // width, len(labels) - 1)] += 1
    return {"months": labels, "months_per_point": width,
            "components": sorted(stats.values(), key=lambda e: (-e["threads"], e["name"]))}


def sparkline(series: list[int], width: int = 240, height: int = 40) -> dict[str, Any]:
    """Points of an SVG polyline for a series (drawn server-side: no script needed)."""
    if not series:
        return {"points": "", "width": width, "height": height, "max": 0}
    top = max(series) or 1
    step = width / max(len(series) - 1, 1)
    points = " ".join(f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}" for i, v in enumerate(series))
    return {"points": points, "width": width, "height": height, "max": max(series)}
