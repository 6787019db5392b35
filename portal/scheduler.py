"""The one scheduler process (`flask scheduler run`): the weekly digest and the periodic jobs.

Web workers never run jobs. Only one scheduler may run: with PostgreSQL it holds a session-level
advisory lock for its whole life (a second one started by mistake waits on it); with SQLite it
holds an exclusive lock on a file in the data folder (same host only, as SQLite is).
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from . import db as dbmod

log = logging.getLogger("earshot.scheduler")
LOCK_KEY = 0x6561727368  # "earsh": one number for every Earshot scheduler on a database


@contextmanager
def single_instance(config: Any, *, on_wait: Any = None) -> Iterator[None]:
    """Hold the scheduler lock while the block runs; wait for it if another scheduler has it."""
    url = str(config["SQLALCHEMY_URL"])
    if url.startswith("postgresql"):
        with dbmod.engine().connect() as conn:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
            if not got:
                if on_wait:
                    on_wait()
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                conn.commit()
        return
    path = Path(str(config["DATA_DIR"])) / "scheduler.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def previous_week(now: datetime) -> datetime:
    """A moment inside the ISO week before `now` (the week a Monday digest reports on)."""
    return now - timedelta(days=7)


def weekly_digest(app: Any, now: datetime | None = None) -> dict[str, Any]:
    """Send the digest of the week that just ended, in the cycle that holds it."""
    from .cycles import all_cycles, cycle_at
    from .digest import send_week, week_of
    from .models import utcnow

    with app.app_context(), dbmod.session_scope() as session:
        moment = previous_week(now or utcnow())
        week = week_of(moment)
        cycle = cycle_at(all_cycles(session), week.start + timedelta(days=6))
        if cycle is None:
            log.info("digest: no cycle holds %s; nothing sent", week.name)
            return {"week": week.name, "cycle": None}
        result = send_week(session, app.config, cycle, week)
        log.info("digest %s %s: %s", cycle.name, week.name, result)
        return {"week": week.name, "cycle": cycle.name, **result}


def refresh_painpoints(app: Any) -> None:
    from .cli import _reindex
    from .painpoints import refresh_all

    with app.app_context():
        with dbmod.session_scope() as session:
            log.info("refreshed %d pain points", refresh_all(session))
        log.info("search index: %s", _reindex(painpoint_ids=None, tickets=True))


def poll_sources(app: Any, now: datetime | None = None) -> list[dict[str, Any]]:
    """Poll the sources that are due, one after another; one that fails or times out is recorded
    on its own row and never stops the others."""
    from .models import utcnow
    from .polling import due, fetcher_from, poll

    results = []
    with app.app_context(), dbmod.session_scope() as session:
        fetcher = fetcher_from(app.config)
        for source in due(session, now or utcnow()):
            try:
                results.append(poll(session, source, fetcher, now=now).as_dict())
            except Exception:  # noqa: BLE001 - logged, and the next source still runs
                log.exception("source %s failed", source.name)
                session.rollback()
    for r in results:
        log.info("source %s: %s, %d new", r["source"], r["status"], r["messages_new"])
    return results


def build(app: Any) -> Any:
    """The scheduler with its jobs (not started)."""
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.cron import CronTrigger

    zone = ZoneInfo(str(app.config["DIGEST_TIMEZONE"]))
    scheduler = BlockingScheduler(timezone=zone)
    scheduler.add_job(weekly_digest, CronTrigger(day_of_week=str(app.config["DIGEST_DAY"]),
                                                 hour=int(app.config["DIGEST_HOUR"]), timezone=zone),
                      args=[app], id="weekly-digest", coalesce=True, max_instances=1, misfire_grace_time=6 * 3600)
    # Recency in impact moves every day; statuses follow tickets fetched by other jobs.
    scheduler.add_job(refresh_painpoints, CronTrigger(hour=3, timezone=zone), args=[app], id="refresh-painpoints",
                      coalesce=True, max_instances=1)
    scheduler.add_job(poll_sources, "interval", minutes=int(app.config["SOURCES_CHECK_MINUTES"]), args=[app],
                      id="poll-sources", coalesce=True, max_instances=1)
    return scheduler
