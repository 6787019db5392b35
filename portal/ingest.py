"""Store what the importers read: de-duplicate, merge people, thread (JWZ-style), record runs.

The importers are pure; everything that touches the database for an import lives here, so the
CLI, the scheduler and a web upload share one path.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from importers.model import ImportProblem, ParsedMessage
from importers.parallel import iter_paths_parallel
from importers.sources import iter_path
from importers.text import clean_text, is_reply_subject, name_key, normalize_subject, subject_key

from .classify import PainJudgment
from .enrich import Enricher, Prejudge
from .models import (
    ImportProblemRow,
    ImportRun,
    MailingList,
    Message,
    MessageComponent,
    MessageRef,
    PainPointMember,
    Person,
    Thread,
    ThreadComponentOverride,
    ThreadPainOverride,
    TicketMention,
    utcnow,
)

MSG = Message.__table__
MENTION = TicketMention.__table__
JUDGMENT = MessageComponent.__table__
OVERRIDE = ThreadComponentOverride.__table__
PAIN_OVERRIDE = ThreadPainOverride.__table__
REF = MessageRef.__table__
MEMBER = PainPointMember.__table__
THREAD = Thread.__table__
NEW_THREAD = insert(THREAD)


def list_role_for(name: str) -> str:
    """A new list's role from its name: operators/users lists hurt, -dev lists fix."""
    lowered = name.lower()
    if lowered == "field-reports":  # the portal's own list: operators filed every message of it
        return "operator"
    if any(word in lowered for word in ("operator", "users", "-ops", "user@", "ops.")):
        return "operator"
    if "dev" in lowered:
        return "developer"
    return "unknown"


def fingerprint(msg: ParsedMessage) -> str | None:
    """Author, UTC second and subject: the same message seen through two archive forms. Only a
    date the message carried itself identifies it; fallback dates are shared by many."""
    if msg.date is None or not msg.date_trusted:
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

    def __init__(self, session: Session, *, enricher: Enricher | None = None, batch_size: int = 500,
                 subject_window_days: int = 30, parse_in_parallel: bool = False):
        self.session = session
        self.parse_in_parallel = parse_in_parallel
        self.enricher = enricher
        self.batch_size = batch_size
        self.window = timedelta(days=subject_window_days)
        self._lists: dict[str, tuple[int, str]] = {}
        # Person ids by ("e", address) and ("n", name key); people repeat across a whole archive.
        self._people: dict[tuple[str, str], int] = {}
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
        status = "failed"
        if self.parse_in_parallel:
            # The parsing process also judges ticket mentions and pain while it is ahead: this
            # one was the slower of the two (20k messages, three runs each: store 4.3 -> 4.1 s).
            items: Iterable[ParsedMessage | ImportProblem] = iter_paths_parallel(
                paths, fmt, list_name=list_name, now=now, progress=progress,
                prepare=Prejudge.of(self.enricher) if self.enricher is not None else None)
        else:
            items = (item for path in paths
                     for item in iter_path(path, fmt, list_name=list_name, now=now, progress=progress))
        try:
            for item in items:
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
            status = "done"
        finally:
            # Record the run whatever happened, interrupted runs included.
            self.session.rollback()
            run = self.session.get(ImportRun, self.result.run_id) or run
            run.status = status
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

    def write(self, messages: list[ParsedMessage]) -> set[int]:
        """Store some messages in the caller's transaction (no run record, no commit); returns
        the threads they touched. For messages that are not files: field reports."""
        new, dups, touched = self._write_batch(messages)
        self._count(new, dups, touched)
        return touched

    # -- batches ------------------------------------------------------------------------------

    def _store_batch(self, batch: list[ParsedMessage]) -> None:
        snapshot = (self.result.messages_new, self.result.duplicates, set(self.result.threads))
        try:
            new, dups, touched = self._write_batch(batch)
            self.session.commit()
            self._count(new, dups, touched)
        except Exception:  # noqa: BLE001 - retry one by one to isolate the bad message
            self.session.rollback()
            self._forget_caches()
            self.result.messages_new, self.result.duplicates, self.result.threads = snapshot
            for msg in batch:
                try:
                    new, dups, touched = self._write_batch([msg])
                    self.session.commit()
                    self._count(new, dups, touched)
                except Exception as exc:  # noqa: BLE001
                    self.session.rollback()
                    self._forget_caches()
                    reason = f"could not store: {exc.__class__.__name__}: {exc}"[:500]
                    self.result.problems.append(ImportProblem(msg.source_file, msg.position, reason))

    def _forget_caches(self) -> None:
        self._lists.clear()
        self._people.clear()

    def _count(self, new: int, dups: int, touched: set[int]) -> None:
        self.result.messages_new += new
        self.result.duplicates += dups
        self.result.threads |= touched

    def _write_batch(self, batch: list[ParsedMessage]) -> tuple[int, int, set[int]]:
        """Store a batch with a handful of statements: look everything up at once, thread in
        memory, insert in bulk. Returns (new, duplicates, threads touched)."""
        s = self.session
        touched: set[int] = set()
        fresh, dups = self._drop_duplicates(batch, touched)
        if not fresh:
            return 0, dups, touched
        # Every id any fresh message is or names: what the database already knows of them.
        keys = {k for m, _fp in fresh for k in (m.message_id, *m.references, m.in_reply_to) if k}
        known: dict[str, tuple[int | None, int]] = {}
        ref_threads: dict[str, set[int]] = {}
        for chunk in _chunks(sorted(keys)):
            for pk, mid, tid in s.execute(select(MSG.c.id, MSG.c.message_id, MSG.c.thread_id)
                                          .where(MSG.c.message_id.in_(chunk))):
                known[mid] = (pk, tid)
            for ref, tid in s.execute(select(REF.c.ref, MSG.c.thread_id).join(MSG, REF.c.message_pk == MSG.c.id)
                                      .where(REF.c.ref.in_(chunk)).distinct()):
                ref_threads.setdefault(ref, set()).add(tid)
        alias: dict[int, int] = {}

        def find(tid: int) -> int:
            while tid in alias:
                tid = alias[tid]
            return tid

        rows: list[dict[str, object]] = []
        pending_parent: list[tuple[int, str]] = []  # (row index, parent Message-ID in this batch)
        for m, fp in fresh:
            list_id, list_role = self._list(m.list_name or "unknown")
            refs = [r for r in dict.fromkeys([*m.references, *([m.in_reply_to] if m.in_reply_to else [])]) if r]
            threads = {find(known[k][1]) for k in (m.message_id, *refs) if k in known}
            for k in (m.message_id, *refs):
                threads |= {find(t) for t in ref_threads.get(k, ())}
            if threads:
                tid = self._merge(sorted(threads), touched, alias)
            else:
                tid = self._subject_thread(m, list_id, refs) or self._new_thread(m, list_id)
            parent_pk = None
            for candidate in ([m.in_reply_to] if m.in_reply_to else []) + list(reversed(refs)):
                if candidate in known:
                    parent_pk = known[candidate][0]
                    if parent_pk is None:
                        pending_parent.append((len(rows), candidate))
                    break
            known[m.message_id] = (None, tid)
            for r in refs:
                ref_threads.setdefault(r, set()).add(tid)
            rows.append(self._row(m, fp, list_id, self._person(m, list_role), tid, parent_pk))
            if self.enricher is not None:  # judged into the row: no second write of each message
                rows[-1].update(self._pain_columns(m))
        for row in rows:
            row["thread_id"] = find(int(row["thread_id"]))  # type: ignore[arg-type]
            touched.add(int(row["thread_id"]))  # type: ignore[arg-type]
        # Inserted with one executemany, then their ids looked up by Message-ID (unique): with
        # RETURNING, SQLAlchemy renders the rows into multi-row statements itself (storing 20k
        # messages: 0.15-0.2 s more of this process's time), and in the rows' order it inserted
        # into SQLite one row per statement.
        s.execute(insert(MSG), rows)
        pk_of = {mid: pk for chunk in _chunks([str(r["message_id"]) for r in rows])
                 for pk, mid in s.execute(select(MSG.c.id, MSG.c.message_id).where(MSG.c.message_id.in_(chunk)))}
        updates = [{"pk": pk_of[str(rows[i]["message_id"])], "parent": pk_of[mid]}
                   for i, mid in pending_parent if mid in pk_of]
        # Children stored in earlier runs, waiting for these parents.
        for chunk in _chunks(sorted(pk_of)):
            for child_pk, irt in s.execute(select(MSG.c.id, MSG.c.in_reply_to).where(
                    MSG.c.in_reply_to.in_(chunk), MSG.c.parent_id.is_(None))):
                if child_pk != pk_of[irt]:
                    updates.append({"pk": child_pk, "parent": pk_of[irt]})
        if updates:
            s.execute(update(MSG).where(MSG.c.id == bindparam("pk")).values(parent_id=bindparam("parent")), updates)
        ref_rows = [{"message_pk": pk_of[m.message_id], "ref": r[:998]}
                    for m, _fp in fresh for r in dict.fromkeys(m.references) if r]
        if ref_rows:
            s.execute(insert(REF), ref_rows)
        if self.enricher is not None:
            self._enrich([(pk_of[m.message_id], m) for m, _fp in fresh], pain=False)
        touched = {find(t) for t in touched}
        self._refresh_threads(touched)
        return len(rows), dups, touched

    def _prejudged(self, m: ParsedMessage) -> tuple[list[str], PainJudgment] | None:
        """The mentions and pain a parsing process judged (Prejudge) with this run's rules."""
        return m.prepared if isinstance(m.prepared, tuple) else None  # type: ignore[return-value]

    def _pain_columns(self, m: ParsedMessage) -> dict[str, object]:
        assert self.enricher is not None
        judged = self._prejudged(m)
        pain = judged[1] if judged is not None else self.enricher.pain(m)
        return {"ruleset_version": self.enricher.taxonomy.version, "pain_score": pain.score,
                "pain_reasons": json.dumps(pain.reasons)}

    def _enrich(self, stored: list[tuple[int, ParsedMessage]], *, pain: bool = True) -> None:
        """Ticket references and component judgments of stored messages, and (unless their rows
        were stored with it) their pain."""
        assert self.enricher is not None
        mentions: list[dict[str, object]] = []
        judgments: list[dict[str, object]] = []
        version = self.enricher.taxonomy.version
        for pk, m in stored:
            judged = self._prejudged(m)
            refs = judged[0] if judged is not None else self.enricher.mentions(m)
            mentions.extend({"message_pk": pk, "ref": r[:300]} for r in refs)
            judgments.extend({"message_pk": pk, "component": j.component, "confidence": j.confidence,
                              "reasons": json.dumps(j.reasons), "ruleset_version": version}
                             for j in self.enricher.components(m))
        if mentions:
            self.session.execute(insert(MENTION), mentions)
        if judgments:
            self.session.execute(insert(JUDGMENT), judgments)
        if not pain:
            return
        verdicts = []
        for pk, m in stored:
            columns = self._pain_columns(m)
            verdicts.append({"pk": pk, "score": columns["pain_score"], "reasons": columns["pain_reasons"]})
        if verdicts:
            self.session.execute(update(MSG).where(MSG.c.id == bindparam("pk")).values(
                ruleset_version=version, pain_score=bindparam("score"), pain_reasons=bindparam("reasons")), verdicts)

    def _drop_duplicates(self, batch: list[ParsedMessage], touched: set[int]
                         ) -> tuple[list[tuple[ParsedMessage, str | None]], int]:
        """Messages not stored yet (by Message-ID, then by fingerprint), and how many were."""
        s = self.session
        fps = [fingerprint(m) for m in batch]
        have_ids: set[str] = set()
        have_fps: dict[str, tuple[int, bool, int]] = {}
        for chunk in _chunks([m.message_id for m in batch]):
            have_ids |= {mid for (mid,) in s.execute(select(MSG.c.message_id).where(MSG.c.message_id.in_(chunk)))}
        for chunk in _chunks([fp for fp in fps if fp]):
            for pk, fp, generated, tid in s.execute(select(MSG.c.id, MSG.c.fingerprint, MSG.c.message_id_generated,
                                                           MSG.c.thread_id).where(MSG.c.fingerprint.in_(chunk))):
                have_fps[fp] = (pk, generated, tid)
        fresh: list[tuple[ParsedMessage, str | None]] = []
        seen_ids: set[str] = set()
        seen_fps: dict[str, int] = {}  # fingerprint -> index in fresh
        dups = 0
        for m, fp in zip(batch, fps, strict=True):
            if m.message_id in have_ids or m.message_id in seen_ids:
                dups += 1
                continue
            # Two different real Message-IDs are two messages, whatever their fingerprints say.
            if fp and fp in seen_fps and (m.message_id_generated or fresh[seen_fps[fp]][0].message_id_generated):
                earlier = fresh[seen_fps[fp]][0]
                if earlier.message_id_generated and not m.message_id_generated:
                    fresh[seen_fps[fp]] = (m, fp)  # the copy with a real Message-ID wins
                    seen_ids.add(m.message_id)
                dups += 1
                continue
            if fp and fp in have_fps and (m.message_id_generated or have_fps[fp][1]):
                pk, generated, tid = have_fps[fp]
                if generated and not m.message_id_generated:
                    self._adopt_real_id(pk, tid, m, touched)
                dups += 1
                continue
            seen_ids.add(m.message_id)
            if fp:
                seen_fps[fp] = len(fresh)
            fresh.append((m, fp))
        return fresh, dups

    def _row(self, m: ParsedMessage, fp: str | None, list_id: int, person_id: int | None, thread_id: int,
             parent_pk: int | None) -> dict[str, object]:
        return {
            "message_id": m.message_id[:998],
            "message_id_generated": m.message_id_generated,
            "fingerprint": fp,
            "list_id": list_id,
            "thread_id": thread_id,
            "parent_id": parent_pk,
            "person_id": person_id,
            "subject": clean_text(m.subject),
            "date": _naive(m.date),
            "in_reply_to": m.in_reply_to[:998] if m.in_reply_to else None,
            "new_text": clean_text(m.new_text),
            "quoted_text": clean_text(m.quoted_text),
            "raw": m.raw_compressed if m.raw_compressed is not None else zlib.compress(m.raw, 3),
            "source_format": m.source_format[:40],
            "source_file": clean_text(m.source_file),
            "recovered": m.recovered,
            "imported_at": utcnow(),
        }

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
        keep = self._merge([thread_id, *related], touched, {}) if related else thread_id
        touched.add(keep)
        self._refresh_threads({keep})

    # -- lists and people ---------------------------------------------------------------------

    def _list(self, name: str) -> tuple[int, str]:
        name = clean_text(name).strip().lower()[:200] or "unknown"
        if name not in self._lists:
            query = select(MailingList.id, MailingList.role).where(MailingList.name == name)
            row = self.session.execute(query).first()
            if row is None:
                try:
                    # Another process (a web worker filing a report, a poll) may add it at once.
                    with self.session.begin_nested():
                        ml = MailingList(name=name, role=list_role_for(name))
                        self.session.add(ml)
                    self._lists[name] = (int(ml.id or 0), ml.role)
                except IntegrityError:
                    row = self.session.execute(query).one()
            if row is not None:
                self._lists[name] = (int(row[0]), str(row[1]))
        return self._lists[name]

    def _person(self, msg: ParsedMessage, list_role: str) -> int | None:
        email = clean_text(msg.author_email).strip().lower()[:320] or None
        name = clean_text(msg.author_name).strip()[:300]
        key = name_key(name)[:300]
        if not email and not key:
            return None
        cache_key = ("e", email) if email else ("n", key)
        if cache_key not in self._people:
            self._people[cache_key] = self._find_or_add_person(email, name, key, list_role)
        return self._people[cache_key]

    def _find_or_add_person(self, email: str | None, name: str, key: str, list_role: str) -> int:
        s = self.session
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
        try:
            with s.begin_nested():  # a concurrent writer may add the same address first
                s.add(person)
        except IntegrityError:
            if not email:
                raise
            return int(s.execute(select(Person.id).where(Person.email == email)).scalar_one())
        return int(person.id or 0)

    # -- threading ----------------------------------------------------------------------------

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

    def _subject_thread(self, msg: ParsedMessage, list_id: int, refs: list[str]) -> int | None:
        """JWZ's subject grouping, narrowed: a reply (or a message from an archive without
        headers) joins the latest same-subject thread of its list within the window."""
        if not msg.subject or msg.date is None or not (is_reply_subject(msg.subject) or msg.headerless):
            return None
        key = subject_key(msg.subject)
        if not key:
            return None
        d = _naive(msg.date)
        assert d is not None
        row = self.session.execute(
            select(THREAD.c.id).where(
                THREAD.c.list_id == list_id, THREAD.c.subject_key == key,
                or_(THREAD.c.last_date.is_(None), THREAD.c.last_date >= d - self.window),
                or_(THREAD.c.first_date.is_(None), THREAD.c.first_date <= d + self.window),
            ).order_by(THREAD.c.last_date.desc()).limit(1)).first()
        return int(row.id) if row else None

    def _new_thread(self, msg: ParsedMessage, list_id: int) -> int:
        d = _naive(msg.date)
        values = {"list_id": list_id, "subject": clean_text(normalize_subject(msg.subject)) or "(no subject)",
                  "subject_key": subject_key(msg.subject), "message_count": 0, "first_date": d, "last_date": d}
        # One statement object with the values as parameters: compiled once, not once per thread
        # (building and caching a statement per new thread cost a fifth of storing an archive).
        return int(self.session.execute(NEW_THREAD, values).inserted_primary_key[0])

    def _merge(self, thread_ids: list[int], touched: set[int], alias: dict[int, int]) -> int:
        """Fold several threads into the oldest one; returns the one kept."""
        keep, *others = sorted(set(thread_ids))
        if others:
            self.session.execute(update(MSG).where(MSG.c.thread_id.in_(others)).values(thread_id=keep))
            self._move_overrides(others, keep)
            self.session.execute(delete(THREAD).where(THREAD.c.id.in_(others)))
            for other in others:
                alias[other] = keep
            touched.difference_update(others)
            self.result.threads.difference_update(others)
        touched.add(keep)
        return keep

    def _move_overrides(self, others: list[int], keep: int) -> None:
        """Developers' corrections follow their thread into a merge (the kept thread's own win)."""
        has_pain = self.session.execute(select(PAIN_OVERRIDE.c.id).where(PAIN_OVERRIDE.c.thread_id == keep)).first()
        moved = self.session.execute(select(PAIN_OVERRIDE.c.id).where(PAIN_OVERRIDE.c.thread_id.in_(others))
                                     .order_by(PAIN_OVERRIDE.c.at.desc())).all()
        for i, (oid,) in enumerate(moved):
            if has_pain or i > 0:
                self.session.execute(delete(PAIN_OVERRIDE).where(PAIN_OVERRIDE.c.id == oid))
            else:
                self.session.execute(update(PAIN_OVERRIDE).where(PAIN_OVERRIDE.c.id == oid).values(thread_id=keep))
        # A thread is in one pain point at most: the kept thread's membership wins, else the first other's.
        has_point = self.session.execute(select(MEMBER.c.id).where(MEMBER.c.thread_id == keep)).first()
        for i, (mid,) in enumerate(self.session.execute(select(MEMBER.c.id).where(MEMBER.c.thread_id.in_(others))
                                                        .order_by(MEMBER.c.id)).all()):
            if has_point or i > 0:
                self.session.execute(delete(MEMBER).where(MEMBER.c.id == mid))
            else:
                self.session.execute(update(MEMBER).where(MEMBER.c.id == mid).values(thread_id=keep))
        kept = {c for (c,) in self.session.execute(select(OVERRIDE.c.component).where(OVERRIDE.c.thread_id == keep))}
        for oid, component in self.session.execute(select(OVERRIDE.c.id, OVERRIDE.c.component)
                                                   .where(OVERRIDE.c.thread_id.in_(others))).all():
            if component in kept:
                self.session.execute(delete(OVERRIDE).where(OVERRIDE.c.id == oid))
            else:
                kept.add(component)
                self.session.execute(update(OVERRIDE).where(OVERRIDE.c.id == oid).values(thread_id=keep))

    def _refresh_threads(self, thread_ids: set[int]) -> None:
        """Recompute count, dates and subject of the threads a batch touched."""
        s = self.session
        values = []
        for chunk in _chunks(sorted(thread_ids)):
            stats = s.execute(select(MSG.c.thread_id, func.count(), func.min(MSG.c.date), func.max(MSG.c.date),
                                     func.min(MSG.c.id)).where(MSG.c.thread_id.in_(chunk))
                              .group_by(MSG.c.thread_id)).all()
            earlier = MSG.alias("earlier")
            earliest = select(func.min(earlier.c.date)).where(earlier.c.thread_id == MSG.c.thread_id).scalar_subquery()
            firsts = dict(s.execute(  # the subject of each thread's earliest message (lowest id on ties)
                select(MSG.c.thread_id, MSG.c.subject).where(MSG.c.thread_id.in_(chunk), MSG.c.date == earliest)
                .order_by(MSG.c.id.desc())).all())
            for tid, count, first, last, _min_id in stats:
                subject = firsts.get(tid)
                row = {"tid": tid, "count": count, "first": first, "last": last}
                if subject is not None:
                    row["subject"] = normalize_subject(subject) or "(no subject)"
                    row["key"] = subject_key(subject)
                values.append(row)
        with_subject = [v for v in values if "subject" in v]
        without = [v for v in values if "subject" not in v]
        base = update(THREAD).where(THREAD.c.id == bindparam("tid"))
        if with_subject:
            s.execute(base.values(message_count=bindparam("count"), first_date=bindparam("first"),
                                  last_date=bindparam("last"), subject=bindparam("subject"),
                                  subject_key=bindparam("key")), with_subject)
        if without:
            s.execute(base.values(message_count=bindparam("count"), first_date=bindparam("first"),
                                  last_date=bindparam("last")), without)


def _chunks(items: list, size: int = 500) -> Iterable[list]:
    """IN-lists of a size every database takes."""
    for i in range(0, len(items), size):
        yield items[i:i + size]


def reclassify(session: Session, enricher: Enricher, *, everything: bool = False, show_progress: bool = False,
               batch: int = 1000) -> int:
    """Recompute component judgments and ticket mentions from the stored new text, after the
    taxonomy or reference rules changed. Developers' corrections live apart and stay."""
    from tqdm import tqdm

    version = enricher.taxonomy.version
    q = select(MSG.c.id)
    if not everything:
        q = q.where(MSG.c.ruleset_version != version)
    ids = [pk for (pk,) in session.execute(q.order_by(MSG.c.id))]
    with tqdm(total=len(ids), unit="msg", desc="classify", disable=not show_progress) as bar:
        for chunk in _chunks(ids, batch):
            reenrich(session, enricher, chunk)
            session.commit()
            bar.update(len(chunk))
    return len(ids)


def reenrich(session: Session, enricher: Enricher, pks: list[int], *,
             own_refs: dict[int, list[str]] | None = None) -> None:
    """Judge stored messages again from their new text: components, ticket mentions, pain.
    A Redmine page keeps its own ticket number; `own_refs` gives other messages theirs."""
    rows = session.execute(select(MSG.c.id, MSG.c.subject, MSG.c.new_text, MSG.c.source_format,
                                  MailingList.__table__.c.name)
                           .join(MailingList.__table__, MailingList.__table__.c.id == MSG.c.list_id)
                           .where(MSG.c.id.in_(pks))).all()
    session.execute(delete(JUDGMENT).where(JUDGMENT.c.message_pk.in_(pks)))
    own = {pk: ref for pk, ref in session.execute(select(MENTION.c.message_pk, MENTION.c.ref).where(
        MENTION.c.message_pk.in_(pks), MENTION.c.ref.like("redmine:%")))}
    session.execute(delete(MENTION).where(MENTION.c.message_pk.in_(pks)))
    if own_refs is None and any(fmt == "field-report" for _pk, _s, _t, fmt, _l in rows):
        from .models import FieldReport

        own_refs = {pk: refs.split() for pk, refs in session.execute(
            select(MSG.c.id, FieldReport.refs).join(FieldReport, FieldReport.message_id == MSG.c.message_id)
            .where(MSG.c.id.in_(pks)))}
    stored = []
    for pk, subject, text, fmt, list_name in rows:
        msg = ParsedMessage(message_id="", subject=subject, author_name="", author_email="", date=None,
                            body_text=text, new_text=text, quoted_text="", raw=b"", source_file="",
                            position="", list_name=list_name)
        if own_refs is not None and pk in own_refs:
            msg.own_refs = list(own_refs[pk])
        elif fmt == "page-redmine" and pk in own:
            msg.own_refs = [own[pk]]
        stored.append((pk, msg))
    Ingest(session, enricher=enricher)._enrich(stored)


def set_list_role(session: Session, name: str, role: str) -> int:
    """Set a list's role; people whose role was seeded from this list (their first message is
    here, and nobody set their role by hand) follow it. Returns how many people changed."""
    ml = session.execute(select(MailingList).where(MailingList.name == name.lower())).scalars().first()
    if ml is None:
        ml = MailingList(name=name.lower(), role=role)
    ml.role = role
    session.add(ml)
    session.flush()
    first = select(MSG.c.person_id, func.min(MSG.c.id).label("first_id")).group_by(MSG.c.person_id).subquery()
    seeded_here = select(first.c.person_id).join(MSG, MSG.c.id == first.c.first_id).where(MSG.c.list_id == ml.id)
    seeded_role = role if role in ("operator", "developer") else "unknown"
    result = session.execute(update(Person.__table__).where(
        Person.__table__.c.id.in_(seeded_here), Person.__table__.c.role_source == "list",
        Person.__table__.c.role != seeded_role).values(role=seeded_role))
    return int(result.rowcount or 0)
