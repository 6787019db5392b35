"""Search over threads, pain points and tickets, with a query language a person can guess.

    quota drift                 words (stemmed; all must match)
    "default route"             a phrase
    -vote                       not this word
    component:quotas            in a component (children count for their parents)
    list:openstack-operators    on a list
    from:operator               written by an operator (or developer)
    status:fixed_untested       pain points (and tickets) in a status
    ref:lp:1234567              naming a ticket
    kind:painpoint              threads, pain points or tickets only
    after:2014-05 before:2015   dates (year, month or day)

The index (Whoosh) is derived data under EARSHOT_DATA_DIR/search: written after the database
commits, by one writer at a time, and rebuilt beside the old one and swapped in by
`flask index rebuild`. Queries are answered over whole posting lists by portal.postings; Whoosh
walks only what that module does not know (which documents hold a phrase). PostgresIndex is the
same interface on PostgreSQL full-text search.
"""

from __future__ import annotations

import gc
import multiprocessing
import re
import shutil
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from multiprocessing.context import ForkServerProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from whoosh.analysis import STOP_WORDS, Filter
from whoosh.fields import TEXT
from whoosh.highlight import Formatter, get_text, htmlescape
from whoosh.lang.porter import stem as porter_stem
from whoosh.multiproc import MpWriter, SubWriterTask
from whoosh.system import pack_uint as _pack_uint

from . import bulk

# (_SideCodec is also found here by indexes written while it lived in this module.)
from .postings import (
    FACETS,
    TermPool,
    _Ranking,
    _SideCodec,
    facet_counts,
    forget_segments,
    match_set,
    scored_matches,
    top_by_column,
    top_scored,
)

# SQLAlchemy is imported by the functions that read the database: index writer processes load
# this module (in the server they are started from, while an import stores) and never query.
if TYPE_CHECKING:
    from sqlmodel import Session

FILTER_KEYS = ("component", "list", "from", "status", "ref", "kind", "after", "before")
_FILTER_RE = re.compile(r'(?<!\S)(-?)(' + "|".join(FILTER_KEYS) + r'):("([^"]*)"|\S+)', re.I)
SORTS = ("relevance", "date", "impact")
HIT_CAP = 10_000  # PostgreSQL counts exactly up to here
COUNT_CAP = 100_000  # Whoosh counts (and facets) exactly up to here; above, estimates


class SearchError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass
class Query:
    words: str = ""
    filters: dict[str, list[str]] = field(default_factory=dict)
    excluded: dict[str, list[str]] = field(default_factory=dict)
    after: datetime | None = None
    before: datetime | None = None


def _when(value: str, *, end: bool) -> datetime:
    m = re.match(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$", value)
    if not m:
        raise SearchError("q", f"dates are YYYY, YYYY-MM or YYYY-MM-DD, not {value!r}")
    y, mo, d = int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1)
    try:
        start = datetime(y, mo, d)
    except ValueError as exc:
        raise SearchError("q", f"{value}: {exc}") from exc
    if not end:
        return start
    if m.group(3):
        return datetime.fromordinal(start.toordinal() + 1)
    if m.group(2):
        return datetime(y + (mo == 12), 1 if mo == 12 else mo + 1, 1)
    return datetime(y + 1, 1, 1)


def parse(text: str, extra: dict[str, str] | None = None) -> Query:
    """Split a query into words and filters; `extra` are filters given as parameters."""
    q = Query()
    for m in _FILTER_RE.finditer(text or ""):
        negate, key, value = m.group(1) == "-", m.group(2).lower(), m.group(4) if m.group(4) is not None \
            else m.group(3)
        if key == "after":
            q.after = _when(value, end=False)
        elif key == "before":
            q.before = _when(value, end=False)
        else:
            (q.excluded if negate else q.filters).setdefault(key, []).append(value.lower() if key != "ref" else value)
    q.words = _FILTER_RE.sub(" ", text or "").strip()
    for key, value in (extra or {}).items():
        if value:
            q.filters.setdefault(key, []).append(value.lower())
    return q


# --- documents ------------------------------------------------------------------------------------


def _parents(components: Iterable[str]) -> list[str]:
    out: list[str] = []
    for c in components:
        for name in (c, c.split("/", 1)[0]):
            if name not in out:
                out.append(name)
    return out


def thread_documents(session: Session, thread_ids: list[int] | None = None) -> Iterator[dict[str, Any]]:
    """Index documents of threads (subject, new text of every message, authors and their roles)."""
    from sqlalchemy import select

    from .models import FieldReport, MailingList, Message, PainPoint, PainPointMember, Person, Thread
    from .threads import thread_components, thread_refs

    ids = list(session.execute(select(Thread.id).order_by(Thread.id)).scalars()) if thread_ids is None \
        else sorted(set(thread_ids))  # read 500 at a time below, whatever their number
    for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)):
        threads = {row.id: row for row in session.execute(  # columns, not ORM objects: a third of reading
            select(Thread.id, Thread.subject, Thread.first_date, Thread.last_date, MailingList.name)
            .join(MailingList, MailingList.id == Thread.list_id).where(Thread.id.in_(chunk)))}
        texts: dict[int, list[str]] = {}
        authors: dict[int, set[str]] = {}
        roles: dict[int, set[str]] = {}
        for tid, text, name, email, role in session.execute(
                select(Message.thread_id, Message.new_text, Person.name, Person.email, Person.role)
                .join(Person, Person.id == Message.person_id, isouter=True).where(Message.thread_id.in_(chunk))
                .order_by(Message.thread_id, Message.id)):
            parts = texts.setdefault(tid, [])
            if sum(len(p) for p in parts) < 20000:
                parts.append(text[:5000])
            authors.setdefault(tid, set()).update(x for x in (name, email) if x)
            if role:
                roles.setdefault(tid, set()).add(role)
        comps = thread_components(session, chunk, reasons=False)
        refs = thread_refs(session, chunk)
        points: dict[int, str] = dict(session.execute(
            select(PainPointMember.thread_id, PainPoint.status)
            .join(PainPoint, PainPoint.id == PainPointMember.pain_point_id)
            .where(PainPointMember.thread_id.in_(chunk))).all())
        # A field report's thread is found as the report (its page is the report's).
        reports: dict[int, int] = dict(session.execute(
            select(FieldReport.thread_id, FieldReport.id).where(FieldReport.thread_id.in_(chunk))).all())
        for tid in chunk:
            if tid not in threads:
                continue
            thread = threads[tid]
            list_name = thread.name
            kind, ident = ("report", reports[tid]) if tid in reports else ("thread", tid)
            yield {"key": f"{kind}:{ident}", "kind": kind, "id": str(ident), "title": thread.subject or "",
                   "text": "\n".join(texts.get(tid, [])), "author": " ".join(sorted(authors.get(tid, set()))),
                   "role": sorted(roles.get(tid, set())), "list": list_name,
                   "components": _parents(c["name"] for c in comps.get(tid, [])), "refs": refs.get(tid, []),
                   "status": points.get(tid, ""), "date": thread.last_date or thread.first_date, "impact": 0.0}


def painpoint_documents(session: Session, ids: list[int] | None = None) -> Iterator[dict[str, Any]]:
    from sqlalchemy import select

    from .models import PainPoint
    from .painpoints import _by_size, gather
    from .similar import thread_docs

    # Ids first, the pain points themselves a chunk at a time (at most 500, with at most 2,000
    # threads unless one has more: an archive's oldest pain points hold thousands): loaded all at
    # once, an import's pain points were 20 MB of objects held while their documents were written
    # (200k messages).
    live = select(PainPoint.id).where(PainPoint.merged_into_id.is_(None))
    if ids is None:
        wanted = list(session.execute(live.order_by(PainPoint.id)).scalars())
    else:
        asked = sorted(set(ids))
        wanted = [i for some in (asked[k:k + 500] for k in range(0, len(asked), 500))
                  for i in session.execute(live.where(PainPoint.id.in_(some)).order_by(PainPoint.id)).scalars()]
    for some in _by_size(session, wanted):
        chunk = list(session.execute(select(PainPoint).where(PainPoint.id.in_(some)).order_by(PainPoint.id)).scalars())
        facts = gather(session, [p.id or 0 for p in chunk], [], people=False)
        # A pain point reads as its reports: their subjects and the start of what they say. (Its
        # first 20 threads only: all of them were 36 MB of text for the first 500 of a large archive.)
        members = [t for p in chunk for t in facts.threads.get(p.id or 0, [])[:20]]
        docs = {int(d.id): d for d in thread_docs(session, members)}
        for p in chunk:
            if not p.reports:
                continue
            reports = [docs[t] for t in facts.threads.get(p.id or 0, []) if t in docs][:20]
            text = "\n".join(f"{d.title}\n{d.text[:1000]}" for d in reports)
            yield {"key": f"painpoint:{p.id}", "kind": "painpoint", "id": str(p.id), "title": p.title,
                   "text": text or p.title, "author": "", "role": ["operator"] if p.operators else [], "list": "",
                   "components": _parents(c for c in p.components.split(",") if c),
                   "refs": facts.refs.get(p.id or 0, []), "status": p.status,
                   "date": p.last_reported or p.first_reported, "impact": float(p.impact)}


def ticket_documents(session: Session, ids: list[int] | None = None) -> Iterator[dict[str, Any]]:
    from sqlalchemy import select

    from .models import Ticket

    q = select(Ticket).order_by(Ticket.id)
    for t in session.execute(q if ids is None else q.where(Ticket.id.in_(ids))).scalars():
        yield {"key": f"ticket:{t.id}", "kind": "ticket", "id": str(t.id), "title": t.title or t.ref,
               "text": f"{t.ref} {t.title}", "author": t.assignee, "role": [], "list": t.tracker,
               "components": [], "refs": [t.ref], "status": t.fix_state, "date": t.updated_at, "impact": 0.0}


def all_documents(session: Session) -> Iterator[dict[str, Any]]:
    yield from thread_documents(session)
    yield from painpoint_documents(session)
    yield from ticket_documents(session)


# --- the Whoosh backend ---------------------------------------------------------------------------


class CodeWordFilter(Filter):  # type: ignore[misc]
    """nova-compute stays one word and also gives nova and compute, at the same position. Module
    level because Whoosh pickles the schema with its analyzers."""

    def __call__(self, tokens: Any) -> Any:
        for t in tokens:
            parts = [p for p in re.split(r"[-.:/]", t.text) if p]
            yield t
            if len(parts) > 1:
                for part in parts:
                    extra = t.copy()
                    extra.text = part
                    yield extra


class MarkFormatter(Formatter):  # type: ignore[misc]
    """Snippets as escaped text with the matched words in <mark>."""

    between = " … "

    def format_token(self, text: str, token: Any, replace: bool = False) -> str:
        return f"<mark>{htmlescape(get_text(text, token, replace))}</mark>"

    def format_fragment(self, fragment: Any, replace: bool = False) -> str:
        out, index = [], fragment.startchar
        text = fragment.text
        for t in fragment.matches:
            if t.startchar > index:
                out.append(htmlescape(text[index:t.startchar]))
            out.append(self.format_token(text, t, replace))
            index = t.endchar
        out.append(htmlescape(text[index:fragment.endchar]))
        return "".join(out)


_WORD = r"\w+(?:[-.:/]\w+)*"
_SPELL_WORD = r"[A-Za-z][a-z]{3,}"


def _analyzer() -> Any:
    """Words as people and code write them: nova-compute, l3-agent and CLOUDSTACK-8697 are kept
    whole and also split into their parts; lower-cased, English stop words dropped, stemmed."""
    from whoosh.analysis import LowercaseFilter, RegexTokenizer, StemFilter, StopFilter

    return (RegexTokenizer(_WORD) | LowercaseFilter() | CodeWordFilter() | StopFilter(minsize=2)
            | StemFilter())


def _spelling_analyzer() -> Any:
    from whoosh.analysis import LowercaseFilter, RegexTokenizer

    return RegexTokenizer(_SPELL_WORD) | LowercaseFilter()


class _WordTerms:
    """What `_analyzer()` makes of one word as written (its terms, in order), remembered: an
    archive repeats its words, and Whoosh's token stream costs several Python calls per word."""

    def __init__(self) -> None:
        self.stops, self.stem = STOP_WORDS, porter_stem
        self.known: dict[str, tuple[str, ...]] = {}

    def __call__(self, word: str) -> tuple[str, ...]:
        terms = self.known.get(word)
        if terms is None:
            lowered = word.lower()
            parts = [p for p in _CODE_SPLIT.split(lowered) if p]
            # CodeWordFilter, then StopFilter(minsize=2), then StemFilter, as in _analyzer().
            terms = tuple(self.stem(w) for w in ([lowered, *parts] if len(parts) > 1 else [lowered])
                          if len(w) >= 2 and w not in self.stops)
            if len(self.known) > 200_000:  # (a bound: ids and numbers never end; words do)
                self.known.clear()
            self.known[word] = terms
        return terms


_CODE_SPLIT = re.compile(r"[-.:/]")
_WORD_RE = re.compile(_WORD)
_SPELL_RE = re.compile(_SPELL_WORD)
_word_terms = _WordTerms()  # (per process: writer processes each fill their own)


def _fast_text(kind: str, **options: Any) -> Any:
    """A TEXT field that indexes a string the way its analyzer (`_analyzer()` for "words",
    `_spelling_analyzer()` for "spell") would, term for term, position for position, without
    Whoosh's token objects: analysis was a third of writing the index. Queries and highlights use
    the analyzer itself. (The field's class is pickled into the index's table of contents.)"""
    analyzer = _analyzer() if kind == "words" else _spelling_analyzer()
    field_type = FastText(analyzer=analyzer, phrase=kind == "words", **options)
    field_type.fast = kind
    return field_type


class FastText(TEXT):  # type: ignore[misc]
    """See _fast_text. Module level because Whoosh pickles the schema."""

    fast = ""

    def index(self, value: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str) or self.fast not in ("words", "spell") or kwargs:
            return super().index(value, **kwargs)
        boost = self.format.field_boost
        if self.fast == "spell":
            counts: dict[str, int] = {}
            for word in _SPELL_RE.findall(value):
                word = word.lower()
                counts[word] = counts.get(word, 0) + 1
            return [(w.encode("utf-8"), n, float(n) * boost, _pack_uint(n)) for w, n in counts.items()]
        terms_of = _word_terms
        positions: dict[str, list[int]] = {}
        at = -1  # StopFilter renumbers: the first term keeps its word's position, the rest follow on
        for i, word in enumerate(_WORD_RE.findall(value)):
            for term in terms_of(word):
                at = i if at < 0 else at + 1
                found = positions.get(term)
                if found is None:
                    positions[term] = [at]
                else:
                    found.append(at)
        encode = self.format.encode
        return [(w.encode("utf-8"), len(p), float(len(p)) * boost, encode(p)) for w, p in positions.items()]


def schema() -> Any:
    from whoosh.columns import NumericColumn
    from whoosh.fields import COLUMN, DATETIME, ID, KEYWORD, STORED, TEXT, Schema

    return Schema(key=ID(stored=True, unique=True), kind=ID(stored=True), id=ID(stored=True),
                  title=_fast_text("words", stored=True, field_boost=3.0), text=_fast_text("words", stored=True),
                  author=TEXT(stored=False, phrase=False), role=KEYWORD(commas=True, lowercase=True, stored=True),
                  list=ID(stored=True), components=KEYWORD(commas=True, lowercase=True, stored=True),
                  refs=KEYWORD(commas=True, stored=True), status=ID(stored=True),
                  date=DATETIME(stored=True, sortable=True), year=ID(),
                  # Only sorted by, never searched: a column, not the 16 indexed terms of a NUMERIC.
                  impact=COLUMN(NumericColumn("q", default=0)),  # thousandths (float columns fail)
                  spell=_fast_text("spell"), meta=STORED())


def _fields(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: doc[k] for k in ("key", "kind", "id", "title", "text", "list", "status")}
    out["text"] = out["text"][:20000]
    out["author"] = doc.get("author") or ""
    out["spell"] = f"{doc['title']} {doc['text'][:2000]}"
    out["role"] = ",".join(doc.get("role") or [])
    out["components"] = ",".join(doc.get("components") or [])
    out["refs"] = ",".join(doc.get("refs") or [])
    if doc.get("date"):
        out["date"] = doc["date"]
        out["year"] = str(doc["date"].year)
    out["impact"] = int(round(1000 * float(doc.get("impact") or 0.0)))
    return out


# Below this many documents, starting writer processes costs more than it saves.
BULK_FROM = 1000


class IndexWriteError(RuntimeError):
    """A writer process failed, so some documents did not reach the index: a rebuild keeps the
    live generation; an update stands as far as it got (`flask index rebuild` completes it)."""


class _WriterTask(SubWriterTask):  # type: ignore[misc]
    """Whoosh's writer process, started by a fresh server process instead of forked from this
    one: a fork carries the parent's whole memory (an import's pain point index and caches) into
    every writer, and Python's garbage collector soon copies most of it."""

    _start_method = ForkServerProcess._start_method
    _Popen = staticmethod(ForkServerProcess._Popen)

    def _process_file(self, filename: str, doc_count: int) -> None:
        TermPool.install(self.writer)  # (the task makes its writer itself, in run())
        # Bulk work (portal.bulk) for the process's whole life: writing 40,000 documents in one
        # process spent a quarter of its time in the cycle collector (28.9 -> 21.6 s).
        gc.set_threshold(*bulk.THRESHOLDS)
        super()._process_file(filename, doc_count)


class _BulkWriter(MpWriter):  # type: ignore[misc]
    """Whoosh's multi-process writer with writer processes that do not inherit this process's
    memory (_WriterTask), and an unbounded job queue: Whoosh's is bounded, so were every writer
    process to die, handing them the next batch would wait forever; here the loss is found by
    WhooshIndex._check_written instead (batches are files on disk, the queue holds their names)."""

    def __init__(self, ix: Any, *, first_procs: int | None = None, **options: Any):
        """`first_procs`: writer processes until finish_segments (`procs` after)."""
        super().__init__(ix, **options)
        TermPool.install(self)  # (merges of existing segments go through this writer's own pool)
        context = multiprocessing.get_context("forkserver")
        self.jobqueue = context.Queue()
        self.resultqueue = context.Queue()
        self.tasks: list[Any] = []
        self.finished: list[Any] = []  # processes told to write their segment before the commit
        self.later_procs: int = int(self.procs)  # (as Whoosh set it from `procs`)
        self.procs: int = first_procs or self.later_procs

    def _new_task(self) -> Any:
        task = _WriterTask(self.storage, self.indexname, self.jobqueue, self.resultqueue, self.subargs,
                           self.multisegment)
        self.tasks.append(task)
        task.start()
        return task

    def finish_segments(self) -> None:
        """Let the writer processes write their segments now, with the documents added so far;
        documents added after this go to new processes (`procs` of them). The commit gathers both."""
        if self.docbuffer:
            self._enqueue()
        for _ in self.tasks:
            self.jobqueue.put(None)  # (each process ends at the first None it takes)
        self.finished += self.tasks
        self.tasks = []
        self.procs = self.later_procs

    def _commit(self, mergetype: Any, optimize: Any, merge: Any) -> Any:
        # Whoosh's commit joins `tasks` and reads one result per task: the finished ones count.
        self.tasks = [*self.finished, *self.tasks]
        self.finished = []
        return super()._commit(mergetype, optimize, merge)


class IndexUpdate:
    """Documents handed to an index writer as they come, live once committed. With a bulk writer
    the writer processes analyse them in the background: an import hands over the threads
    grouping cannot change, groups its pain points meanwhile, then adds the rest."""

    def __init__(self, index: WhooshIndex, *, bulk: bool, first_procs: int | None = None):
        ix = index.open(create=True)
        self.fresh = ix.doc_count_all() == 0  # nothing to replace: plain adds are much faster
        self.writer = index._writer(ix, bulk=bulk, first_procs=first_procs, timeout=60.0)
        self.count = 0

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.writer.delete_by_term("key", key)

    def add(self, docs: Iterable[dict[str, Any]]) -> None:
        add = self.writer.add_document if self.fresh else self.writer.update_document
        for doc in docs:
            add(**_fields(doc))
            self.count += 1

    def finish_segments(self) -> None:
        """With a bulk writer, have its processes write what they hold now (see _BulkWriter)."""
        if isinstance(self.writer, _BulkWriter):
            self.writer.finish_segments()

    def commit(self) -> int:
        """Make the documents live; the number added."""
        self.writer.commit()
        WhooshIndex._check_written(self.writer)
        return self.count

    def abandon(self) -> None:
        WhooshIndex._abandon(self.writer)


def whoosh_query(schema: Any, q: Query) -> Any:
    """The Whoosh query for a parsed query: words over title and text, and the filters."""
    from whoosh import qparser
    from whoosh.query import And, DateRange, Every, Not, Or, Term

    parser = qparser.MultifieldParser(["title", "text"], schema, group=qparser.AndGroup)
    # "-word" excludes a word; a hyphen inside a word (l3-agent) is part of it.
    parser.add_plugin(qparser.PlusMinusPlugin(plusexpr=r"(?:^|(?<=\s))\+", minusexpr=r"(?:^|(?<=\s))-"))
    parser.remove_plugin_class(qparser.FieldsPlugin)  # our filters are parsed apart; no field syntax here
    words = parser.parse(q.words) if q.words else Every()
    parts = [words]
    field_of = {"component": "components", "list": "list", "from": "role", "status": "status", "ref": "refs",
                "kind": "kind"}
    for key, values in q.filters.items():
        parts.append(Or([Term(field_of[key], v) for v in values]))
    for key, values in q.excluded.items():
        parts.append(Not(Or([Term(field_of[key], v) for v in values])))
    if q.after or q.before:
        parts.append(DateRange("date", q.after, q.before, endexcl=True))
    return And(parts) if len(parts) > 1 else words


class WhooshIndex:
    """The index folder holds generations (`gen-N`) and a `CURRENT` file naming the live one; a
    rebuild writes a new generation and then replaces `CURRENT` in one rename.

    Bulk writes (a rebuild, an import's thousands of threads) go through Whoosh's multi-process
    writer: `procs` processes analyse and write a segment each while this one reads documents
    from the database; analysis is pure Python, so on two cores this nearly halves the time."""

    def __init__(self, folder: Path, procs: int = 1, *, limitmb: float = 48):
        self.folder = folder
        self.procs = max(1, procs)
        # Postings each writer gathers in memory before spilling them to disk (EARSHOT_INDEX_MEMORY_MB).
        # Whoosh's default is 128; at 48 a writer process of a 200k-message archive's rebuild peaks
        # at 154 MB instead of 215, for 1-2% more time (the spilled runs are merged a term at a time).
        self.limitmb = limitmb

    def prepare_bulk(self) -> None:
        """Start the server that bulk writer processes are forked from now, with this module
        loaded in it: each writer otherwise imports it when it starts (0.4 s, at the start of an
        import's index step). An import calls this before storing, when the second core has room."""
        if self.procs > 1:
            from multiprocessing import forkserver

            multiprocessing.get_context("forkserver").set_forkserver_preload([__name__])
            forkserver.ensure_running()

    def _writer(self, ix: Any, *, bulk: bool, first_procs: int | None = None, **options: Any) -> Any:
        if bulk and self.procs > 1:
            # One segment per process, not merged at the end (merging would cost another pass).
            return _BulkWriter(ix, procs=self.procs, first_procs=first_procs, multisegment=True,
                               limitmb=self.limitmb, codec=_SideCodec(), **options)
        return TermPool.install(ix.writer(limitmb=self.limitmb, codec=_SideCodec(), **options))

    @staticmethod
    def _abandon(writer: Any) -> None:
        """Cancel a writer; a multi-process one first stops its processes, which would otherwise
        go on writing into files that are about to be removed."""
        for task in [*getattr(writer, "finished", []), *getattr(writer, "tasks", [])]:
            if task.is_alive():
                task.terminate()
            if task.pid is not None:  # started
                task.join()
        if not writer.is_closed:
            writer.cancel()

    @staticmethod
    def _check_written(writer: Any) -> None:
        """A writer process that failed leaves its documents out of the commit without an error
        (Whoosh waits a second for its result, then goes on): a failure is an error here."""
        failed = [t for t in getattr(writer, "tasks", []) if t.exitcode != 0]
        if failed:
            codes = ", ".join(str(t.exitcode) for t in failed)
            raise IndexWriteError(f"{len(failed)} of {len(writer.tasks)} index writer processes failed: "
                                  f"their documents did not reach the search index in {writer.storage.folder} "
                                  f"(exit code {codes}; each printed its error on standard error)")

    def current(self) -> Path | None:
        pointer = self.folder / "CURRENT"
        if not pointer.exists():
            return None
        path = self.folder / pointer.read_text().strip()
        return path if path.exists() else None

    def open(self, *, create: bool = False) -> Any:
        from whoosh import index

        path = self.current()
        if path is None:
            if not create:
                return None
            return self._new_generation(activate=True)
        return index.open_dir(str(path))

    def _new_generation(self, *, activate: bool) -> Any:
        from whoosh import index

        self.folder.mkdir(parents=True, exist_ok=True)
        n = 1 + max((int(p.name[4:]) for p in self.folder.glob("gen-*") if p.name[4:].isdecimal()), default=0)
        path = self.folder / f"gen-{n}"
        path.mkdir()
        ix = index.create_in(str(path), schema())
        if activate:
            self._activate(path)
        return ix

    def _activate(self, path: Path) -> None:
        tmp = self.folder / "CURRENT.tmp"
        tmp.write_text(path.name)
        tmp.replace(self.folder / "CURRENT")
        for old in self.folder.glob("gen-*"):  # earlier generations are no longer read
            if old != path:
                shutil.rmtree(old, ignore_errors=True)

    def rebuild(self, docs: Iterable[dict[str, Any]], progress: Any = None) -> int:
        """Write every document into a fresh generation, then swap it in (the live one serves
        searches until then, and stays live if the new one cannot be completed)."""
        ix = self._new_generation(activate=False)
        writer = self._writer(ix, bulk=True)
        n = 0
        try:
            for doc in docs:
                writer.add_document(**_fields(doc))
                n += 1
                if progress:
                    progress(1)
            writer.commit()
            self._check_written(writer)
        except BaseException:
            self._abandon(writer)
            shutil.rmtree(ix.storage.folder, ignore_errors=True)
            raise
        self._activate(Path(ix.storage.folder))
        return n

    def update(self, docs: Iterable[dict[str, Any]], delete_keys: Iterable[str] = (), *, expected: int = 0) -> int:
        """Replace (or add) documents, one writer at a time (waits up to a minute for the lock).
        `expected` is about how many documents will come: from BULK_FROM on, several processes
        write them."""
        update = self.begin_update(bulk=expected >= BULK_FROM)
        try:
            update.delete(delete_keys)
            update.add(docs)
        except BaseException:
            update.abandon()
            raise
        return update.commit()

    def begin_update(self, *, bulk: bool, first_procs: int | None = None) -> IndexUpdate:
        """An update that takes documents now and makes them live at its commit (it holds the
        index's lock, waiting up to a minute for it, until then). `first_procs`: writer
        processes until finish_segments (this index's number after)."""
        return IndexUpdate(self, bulk=bulk, first_procs=first_procs)

    def searcher(self) -> Any:
        """This thread's searcher of the live generation, kept between requests (opening one
        costs tens of milliseconds on a large index) and refreshed when the index changed."""
        cache: dict[str, tuple[Path, Any]] = _searchers.__dict__.setdefault("by_folder", {})
        path = self.current()
        if path is None:
            return None
        held = cache.get(str(self.folder))
        if held is not None and held[0] == path and held[1].up_to_date():
            return held[1]
        if held is not None:
            # A fresh searcher, not Whoosh's refresh(): refresh reuses segment readers and so
            # misses documents deleted from a segment it already had.
            held[1].close()
        ix = self.open()
        if ix is None:
            return None
        searcher = ix.searcher(weighting=_Ranking())
        forget_segments(self.folder, path, {sub.reader().segment().segment_id() for sub, _ in
                                            searcher.leaf_searchers()})
        cache[str(self.folder)] = (path, searcher)
        while len(cache) > 4:  # a process serves one index; tests and tools may open a few
            _old_path, old = cache.pop(next(iter(cache)))
            old.close()
        return searcher

    def more_like(self, key: str, *, limit: int = 10) -> list[dict[str, Any]]:
        """Documents most like the one with this key (Whoosh's key-term expansion over its text)."""
        searcher = self.searcher()
        if searcher is None:
            return []
        docnum = searcher.document_number(key=key)
        if docnum is None:
            return []
        return [{"kind": h["kind"], "id": int(h["id"]), "title": h["title"], "score": round(float(h.score), 4)}
                for h in searcher.more_like(docnum, "text", top=limit)]

    def search(self, q: Query, *, sort: str = "relevance", page: int = 1, per_page: int = 20) -> dict[str, Any]:
        import numpy as np
        from whoosh import sorting

        searcher = self.searcher()
        empty = {"total": 0, "facets": {f: {} for f in FACETS}, "hits": [], "suggestion": None}
        if searcher is None:
            return empty
        query = whoosh_query(searcher.schema, q)
        sortedby = {"relevance": None, "date": sorting.FieldFacet("date", reverse=True),
                    "impact": sorting.FieldFacet("impact", reverse=True)}[sort]
        # The matching documents, as sets of posting lists where the query allows (exact, fast);
        # they give the total and the facets below. Ranked by relevance, the same pass scores them.
        scored = scored_matches(searcher, query)
        found = scored[0] if scored is not None else match_set(searcher, query)
        excluded = walked = None
        if found is None:  # a phrase: Whoosh finds its documents, once (up to COUNT_CAP + 1)
            excluded = _excluded_docs(searcher, query)  # (Whoosh's walk may let them through)
            walked = list(islice((d for d in searcher.docs_for_query(query) if not excluded or d not in excluded),
                                 COUNT_CAP + 1))
            scored = _phrases_ranked(searcher, query, walked)
            found = scored[0] if scored is not None else None
        nothing = found is not None and not len(found)
        page_hits: Any = []
        if not nothing:
            from whoosh.searching import Results

            if found is not None and sortedby is not None:  # newest or most hurting first, from the columns
                scores = scored[1] if scored is not None else np.zeros(len(found))
                results = Results(searcher, query, top_by_column(searcher, sort, found, scores, page * per_page))
            elif scored is not None:  # the same ranking as Whoosh's, from whole posting lists
                results = Results(searcher, query, top_scored(scored[0], scored[1], page * per_page))
            else:  # never with an empty filter (Whoosh reads it as none): "nothing" is handled above
                # Whoosh's own walk of an exclusion ("-word", "-component:x") can let excluded
                # documents through once the index has deletions: it is held to the exact set.
                allowed = set(found.tolist()) if found is not None and _excludes(query) else None
                results = searcher.search(query, limit=page * per_page, sortedby=sortedby, filter=allowed,
                                          mask=excluded)
            results.fragmenter.charlimit = 8000  # snippets come from the start of long threads
            results.formatter = MarkFormatter()
            page_hits = results[(page - 1) * per_page:page * per_page]
        hits = []
        for hit in page_hits:
            snippet = hit.highlights("text", top=2) or hit.highlights("title") or _escape(hit["text"][:240])
            meta = {"kind": hit["kind"], "id": int(hit["id"]), "title": hit["title"], "snippet": snippet,
                    "list": hit.get("list") or None, "components": [c for c in (hit.get("components") or
                                                                                 "").split(",") if c],
                    "refs": [r for r in (hit.get("refs") or "").split(",") if r],
                    "status": hit.get("status") or None,
                    "date": hit["date"].isoformat() + "Z" if hit.get("date") else None,
                    "score": round(float(hit.score or 0.0), 4)}
            hits.append(meta)
        # Past COUNT_CAP documents of Whoosh's walk, the total and facets are estimates (the
        # ranking of the top hits is exact either way).
        matching = found if found is not None else walked
        estimated = found is None and len(matching) > COUNT_CAP
        total = int(results.estimated_length()) if estimated else len(matching)
        counts = facet_counts(searcher, matching[:COUNT_CAP] if estimated else matching)
        suggestion = did_you_mean(searcher, q.words) if q.words and total < 3 else None
        return {"total": total, "total_is_estimate": estimated, "facets": counts, "hits": hits,
                "suggestion": suggestion}


def _phrases_ranked(searcher: Any, query: Any, walked: list[int]) -> tuple[Any, Any] | None:
    """A query with phrases, whose documents Whoosh's walk without scoring found (the positions
    are only in Whoosh's blocks), ranked by the BM25F of the same query with each phrase read as
    its words (posting arrays), which halves a phrase's time at 1M messages. None where the words'
    query does not hold every match (a phrase inside an exclusion) or past COUNT_CAP matches."""
    import numpy as np
    from whoosh.query import And, Phrase, Term

    def relaxed(q: Any) -> Any:
        if isinstance(q, Phrase):
            return And([Term(q.fieldname, w) for w in q.words], boost=q.boost)
        return q.apply(relaxed)

    if len(walked) > COUNT_CAP:
        return None
    words = scored_matches(searcher, relaxed(query))
    if words is None:
        return None
    exact = np.unique(np.asarray(walked, dtype=np.int64))
    keep = np.isin(words[0], exact, assume_unique=True)
    if int(keep.sum()) != len(exact):
        return None
    return words[0][keep], words[1][keep]


def _excluded_docs(searcher: Any, query: Any) -> set[int] | None:
    """The documents a query's exclusions rule out everywhere in it (the negative parts of its
    top-level intersections), or None without any."""
    from whoosh.query import And, AndNot, Not

    def negatives(q: Any) -> list[Any]:
        if type(q) is AndNot:
            return [q.b, *negatives(q.a)]
        if type(q) is And:
            out = []
            for c in q.subqueries:
                out.extend([c.query] if isinstance(c, Not) else negatives(c))
            return out
        return []

    parts = negatives(query)
    if not parts:
        return None
    out: set[int] = set()
    for part in parts:
        found = match_set(searcher, part)
        out.update(found.tolist() if found is not None else searcher.docs_for_query(part))
    return out


def _excludes(q: Any) -> bool:
    from whoosh.query import AndNot, Not

    return isinstance(q, (Not, AndNot)) or any(_excludes(c) for c in q.children())


# Each thread keeps its own searchers (a Whoosh searcher is not to be shared between threads).
_searchers = threading.local()


def did_you_mean(searcher: Any, words: str) -> str | None:
    """The query with each word nobody wrote replaced by the closest word that is in the index."""
    changed = False
    out = []
    for word in re.findall(r"\S+", words):
        bare = word.lower().strip('"+-')
        stems = [t.text for t in _analyzer()(bare)]
        known = any(searcher.doc_frequency(f, t) for t in stems for f in ("text", "title"))
        if re.fullmatch(r"[a-z]{4,}", bare) and not known:
            found = searcher.suggest("spell", bare, limit=1, maxdist=2)
            if found:
                word = word.replace(bare, found[0]) if bare in word else found[0]
                changed = True
        out.append(word)
    return " ".join(out) if changed else None


def _escape(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


class PostgresIndex:
    """The same interface on PostgreSQL full-text search (a tsvector column with a GIN index), for
    deployments whose web workers on several hosts share one database and no disk."""

    def __init__(self, engine: Any):
        self.engine = engine

    def _rows(self, docs: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for d in docs:
            yield {"key": d["key"], "kind": d["kind"], "ref_id": int(d["id"]), "title": d["title"] or "",
                   "body": (d["text"] or "")[:20000], "author": d.get("author") or "",
                   "roles": list(d.get("role") or []), "list": d.get("list") or "",
                   "components": [c.lower() for c in d.get("components") or []], "refs": list(d.get("refs") or []),
                   "status": d.get("status") or "", "date": d.get("date"),
                   "year": d["date"].year if d.get("date") else None, "impact": float(d.get("impact") or 0.0)}

    _UPSERT = """INSERT INTO search_doc (key, kind, ref_id, title, body, author, roles, list, components, refs,
                     status, date, year, impact)
                 VALUES (:key, :kind, :ref_id, :title, :body, :author, :roles, :list, :components, :refs, :status,
                         :date, :year, :impact)
                 ON CONFLICT (key) DO UPDATE SET kind = EXCLUDED.kind, ref_id = EXCLUDED.ref_id,
                     title = EXCLUDED.title, body = EXCLUDED.body, author = EXCLUDED.author, roles = EXCLUDED.roles,
                     list = EXCLUDED.list, components = EXCLUDED.components, refs = EXCLUDED.refs,
                     status = EXCLUDED.status, date = EXCLUDED.date, year = EXCLUDED.year, impact = EXCLUDED.impact"""

    def _write(self, conn: Any, docs: Iterable[dict[str, Any]], progress: Any = None) -> int:
        from sqlalchemy import text

        n, batch, words = 0, [], set[str]()
        for row in self._rows(docs):
            batch.append(row)
            words.update(w.lower() for w in re.findall(r"[A-Za-z][a-z]{3,}", f"{row['title']} {row['body'][:2000]}"))
            if len(batch) >= 500:
                conn.execute(text(self._UPSERT), batch)
                n, batch = n + len(batch), []
            if progress:
                progress(1)
        if batch:
            conn.execute(text(self._UPSERT), batch)
            n += len(batch)
        if words:
            conn.execute(text("INSERT INTO search_word (word) SELECT unnest(CAST(:w AS text[])) "
                              "ON CONFLICT DO NOTHING"), {"w": sorted(words)})
        return n

    def rebuild(self, docs: Iterable[dict[str, Any]], progress: Any = None) -> int:
        """Replace every document in one transaction: readers see the old set until it commits."""
        from sqlalchemy import text

        with self.engine.begin() as conn:
            conn.execute(text("DELETE FROM search_doc"))
            return self._write(conn, docs, progress)

    def update(self, docs: Iterable[dict[str, Any]], delete_keys: Iterable[str] = (), *, expected: int = 0) -> int:
        from sqlalchemy import text

        with self.engine.begin() as conn:
            keys = list(delete_keys)
            if keys:
                conn.execute(text("DELETE FROM search_doc WHERE key = ANY(:k)"), {"k": keys})
            return self._write(conn, docs)

    def _where(self, q: Query) -> tuple[str, dict[str, Any]]:
        """SQL conditions for a query. Only fixed column names and operators are written into the
        SQL (filter keys come from FILTER_KEYS); every value is a bound parameter."""
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if q.words:
            clauses.append("tsv @@ websearch_to_tsquery('english', :words)")
            params["words"] = q.words
        column = {"component": "components", "from": "roles", "ref": "refs"}
        for n, (key, values) in enumerate(q.filters.items()):
            params[f"f{n}"] = values
            clauses.append(f"{column[key]} && CAST(:f{n} AS text[])" if key in column
                           else f"{key} = ANY(CAST(:f{n} AS text[]))")
        for n, (key, values) in enumerate(q.excluded.items()):
            params[f"x{n}"] = values
            clauses.append(f"NOT ({column[key]} && CAST(:x{n} AS text[]))" if key in column
                           else f"NOT ({key} = ANY(CAST(:x{n} AS text[])))")
        if q.after:
            clauses.append("date >= :after")
            params["after"] = q.after
        if q.before:
            clauses.append("date < :before")
            params["before"] = q.before
        return (" AND ".join(clauses) or "TRUE"), params

    def search(self, q: Query, *, sort: str = "relevance", page: int = 1, per_page: int = 20) -> dict[str, Any]:
        from sqlalchemy import text

        where, params = self._where(q)
        rank = "ts_rank_cd(tsv, websearch_to_tsquery('english', :words))" if q.words else "CAST(0 AS real)"
        order = {"relevance": f"{rank} DESC, date DESC NULLS LAST", "date": "date DESC NULLS LAST",
                 "impact": "impact DESC, date DESC NULLS LAST"}[sort]
        escaped = "replace(replace(replace(body, '&', '&amp;'), '<', '&lt;'), '>', '&gt;')"
        snippet = (f"ts_headline('english', {escaped}, websearch_to_tsquery('english', :words), "
                   "'StartSel=<mark>, StopSel=</mark>, MaxFragments=2, MaxWords=30, MinWords=12, "
                   "FragmentDelimiter=\" … \"')") if q.words else f"left({escaped}, 240)"
        with self.engine.connect() as conn:
            # Composed from fixed SQL only (see _where); values are bound parameters.
            total = conn.execute(text(f"SELECT count(*) FROM (SELECT 1 FROM search_doc WHERE {where} "  # noqa: S608
                                      f"LIMIT {HIT_CAP}) capped"), params).scalar_one()
            rows = conn.execute(text(
                f"SELECT kind, ref_id, title, {snippet} AS snippet, list, components, refs, status, date, "  # noqa: S608
                f"{rank} AS score FROM search_doc WHERE {where} ORDER BY {order} LIMIT :limit OFFSET :offset"),
                {**params, "limit": per_page, "offset": (page - 1) * per_page}).all()
            facets: dict[str, dict[str, int]] = {}
            for name, expr in (("kind", "kind"), ("component", "unnest(components)"), ("list", "list"),
                               ("status", "status"), ("year", "CAST(year AS text)"), ("role", "unnest(roles)")):
                facets[name] = {str(v): c for v, c in conn.execute(text(
                    f"SELECT v, count(*) FROM (SELECT {expr} AS v FROM search_doc WHERE {where}) f "  # noqa: S608
                    "WHERE v IS NOT NULL AND v <> '' GROUP BY v ORDER BY count(*) DESC, v LIMIT 50"), params)}
            suggestion = self._did_you_mean(conn, q.words) if q.words and total < 3 else None
        hits = [{"kind": r.kind, "id": r.ref_id, "title": r.title, "snippet": r.snippet, "list": r.list or None,
                 "components": list(r.components), "refs": list(r.refs), "status": r.status or None,
                 "date": r.date.isoformat() + "Z" if r.date else None, "score": round(float(r.score), 4)}
                for r in rows]
        return {"total": total, "facets": facets, "hits": hits, "suggestion": suggestion}

    def _did_you_mean(self, conn: Any, words: str) -> str | None:
        from sqlalchemy import text

        try:
            with conn.begin_nested():
                changed, out = False, []
                for word in re.findall(r"\S+", words):
                    bare = word.lower().strip('"+-')
                    known = conn.execute(text("SELECT 1 FROM search_word WHERE word = :w"), {"w": bare}).first()
                    if re.fullmatch(r"[a-z]{4,}", bare) and not known:
                        found = conn.execute(text(
                            "SELECT word FROM search_word WHERE word % :w ORDER BY similarity(word, :w) DESC, word "
                            "LIMIT 1"), {"w": bare}).scalar()
                        if found:
                            word, changed = word.replace(bare, found), True
                    out.append(word)
                return " ".join(out) if changed else None
        except Exception:  # noqa: BLE001 - pg_trgm missing: no suggestion, search still answers
            return None

    def more_like(self, key: str, *, limit: int = 10) -> list[dict[str, Any]]:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            title = conn.execute(text("SELECT title FROM search_doc WHERE key = :k"), {"k": key}).scalar()
            if not title:
                return []
            words = " OR ".join(re.findall(r"[A-Za-z0-9]{3,}", title)[:12])
            rows = conn.execute(text(
                "SELECT kind, ref_id, title, ts_rank_cd(tsv, websearch_to_tsquery('english', :q)) AS score "
                "FROM search_doc WHERE key <> :k AND tsv @@ websearch_to_tsquery('english', :q) "
                "ORDER BY score DESC LIMIT :n"), {"q": words, "k": key, "n": limit}).all()
        return [{"kind": r.kind, "id": r.ref_id, "title": r.title, "score": round(float(r.score), 4)} for r in rows]

    def stats(self) -> dict[str, Any]:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return {"documents": conn.execute(text("SELECT count(*) FROM search_doc")).scalar_one(),
                    "generation": "postgresql"}


def index_for(config: Any) -> WhooshIndex | PostgresIndex:
    """The configured backend: Whoosh files in the data folder (default), or PostgreSQL's own
    full-text search when EARSHOT_SEARCH_BACKEND=postgres (the database must be PostgreSQL)."""
    backend = str(config.get("SEARCH_BACKEND") or "whoosh").lower()
    if backend == "postgres":
        from . import db as dbmod

        if not str(config["SQLALCHEMY_URL"]).startswith("postgresql"):
            raise SearchError("backend", "EARSHOT_SEARCH_BACKEND=postgres needs a PostgreSQL database")
        return PostgresIndex(dbmod.engine())
    return WhooshIndex(Path(str(config["DATA_DIR"])) / "search", procs=int(config.get("INDEX_PROCS") or 1),
                       limitmb=float(config.get("INDEX_MEMORY_MB") or 48))


def reindex(session: Session, config: Any, *, thread_ids: Iterable[int] = (),
            painpoint_ids: Iterable[int] | None = (), tickets: bool = False, removed: Iterable[str] = (),
            update: IndexUpdate | None = None) -> int:
    """Bring the index up to date after the database committed: the given threads, the given
    pain points (None: every one, merged ones removed) and, when asked, every ticket; `removed`
    names documents to drop (a deleted report: "report:7"). With `update`, the documents join
    that update, which this commits (or abandons, on an error); the number returned then counts
    the documents it held before too."""
    from itertools import chain

    try:
        docs, gone, expected = _changes(session, thread_ids, painpoint_ids, tickets, removed)
        if update is None:
            return index_for(config).update(chain.from_iterable(docs), gone, expected=expected)
        update.delete(gone)
        update.add(chain.from_iterable(docs))
    except BaseException:
        if update is not None:
            update.abandon()
        raise
    return update.commit()


def _changes(session: Session, thread_ids: Iterable[int], painpoint_ids: Iterable[int] | None, tickets: bool,
             removed: Iterable[str]) -> tuple[list[Iterable[dict[str, Any]]], list[str], int]:
    """What reindex() writes: document streams, keys to delete, and about how many documents."""
    from sqlalchemy import func, select

    from .models import PainPoint, Thread

    # Documents stream to the writer (500 threads at a time), so memory does not grow with the
    # archive; what must leave the index is found in SQL beforehand.
    wanted = sorted(set(thread_ids))
    existing = {t for chunk in (wanted[i:i + 500] for i in range(0, len(wanted), 500))
                for t in session.execute(select(Thread.id).where(Thread.id.in_(chunk))).scalars()}
    # Threads that no longer exist (a deleted field report) leave the index.
    gone: list[str] = [f"thread:{t}" for t in wanted if t not in existing] + list(removed)
    parts: list[Iterable[dict[str, Any]]] = [thread_documents(session, sorted(existing))] if existing else []
    expected = len(existing)
    if painpoint_ids is None:
        parts.append(painpoint_documents(session))
        expected += int(session.execute(select(func.count(PainPoint.id)).where(
            PainPoint.merged_into_id.is_(None))).scalar_one())
        gone += [f"painpoint:{i}" for i in session.execute(select(PainPoint.id).where(
            PainPoint.merged_into_id.is_not(None))).scalars()]
    else:
        ids = sorted(set(painpoint_ids))
        live = {i for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500))
                for i in session.execute(select(PainPoint.id).where(
                    PainPoint.id.in_(chunk), PainPoint.merged_into_id.is_(None), PainPoint.reports > 0)).scalars()}
        parts.append(painpoint_documents(session, sorted(live)) if live else [])
        expected += len(live)
        gone += [f"painpoint:{i}" for i in ids if i not in live]
    if tickets:
        parts.append(ticket_documents(session))
    return parts, gone, expected


def reindex_painpoints(session: Session, config: Any, ids: list[int]) -> int:
    """Re-index some pain points after a developer changed them; merged or emptied ones leave."""
    return reindex(session, config, painpoint_ids=ids)


def stats(config: Any) -> dict[str, Any]:
    idx = index_for(config)
    if isinstance(idx, PostgresIndex):
        return idx.stats()
    ix = idx.open()
    if ix is None:
        return {"documents": 0, "generation": None}
    return {"documents": ix.doc_count(), "generation": idx.current().name if idx.current() else None}
