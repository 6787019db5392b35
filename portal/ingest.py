"""Store what the importers read: de-duplicate, merge people, thread (JWZ-style), record runs.

The importers are pure; everything that touches the database for an import lives here, so the
CLI, the scheduler and a web upload share one path.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, insert, or_, select, update
from sqlmodel import Session

from importers.model import ImportProblem, ParsedMessage
from importers.sources import iter_path
from importers.text import clean_text, is_reply_subject, name_key, normalize_subject, subject_key

from .models import ImportProblemRow, ImportRun, MailingList, Message, MessageRef, Person, Thread, utcnow

MSG = Message.__table__
REF = MessageRef.__table__
THREAD = Thread.__table__


def list_role_for(name: str) -> str:
    """A new list's role from its name: operators/users lists hurt, -dev lists fix."""
    lowered = name.lower()
    if any(word in lowered for word in ("operator", "users", "-ops", "user@", "ops.")):
        return "operator"
    if "dev" in lowered:
        return "developer"
    return "unknown"


def fingerprint(msg: ParsedMessage) -> str | None:
    """Author, UTC second and subject: the same message seen through two archive forms."""
    if msg.date is None:
        return None
    who = msg.author_email or name_key(msg.author_name)
    if not who:
        return None
    # The whole subject (reply prefix included), so a quick reply to oneself is not taken for a copy.
    subject = " ".join(msg.subject.split()).casefold()
    key = f"{who}|{msg.date.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S')}|{subject}"
    return hashlib.sha1(key.encode("utf-8", "replace")).hexdigest()


def _naive(dt: datetime | None) -> datetime | None:
    return dt.astimezone(UTC).replace(tzinfo=None) if dt else None


@dataclass
class ImportResult:
    run_id: int | None = None
    messages_seen: int = 0
    messages_new: int = 0
    duplicates: int = 0
    threads: set[int] = field(default_factory=set)
    problems: list[ImportProblem] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "messages_seen": self.messages_seen,
            "messages_new": self.messages_new,
            "duplicates": self.duplicates,
            "threads_touched": len(self.threads),
            "problems": [p.as_dict() for p in self.problems],
        }


class Ingest:
    """One import run: feed it ParsedMessages, it stores each exactly once."""

    def __init__(self, session: Session, *, batch_size: int = 500, subject_window_days: int = 30):
        self.session = session
        self.batch_size = batch_size
        self.window = timedelta(days=subject_window_days)
        self._lists: dict[str, tuple[int, str]] = {}
        self.result = ImportResult()

    # -- public -------------------------------------------------------------------------------

    def run(self, paths: Iterable[Path], *, fmt: str = "auto", list_name: str | None = None,
            now: datetime | None = None, progress: Callable[[int], None] | None = None) -> ImportResult:
        """Import every path; one bad message never stops the others."""
        paths = list(paths)
        run = ImportRun(paths="\n".join(str(p) for p in paths), format=fmt, list_name=list_name)
        self.session.add(run)
        self.session.commit()
        self.result.run_id = run.id
        batch: list[ParsedMessage] = []
        try:
            for path in paths:
                for item in iter_path(path, fmt, list_name=list_name, now=now, progress=progress):
                    if isinstance(item, ImportProblem):
                        self.result.problems.append(item)
                        continue
                    self.result.messages_seen += 1
                    batch.append(item)
                    if len(batch) >= self.batch_size:
                        self._store_batch(batch)
                        batch = []
            if batch:
                self._store_batch(batch)
            run.status = "done"
        except BaseException:
            run.status = "failed"
            raise
        finally:
            self.session.rollback()
            run = self.session.get(ImportRun, self.result.run_id) or run
            run.finished_at = utcnow()
            run.messages_new = self.result.messages_new
            run.duplicates = self.result.duplicates
            run.threads_touched = len(self.result.threads)
            run.problem_count = len(self.result.problems)
            for p in self.result.problems:
                self.session.add(ImportProblemRow(run_id=run.id, file=clean_text(p.file), where=p.where[:200],
                                                  reason=clean_text(p.reason)))
            self.session.add(run)
            self.session.commit()
        return self.result

    def store(self, messages: list[ParsedMessage]) -> ImportResult:
        """Store already-parsed messages (web upload, tests) in one batch."""
        self._store_batch(messages)
        return self.result

    # -- batches ------------------------------------------------------------------------------

    def _store_batch(self, batch: list[ParsedMessage]) -> None:
        snapshot = (self.result.messages_new, self.result.duplicates, set(self.result.threads))
        try:
            touched: set[int] = set()
            outcomes = [self._store_one(m, touched) for m in batch]
            self._refresh_threads(touched)
            self.session.commit()
            self._count(outcomes, touched)
        except Exception:  # noqa: BLE001 - retry one by one to isolate the bad message
            self.session.rollback()
            self._lists.clear()
            self.result.messages_new, self.result.duplicates, self.result.threads = snapshot
            for msg in batch:
                touched = set()
                try:
                    outcome = self._store_one(msg, touched)
                    self._refresh_threads(touched)
                    self.session.commit()
                    self._count([outcome], touched)
                except Exception as exc:  # noqa: BLE001
                    self.session.rollback()
                    self._lists.clear()
                    reason = f"could not store: {exc.__class__.__name__}: {exc}"[:500]
                    self.result.problems.append(ImportProblem(msg.source_file, msg.position, reason))

    def _count(self, outcomes: list[bool], touched: set[int]) -> None:
        self.result.messages_new += sum(outcomes)
        self.result.duplicates += len(outcomes) - sum(outcomes)
        self.result.threads |= touched

    # -- one message --------------------------------------------------------------------------

    def _store_one(self, msg: ParsedMessage, touched: set[int]) -> bool:
        """Store one message; False when it was already there."""
        s = self.session
        fp = fingerprint(msg)
        if s.execute(select(MSG.c.id).where(MSG.c.message_id == msg.message_id)).first():
            return False
        if fp:
            same = s.execute(select(MSG.c.id, MSG.c.message_id_generated, MSG.c.thread_id)
                             .where(MSG.c.fingerprint == fp)).first()
            if same:
                if same.message_id_generated and not msg.message_id_generated:
                    self._adopt_real_id(same.id, same.thread_id, msg, touched)
                return False
        list_id, list_role = self._list(msg.list_name or "unknown")
        person_id = self._person(msg, list_role)
        thread_id, parent_id = self._thread_for(msg, list_id, touched)
        row = {
            "message_id": msg.message_id[:998],
            "message_id_generated": msg.message_id_generated,
            "fingerprint": fp,
            "list_id": list_id,
            "thread_id": thread_id,
            "parent_id": parent_id,
            "person_id": person_id,
            "subject": clean_text(msg.subject),
            "date": _naive(msg.date),
            "in_reply_to": msg.in_reply_to[:998] if msg.in_reply_to else None,
            "new_text": clean_text(msg.new_text),
            "quoted_text": clean_text(msg.quoted_text),
            "raw": zlib.compress(msg.raw, 3),
            "source_format": msg.source_format[:40],
            "source_file": clean_text(msg.source_file),
            "recovered": msg.recovered,
            "imported_at": utcnow(),
        }
        pk = s.execute(insert(MSG).values(**row)).inserted_primary_key[0]
        self._add_refs(pk, msg)
        # Children that arrived before their parent now point at it.
        s.execute(update(MSG).where(MSG.c.in_reply_to == msg.message_id, MSG.c.parent_id.is_(None))
                  .values(parent_id=pk))
        touched.add(thread_id)
        return True

    def _add_refs(self, pk: int, msg: ParsedMessage) -> None:
        refs = list(dict.fromkeys(r[:998] for r in msg.references if r))
        if refs:
            self.session.execute(insert(REF), [{"message_pk": pk, "ref": r} for r in refs])

    def _adopt_real_id(self, pk: int, thread_id: int, msg: ParsedMessage, touched: set[int]) -> None:
        """A message stored from a page without headers meets its real Message-ID: take it, and
        the threading it brings."""
        s = self.session
        s.execute(update(MSG).where(MSG.c.id == pk).values(
            message_id=msg.message_id, message_id_generated=False,
            in_reply_to=msg.in_reply_to[:998] if msg.in_reply_to else None))
        known = {r for (r,) in s.execute(select(REF.c.ref).where(REF.c.message_pk == pk))}
        new_refs = [r for r in dict.fromkeys(msg.references) if r not in known]
        if new_refs:
            s.execute(insert(REF), [{"message_pk": pk, "ref": r[:998]} for r in new_refs])
        related = self._related_threads([msg.message_id, *msg.references]) - {thread_id}
        if related:
            self._merge([thread_id, *related], touched)
        touched.add(self._thread_of(pk))

    # -- lists and people ---------------------------------------------------------------------

    def _list(self, name: str) -> tuple[int, str]:
        name = clean_text(name).strip().lower()[:200] or "unknown"
        if name not in self._lists:
            row = self.session.execute(select(MailingList.id, MailingList.role).where(MailingList.name == name)).first()
            if row is None:
                ml = MailingList(name=name, role=list_role_for(name))
                self.session.add(ml)
                self.session.flush()
                self._lists[name] = (int(ml.id or 0), ml.role)
            else:
                self._lists[name] = (int(row[0]), str(row[1]))
        return self._lists[name]

    def _person(self, msg: ParsedMessage, list_role: str) -> int | None:
        s = self.session
        email = clean_text(msg.author_email).strip().lower()[:320] or None
        name = clean_text(msg.author_name).strip()[:300]
        key = name_key(name)[:300]
        if not email and not key:
            return None
        if email:
            row = s.execute(select(Person.id, Person.name).where(Person.email == email)).first()
            if row:
                if not row.name and name:
                    s.execute(update(Person.__table__).where(Person.id == row.id).values(name=name, name_key=key))
                return int(row.id)
            if key:
                # Archives that hide addresses stored this person by name; give them the address.
                nameless = s.execute(select(Person.id).where(Person.name_key == key, Person.email.is_(None))
                                     .limit(1)).first()
                if nameless:
                    s.execute(update(Person.__table__).where(Person.id == nameless.id).values(email=email))
                    return int(nameless.id)
        else:
            row = s.execute(select(Person.id).where(Person.name_key == key).order_by(Person.id).limit(1)).first()
            if row:
                return int(row.id)
        person = Person(email=email, name=name, name_key=key, role=list_role if list_role in ("operator", "developer")
                        else "unknown")
        s.add(person)
        s.flush()
        return person.id

    # -- threading ----------------------------------------------------------------------------

    def _thread_of(self, pk: int) -> int:
        return int(self.session.execute(select(MSG.c.thread_id).where(MSG.c.id == pk)).scalar_one())

    def _related_threads(self, ids: list[str]) -> set[int]:
        """Threads of messages that share any of these ids (as their own id or as a reference):
        children that arrived first, and siblings under a ghost parent."""
        ids = [i for i in dict.fromkeys(ids) if i]
        if not ids:
            return set()
        found = {t for (t,) in self.session.execute(select(MSG.c.thread_id).where(MSG.c.message_id.in_(ids)))}
        found |= {t for (t,) in self.session.execute(
            select(MSG.c.thread_id).join(REF, REF.c.message_pk == MSG.c.id).where(REF.c.ref.in_(ids)).distinct())}
        return found

    def _thread_for(self, msg: ParsedMessage, list_id: int, touched: set[int]) -> tuple[int, int | None]:
        s = self.session
        parent_id = None
        refs = [r for r in dict.fromkeys(msg.references) if r]
        if msg.in_reply_to and msg.in_reply_to not in refs:
            refs.append(msg.in_reply_to)
        if refs:
            rows = s.execute(select(MSG.c.id, MSG.c.message_id).where(MSG.c.message_id.in_(refs))).all()
            by_id = {r.message_id: r.id for r in rows}
            for candidate in ([msg.in_reply_to] if msg.in_reply_to else []) + list(reversed(refs)):
                if candidate in by_id:
                    parent_id = by_id[candidate]
                    break
        threads = self._related_threads([msg.message_id, *refs])
        if threads:
            return self._merge(sorted(threads), touched), parent_id
        if msg.subject and (is_reply_subject(msg.subject) or msg.headerless or not refs):
            key = subject_key(msg.subject)
            if key:
                q = select(THREAD.c.id).where(THREAD.c.list_id == list_id, THREAD.c.subject_key == key)
                if msg.date is not None and (is_reply_subject(msg.subject) or msg.headerless):
                    d = _naive(msg.date)
                    assert d is not None
                    q = q.where(or_(THREAD.c.last_date.is_(None), THREAD.c.last_date >= d - self.window),
                                or_(THREAD.c.first_date.is_(None), THREAD.c.first_date <= d + self.window))
                    row = s.execute(q.order_by(THREAD.c.last_date.desc()).limit(1)).first()
                    if row:
                        return int(row.id), parent_id
        tid = s.execute(insert(THREAD).values(list_id=list_id, subject=clean_text(normalize_subject(msg.subject)),
                                              subject_key=subject_key(msg.subject), message_count=0)
                        ).inserted_primary_key[0]
        return int(tid), parent_id

    def _merge(self, thread_ids: list[int], touched: set[int]) -> int:
        """Fold several threads into the oldest one; returns the one kept."""
        keep, *others = sorted(set(thread_ids))
        if others:
            self.session.execute(update(MSG).where(MSG.c.thread_id.in_(others)).values(thread_id=keep))
            self.session.execute(delete(THREAD).where(THREAD.c.id.in_(others)))
            touched.difference_update(others)
            self.result.threads.difference_update(others)
        touched.add(keep)
        return keep

    def _refresh_threads(self, thread_ids: set[int]) -> None:
        """Recompute count, dates and subject of the threads a batch touched."""
        s = self.session
        for tid in thread_ids:
            stats = s.execute(select(func.count(), func.min(MSG.c.date), func.max(MSG.c.date))
                              .where(MSG.c.thread_id == tid)).one()
            first = s.execute(select(MSG.c.subject).where(MSG.c.thread_id == tid)
                              .order_by(MSG.c.date.is_(None), MSG.c.date, MSG.c.id).limit(1)).scalar()
            values: dict[str, object] = {"message_count": stats[0], "first_date": stats[1], "last_date": stats[2]}
            if first is not None:
                values["subject"] = normalize_subject(first) or "(no subject)"
                values["subject_key"] = subject_key(first)
            s.execute(update(THREAD).where(THREAD.c.id == tid).values(**values))
