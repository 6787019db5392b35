"""Whoosh segments read as whole posting lists, and queries evaluated over them with numpy.

Whoosh's own search walks each matching posting in Python (3 to 5 µs each) and keeps postings in
pickled, compressed blocks of 128: at 1M messages a common word took a second. Here:

- segments are written by `_SideCodec`, Whoosh's codec plus every term's document numbers and
  weights as plain arrays inside the segment's file (`_SidePostings`, memory-mapped);
- `match_set` and `scored_matches` evaluate a Whoosh query over whole posting lists (words,
  filters, exclusions, date ranges, prefixes) with Whoosh's BM25F, the same scores and order;
  `top_scored` and `top_by_column` take the top of them; `facet_counts` counts facets from
  per-segment tables;
- what is read once per segment (arrays, field lengths, sort columns, facet tables) is kept per
  process in `_per_segment`, and `forget_segments` drops what belongs to segments that are gone.

Anything this module does not know (phrases need positions, which only Whoosh's blocks hold)
returns None, and the caller lets Whoosh walk it. The search backend is portal.search.
"""

from __future__ import annotations

import logging
import mmap
import os
import pickle
import struct
import sys
import threading
import weakref
from array import array
from pathlib import Path
from typing import Any

from whoosh.codec.whoosh3 import W3Codec, W3FieldWriter, W3PostingsWriter
from whoosh.scoring import BM25F, BM25FScorer
from whoosh.util import random_name

log = logging.getLogger(__name__)

# The facets a search counts, in the order they are shown, and the index field behind each
# (year is indexed from the date for this).
FACETS = ("kind", "component", "list", "status", "year", "role")


# What is read once per segment and process: posting arrays, field lengths, sort columns, facet
# tables, by (index folder, segment id, what). A segment never changes (deletions only hide
# documents), so the fresh searchers that follow an update reuse all of it; the searcher drops
# what belongs to segments that are gone (forget_segments).
_per_segment: dict[tuple[str, str, str], Any] = {}
_segment_lock = threading.Lock()  # guards _per_segment and _live_masks


def _segment_key(reader: Any) -> tuple[str, str]:
    """(index folder, segment id) of a segment reader. A segment assembled into one file is read
    through an overlay of that file on the folder."""
    storage = reader.storage()
    folder = getattr(getattr(storage, "b", storage), "folder", "")
    return str(folder), reader.segment().segment_id()


def _segment_cached(reader: Any, what: str, build: Any) -> Any:
    """`build()` for this segment, made once per process and kept in _per_segment."""
    key = (*_segment_key(reader), what)
    try:
        return _per_segment[key]
    except KeyError:
        pass
    value = build()
    with _segment_lock:
        if len(_per_segment) > 1024:  # (forget_segments keeps it small; this is a backstop)
            _per_segment.clear()
        _per_segment[key] = value
    return value


def forget_segments(root: Path, current: Path, live: set[str]) -> None:
    """Drop what _per_segment holds for segments under this index folder that are no longer read
    (merged away, or in a generation a rebuild replaced), releasing their memory maps."""
    keep = str(current)
    with _segment_lock:
        for key in [k for k in _per_segment if Path(k[0]).parent == root and (k[0] != keep or k[1] not in live)]:
            del _per_segment[key]


def _field_lengths(reader: Any, fieldname: str) -> array[int]:
    return _segment_cached(reader, f"lengths:{fieldname}", lambda: _read_lengths(reader, fieldname))  # type: ignore[no-any-return]


def _read_lengths(reader: Any, fieldname: str) -> array[int]:
    """Every document's length in the field, as Whoosh's doc_field_length gives it (1 for a
    document without the field, which never matches a word of it), read from the segment's length
    column in one piece (a call per document cost 2 s at 1M messages)."""
    import numpy as np
    from whoosh.codec.whoosh3 import LENGTHS_COLUMN, _lenfield
    from whoosh.util.numeric import byte_to_length

    size = reader.doc_count_all()
    out = np.ones(size, dtype=np.int64)
    try:
        column = reader._perdoc._cached_reader(_lenfield(fieldname), LENGTHS_COLUMN)
        if column is not None:
            stored = np.frombuffer(column._dbfile.get(column._basepos, column._count), dtype=np.uint8)[:size]
            table = np.array([byte_to_length(b) if b else 1 for b in range(256)], dtype=np.int64)
            out[:len(stored)] = table[stored]
    except AttributeError:  # a reader of another kind: one document at a time
        out = np.array([reader.doc_field_length(i, fieldname, 1) or 1 for i in range(size)], dtype=np.int64)
    lengths = array("q")
    lengths.frombytes(out.tobytes())
    return lengths


class _Ranking(BM25F):  # type: ignore[misc]
    """Whoosh's BM25F (same scores), with each document's field length looked up in a list read
    once per segment instead of through the segment's length column for every match (a quarter of
    a query's time on common words)."""

    def scorer(self, searcher: Any, fieldname: str, text: Any, qf: float = 1) -> Any:
        scorer = super().scorer(searcher, fieldname, text, qf=qf)
        reader = searcher.reader()
        if isinstance(scorer, BM25FScorer) and hasattr(reader, "segment"):
            scorer.dfl = _field_lengths(reader, fieldname).__getitem__
        return scorer


# Posting arrays beside each segment ("<segment>.eps"): every term's document numbers (uint32)
# and weights (float32, left out when all are 1), contiguous; then one pickled table per field
# {term bytes: (offset, count, has weights)}, loaded when a query first needs that field; then a
# pickled directory {field: (offset, length)} and the trailer. Whoosh keeps postings in pickled,
# compressed blocks of 128; reading a common word's 500,000 postings that way cost two thirds of
# a query at 1M messages, reading them from a memory map costs almost nothing.
SIDE_EXT = ".eps"
_SIDE_MAGIC = b"EPS2" + sys.byteorder[0].encode()  # arrays are in this machine's byte order
_SIDE_TRAILER = struct.Struct("<Q5s")
# Fields only ever looked up one document at a time (by Whoosh): no arrays.
_SIDE_SKIPPED = frozenset({"key", "id"})


class _SidePostingsWriter(W3PostingsWriter):  # type: ignore[misc]
    """Whoosh's postings writer that also keeps each term's whole lists (a block at a time, so
    nothing is added per posting)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.side_ids, self.side_weights = array("I"), array("f")

    def _write_block(self, last: bool = False) -> None:
        if not self._byteids:  # (vector postings hold terms, not documents)
            self.side_ids.extend(self._ids)
            self.side_weights.extend(self._weights)
        super()._write_block(last)

    def finish_postings(self) -> Any:
        if not self.written() and len(self) < self._inlinelimit:
            # Inlined into the term's entry. (Whoosh's own code for this calls a method its term
            # info does not have, which is why its default limit inlines nothing.)
            if not self._byteids:
                self.side_ids.extend(self._ids)
                self.side_weights.extend(self._weights)
            terminfo: Any = self._terminfo  # type: ignore[has-type]
            terminfo.add_block(self)
            terminfo.set_inlined(self._ids, self._weights, self._values)
            self._terminfo = None
            return terminfo
        return super().finish_postings()


_RECORD = struct.Struct("<I")  # the length of a record of a TermPool's run file


class TermPool:
    """Whoosh's posting pool (what a segment writer gathers before writing postings), kept by term
    instead of by posting. Whoosh's pool holds a tuple per posting, pickles them to sorted runs
    on disk every `limitmb` and merges the runs back a posting at a time (a third of writing an
    index); this one appends each posting to its term's arrays (document, weight, value length,
    and the values end to end: about 12 bytes and the value per posting), and when it outgrows
    `limitmb` writes its terms in order to a run file, a term at a time, so memory stays bounded.
    The field writer (`_SideFieldWriter.add_postings`) takes whole terms from it, a block at a time.

    `install(writer)` puts one in a Whoosh segment writer in place of its own."""

    def __init__(self, tempstore: Any, limitmb: float = 128):
        self.tempstore = tempstore
        self.limit = int(limitmb * 1024 * 1024)
        self.fieldnames: set[str] = set()
        self.terms: dict[tuple[str, bytes], tuple[array[int], array[float], array[int], bytearray]] = {}
        self.size = 0
        self.runs: list[str] = []
        self.unsorted: set[tuple[str, bytes]] = set()  # terms whose documents came out of order
        self.high = self.saved_high = -1  # the highest document held, and written to runs

    @classmethod
    def install(cls, writer: Any) -> Any:
        if not isinstance(writer.pool, cls):
            writer.pool.cleanup()
            writer.pool = cls(writer._tempstorage, writer.pool.limit / (1024 * 1024))
        return writer

    def add(self, item: tuple[str, bytes, int, float, bytes | None]) -> None:
        fieldname, btext, docnum, weight, value = item
        entry = self.terms.get((fieldname, btext))
        if entry is None:
            if docnum < self.saved_high:  # (a run on disk may hold later documents of this term)
                self.unsorted.add((fieldname, btext))
            self.fieldnames.add(fieldname)
            entry = self.terms[(fieldname, btext)] = (array("I"), array("f"), array("I"), bytearray())
            self.size += 400 + len(btext)  # (three arrays, a bytearray, the key and its dict slot)
        docs = entry[0]
        if docs and docnum < docs[-1]:  # (Whoosh adds a segment's documents in order, merges too)
            self.unsorted.add((fieldname, btext))
        docs.append(docnum)
        if docnum > self.high:
            self.high = docnum
        entry[1].append(weight)
        if value:
            entry[2].append(len(value))
            entry[3].extend(value)
            self.size += 12 + len(value)
        else:
            entry[2].append(0)
            self.size += 12
        if self.size > self.limit:
            self.save()

    def save(self) -> None:
        """Write the terms held in memory to a run file, in order, and forget them."""
        if not self.terms:
            return
        # Writer processes share the index's temporary folder: names must differ between them
        # (an id() does not: processes forked alike allocate alike).
        name = f"terms-{os.getpid()}-{random_name(12)}.run"
        with self.tempstore.create_file(name).raw_file() as f:
            # A record per term, its length first, each pickled alone. (One pickle stream for the
            # run kept, in the unpickler's memo, every term read back: merging the runs held them
            # all, and a writer process of a 200k-message import grew to 700 MB with a pool
            # limit of 128. An unpickler's memo cannot be reset between records.)
            for key in sorted(self.terms):
                record = pickle.dumps((key, *self.terms[key]), protocol=pickle.HIGHEST_PROTOCOL)
                f.write(_RECORD.pack(len(record)))
                f.write(record)
        self.runs.append(name)
        self.terms, self.size, self.saved_high = {}, 0, self.high

    def _read_run(self, name: str) -> Any:
        with self.tempstore.open_file(name).raw_file() as f:
            while head := f.read(_RECORD.size):
                (length,) = _RECORD.unpack(head)
                yield pickle.loads(f.read(length))  # noqa: S301 - a run this pool wrote a moment ago

    def iter_terms(self) -> Any:
        """(fieldname, term, documents, weights, values) in term order, each term's documents
        in order (the runs hold ever later documents, so a term's pieces join in run order)."""
        import heapq

        if not self.runs:
            for key in sorted(self.terms):
                yield self._in_order(key, *self.terms[key])
            return
        self.save()
        current: Any = None
        for key, docs, weights, lengths, values in heapq.merge(*(self._read_run(r) for r in self.runs),
                                                               key=lambda record: record[0]):
            if current is not None and current[0] == key:
                current[1].extend(docs)
                current[2].extend(weights)
                current[3].extend(lengths)
                current[4].extend(values)
                continue
            if current is not None:
                yield self._in_order(*current)
            current = [key, docs, weights, lengths, values]
        if current is not None:
            yield self._in_order(*current)

    def _in_order(self, key: tuple[str, bytes], docs: array[int], weights: array[float], lengths: array[int],
                  values: bytearray) -> tuple[str, bytes, array[int], array[float], list[bytes]]:
        """The term's postings with its values as a list of bytes (b"" for none)."""
        blob, at, split = bytes(values), 0, []
        for n in lengths:
            split.append(blob[at:at + n])
            at += n
        if key in self.unsorted:  # in document order, as Whoosh's sorted pool gives them
            order = sorted(range(len(docs)), key=docs.__getitem__)
            docs = array("I", (docs[i] for i in order))
            weights = array("f", (weights[i] for i in order))
            split = [split[i] for i in order]
        return key[0], key[1], docs, weights, split

    def iter_postings(self) -> Any:
        """What Whoosh's pool gives: (fieldname, term, document, weight, value) in order."""
        return _PoolPostings(self)

    def cleanup(self) -> None:
        for name in self.runs:
            try:
                self.tempstore.delete_file(name)
            except OSError:
                pass
        self.runs, self.terms, self.size = [], {}, 0


class _PoolPostings:
    """A TermPool's postings: Whoosh's kind of iterator, which _SideFieldWriter reads by term."""

    def __init__(self, pool: TermPool):
        self.pool = pool

    def __iter__(self) -> Any:
        for fieldname, btext, docs, weights, values in self.pool.iter_terms():
            for docnum, weight, value in zip(docs, weights, values, strict=True):
                yield fieldname, btext, docnum, weight, value


class _SideFieldWriter(W3FieldWriter):  # type: ignore[misc]
    """Whoosh's field writer, which also writes the segment's posting arrays (SIDE_EXT). New
    segments and merges both go through it."""

    def add_postings(self, schema: Any, lengths: Any, items: Any) -> None:
        """Whoosh's loop over postings, a term at a time when they come from a TermPool: each
        block's lists are handed to the postings writer whole (what add_posting would have built
        one posting at a time). Lengths are not recorded in blocks (_SideCodec.length_stats)."""
        if not isinstance(items, _PoolPostings) or self._codec.length_stats:
            super().add_postings(schema, lengths, items)
            return
        lastfn = None
        for fieldname, btext, docs, weights, values in items.pool.iter_terms():
            if fieldname != lastfn:
                if lastfn is not None:
                    self.finish_field()
                self.start_field(fieldname, schema[fieldname])
                lastfn = fieldname
            self.start_term(btext)
            postings = self._postwriter
            limit = postings._blocklimit
            for start in range(0, len(docs), limit):
                if start:  # the previous block is full: write it (the last waits for finish_term)
                    postings._write_block()
                block_weights = weights[start:start + limit]
                postings._ids = docs[start:start + limit]
                postings._weights = block_weights
                postings._values = [v for v in values[start:start + limit] if v]
                postings._maxweight = max(0.0, max(block_weights))
            self.finish_term()
        if lastfn is not None:
            self.finish_field()

    def __init__(self, codec: Any, storage: Any, segment: Any):
        super().__init__(codec, storage, segment)
        self._side = self._create_file(SIDE_EXT)
        self._side_offset = 0
        self._side_terms: dict[str, dict[bytes, tuple[int, int, bool]]] = {}

    def finish_term(self) -> None:
        postings = self._postwriter
        super().finish_term()
        ids, weights = postings.side_ids, postings.side_weights
        if ids and self._fieldname not in _SIDE_SKIPPED:
            weighted = weights.count(1.0) != len(weights)
            chunk = ids.tobytes() + (weights.tobytes() if weighted else b"")
            self._side.write(chunk)
            self._side_terms.setdefault(self._fieldname, {})[self._btext] = (self._side_offset, len(ids), weighted)
            self._side_offset += len(chunk)
        postings.side_ids, postings.side_weights = array("I"), array("f")

    def close(self) -> None:
        directory = {}
        for fieldname, terms in self._side_terms.items():
            table = pickle.dumps(terms, protocol=pickle.HIGHEST_PROTOCOL)
            directory[fieldname] = (self._side_offset, len(table))
            self._side.write(table)
            self._side_offset += len(table)
        self._side.write(pickle.dumps(directory, protocol=pickle.HIGHEST_PROTOCOL))
        self._side.write(_SIDE_TRAILER.pack(self._side_offset, _SIDE_MAGIC))
        self._side.close()
        super().close()


# Terms with fewer postings than this keep them in their term's entry instead of a block of the
# postings file (Whoosh's "inline" postings; its default limit, 1, inlines none). Most of an
# archive's terms are rare (ids, numbers, names): a block each, pickled, compressed and written,
# was over a third of writing the index.
INLINE_LIMIT = 8


class _SideCodec(W3Codec):  # type: ignore[misc]
    """Whoosh's codec (the same files, read by Whoosh as ever) plus the posting arrays. Segments
    record their codec, so older segments without arrays are read through Whoosh's blocks.

    Blocks carry no field length bounds (length_stats): writing them looked up a length for every
    posting, an eighth of writing the index; Whoosh uses them only to skip blocks in its own
    walk, which then bounds a block's best score by length 0 (looser, still exact)."""

    length_stats = False

    def __init__(self, blocklimit: int = 128, compression: int = 3, inlinelimit: int = INLINE_LIMIT):
        super().__init__(blocklimit=blocklimit, compression=compression, inlinelimit=inlinelimit)

    def field_writer(self, storage: Any, segment: Any) -> Any:
        return _SideFieldWriter(self, storage, segment)

    def postings_writer(self, dbfile: Any, byteids: bool = False) -> Any:
        return _SidePostingsWriter(dbfile, blocklimit=self._blocklimit, byteids=byteids,
                                   compression=self._compression, inlinelimit=self._inlinelimit)


class _SidePostings:
    """A segment's posting arrays, memory-mapped: `length` bytes from `base` in the file (Whoosh
    assembles a segment's files into one, so the arrays are a stretch of it)."""

    def __init__(self, path: Path, base: int = 0, length: int | None = None):
        with open(path, "rb") as f:
            self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.base = base
        end = base + (len(self.map) - base if length is None else length) - _SIDE_TRAILER.size
        directory_at, magic = _SIDE_TRAILER.unpack_from(self.map, end)
        if magic != _SIDE_MAGIC:
            raise ValueError(f"{path}: not posting arrays of this version written on this kind of machine")
        # Written by Earshot into its own index folder, whose Whoosh files are pickles too.
        self.directory: dict[str, tuple[int, int]] = pickle.loads(self.map[base + directory_at:end])  # noqa: S301
        self.tables: dict[str, dict[bytes, tuple[int, int, bool]]] = {}

    def has_field(self, fieldname: str) -> bool:
        return fieldname in self.directory

    def get(self, fieldname: str, btext: bytes, *, weights: bool) -> tuple[Any, Any] | None:
        """The term's documents and weights (None when the field has no such term)."""
        import numpy as np

        table = self.tables.get(fieldname)
        if table is None:  # (two threads may both read it: the same table either way)
            at, size = self.directory[fieldname]
            table = self.tables[fieldname] = pickle.loads(self.map[self.base + at:self.base + at + size])  # noqa: S301
        entry = table.get(btext)
        if entry is None:
            return None
        at, count, weighted = entry
        at += self.base
        ids = np.frombuffer(self.map, dtype=np.uint32, count=count, offset=at).astype(np.int64)
        if not weights:
            return ids, None
        if weighted:
            found = np.frombuffer(self.map, dtype=np.float32, count=count, offset=at + 4 * count).astype(np.float64)
        else:
            found = np.ones(count)
        return ids, found


def _side_postings(reader: Any) -> _SidePostings | None:
    """The segment's posting arrays, or None for a segment written without them."""
    return _segment_cached(reader, "postings", lambda: _open_side_postings(reader))  # type: ignore[no-any-return]


def _open_side_postings(reader: Any) -> _SidePostings | None:
    from whoosh.filedb.compound import CompoundStorage

    folder = _segment_key(reader)[0]
    storage, segment = reader.storage(), reader.segment()
    name = segment.make_filename(SIDE_EXT)
    compound = getattr(storage, "a", None)  # (a segment assembled into one file holds it)
    if isinstance(compound, CompoundStorage):
        if not compound.file_exists(name):
            return None
        path, (base, length) = Path(folder) / segment.make_filename(segment.COMPOUND_EXT), compound.range(name)
    elif folder and (Path(folder) / name).exists():
        path, base, length = Path(folder) / name, 0, None
    else:
        return None
    try:
        return _SidePostings(path, base, length)
    except (OSError, ValueError, struct.error, pickle.UnpicklingError, EOFError) as exc:
        # Whoosh's own blocks still answer, more slowly; the operator is told where and how to mend it.
        log.warning("%s: the posting arrays %s (at byte %d) are unreadable (%s: %s); searching that segment "
                    "through Whoosh's blocks until `flask index rebuild`", path, name, base,
                    exc.__class__.__name__, exc)
        return None


def match_set(searcher: Any, query: Any) -> Any:
    """Every document the query matches (numpy array of document numbers, ascending), computed
    from whole posting lists with set operations instead of Whoosh's walk over one match at a
    time (which cost a third of a query on common words). Knows words, their unions,
    intersections and exclusions, the filters' terms, date ranges, prefixes and wildcards; None
    for anything else (phrases), which Whoosh then walks."""
    found = _over_segments(searcher, query, scoring=False)
    return None if found is None else found[0]


def scored_matches(searcher: Any, query: Any) -> tuple[Any, Any] | None:
    """Every document the query matches (document numbers ascending) with its score by the
    searcher's BM25F, as Whoosh's matchers would score it, computed over whole posting lists with
    numpy instead of one match at a time in Python. Knows what match_set knows: words, filters,
    exclusions, date ranges, prefixes; phrases are left to Whoosh."""
    if type(searcher.weighting) not in (BM25F, _Ranking):
        return None
    return _over_segments(searcher, query, scoring=True)


_fallback_told: list[bool] = []  # the warning below, once per process


def _over_segments(searcher: Any, query: Any, *, scoring: bool) -> tuple[Any, Any] | None:
    import numpy as np

    ids_parts, score_parts = [], []
    try:
        for sub, offset in searcher.leaf_searchers():
            found = _evaluate(sub.reader(), searcher, query, scoring)
            if found is None:
                return None
            ids_parts.append(found[0] + offset)
            score_parts.append(found[1])
    except AttributeError as exc:  # a Whoosh whose readers or posting blocks look different
        if not _fallback_told:
            _fallback_told.append(True)
            log.warning("search answers through Whoosh's own walk, much more slowly: this Whoosh's "
                        "readers differ from those Earshot reads lists from (%s)", exc)
        return None
    if not ids_parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(ids_parts), (np.concatenate(score_parts) if scoring else None)


def _date_terms(reader: Any, q: Any) -> Any:
    """A date range as the plain query of index terms it stands for (Whoosh's own compilation:
    the numeric range's tiers, each range of terms spelled out), or None for anything else."""
    from whoosh.query import ConstantScoreQuery, NumericRange, Or, Term, TermRange

    if not isinstance(q, NumericRange):
        return None
    compiled = q._compile_query(reader)
    inner = compiled.child if isinstance(compiled, ConstantScoreQuery) else compiled
    parts = inner.subqueries if type(inner) is Or else [inner]
    spelled: list[Any] = []
    for part in parts:
        if isinstance(part, TermRange):
            spelled.extend(Term(part.fieldname, btext) for btext in part._btexts(reader))
        else:
            spelled.append(part)
    return Or(spelled)


def _live(reader: Any) -> Any:
    import numpy as np

    live = _live_mask(reader)
    return np.arange(reader.doc_count_all(), dtype=np.int64) if live is None else np.flatnonzero(live)


def _posting_ids(reader: Any, fieldname: str, text: Any) -> Any:
    """A term's live documents (ascending)."""
    return _postings(reader, fieldname, text, weights=False)[0]


def _postings(reader: Any, fieldname: str, text: Any, *, weights: bool) -> tuple[Any, Any]:
    """A term's live documents (ascending) and, when asked, their weights: from the segment's
    posting arrays, or for a segment written without them, from Whoosh's blocks."""
    import numpy as np

    side = _side_postings(reader)
    if side is None or not side.has_field(fieldname):  # (a field without arrays, or without terms)
        return _block_postings(reader, fieldname, text, weights=weights)
    btext = text if isinstance(text, bytes) else reader.schema[fieldname].to_bytes(text)
    found = side.get(fieldname, btext, weights=weights)
    if found is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    return _without_deleted(reader, found[0], found[1] if weights else np.zeros(0), weights)


def _block_postings(reader: Any, fieldname: str, text: Any, *, weights: bool) -> tuple[Any, Any]:
    """_postings read through Whoosh's posting blocks (up to 128 documents each)."""
    import numpy as np
    from whoosh.matching import ListMatcher
    from whoosh.reading import TermNotFound

    nothing = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    try:
        matcher = reader.postings(fieldname, text)
    except TermNotFound:
        return nothing
    leaf = getattr(matcher, "child", matcher)  # deletions are applied below, not one by one
    if isinstance(leaf, ListMatcher):  # postings inlined in the term's entry
        ids = np.asarray(leaf._ids, dtype=np.int64)
        found = np.asarray(leaf._weights or [1.0] * len(ids), dtype=np.float64) if weights else nothing[1]
        return _without_deleted(reader, ids, found, weights)
    id_blocks, weight_blocks = [], []
    while leaf.is_active():
        leaf._read_ids()
        id_blocks.append(np.asarray(leaf._ids, dtype=np.int64))
        if weights:
            leaf._read_weights()
            weight_blocks.append(np.asarray(leaf._weights, dtype=np.float64))
        leaf._next_block()
    if not id_blocks:
        return nothing
    ids = np.concatenate(id_blocks)
    return _without_deleted(reader, ids, np.concatenate(weight_blocks) if weights else nothing[1], weights)


def _without_deleted(reader: Any, ids: Any, found: Any, weights: bool) -> tuple[Any, Any]:
    live = _live_mask(reader)
    if live is not None:
        keep = live[ids]
        ids, found = ids[keep], (found[keep] if weights else found)
    return ids, found


# A segment reader's live documents as a mask (None without deletions), made once per reader:
# a reader sees a fixed set of deletions, and an import's replaced threads leave many.
_live_masks: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _live_mask(reader: Any) -> Any:
    import numpy as np

    if not reader.has_deletions():
        return None
    with _segment_lock:
        mask = _live_masks.get(reader)
    if mask is None:
        mask = np.ones(reader.doc_count_all(), dtype=bool)
        mask[np.fromiter(reader.deleted_docs_set, dtype=np.int64)] = False
        with _segment_lock:
            _live_masks[reader] = mask
    return mask


def top_scored(ids: Any, scores: Any, limit: int) -> list[tuple[float, int]]:
    """The `limit` best (score, document number), best first and lower numbers first among
    equal scores, as Whoosh ranks them."""
    import numpy as np

    if not len(ids) or limit < 1:
        return []
    k = min(limit, len(ids))
    floor = -np.partition(-scores, k - 1)[k - 1]
    near = np.flatnonzero(scores >= floor)  # the k best and whatever ties with the last of them
    order = near[np.lexsort((ids[near], -scores[near]))][:k]
    return [(float(scores[i]), int(ids[i])) for i in order]


def top_by_column(searcher: Any, column: str, ids: Any, scores: Any, limit: int) -> list[tuple[float, int]]:
    """The `limit` documents (with their scores) whose value in this column ("date", "impact") is
    highest, lower numbers first among equal values: Whoosh's order when it sorts by the column
    reversed, without walking every match; except that documents without a date come last (Whoosh
    put them first)."""
    import numpy as np

    if not len(ids) or limit < 1:
        return []
    values = np.empty(len(ids), dtype=np.int64)
    for sub, offset in searcher.leaf_searchers():
        reader = sub.reader()
        lo, hi = np.searchsorted(ids, [offset, offset + reader.doc_count_all()])
        if hi > lo:
            values[lo:hi] = _column_values(reader, column)[ids[lo:hi] - offset]
    order = np.lexsort((ids, ~values))[:limit]  # (~v orders as -v does, without overflowing)
    return [(float(scores[i]), int(ids[i])) for i in order]


# Sort columns of each segment (raw numbers: a date's sortable form), read once per process.
def _column_values(reader: Any, column: str) -> Any:
    """A sort column's raw numbers for every document of the segment (a missing date lowest)."""
    return _segment_cached(reader, f"column:{column}", lambda: _read_column(reader, column))


def _read_column(reader: Any, column: str) -> Any:
    import numpy as np

    size = reader.doc_count_all()
    if not reader.has_column(column):
        return np.zeros(size, dtype=np.int64)
    kind = reader.schema[column].column_type
    raw = reader.column_reader(column, translate=False)
    if not getattr(kind, "_typecode", "q").isupper():
        return np.fromiter(raw, dtype=np.int64, count=size)
    unsigned = np.fromiter(raw, dtype=np.uint64, count=size)  # a date's sortable form
    values = unsigned.astype(np.int64)
    values[unsigned == getattr(kind, "_default", None)] = np.iinfo(np.int64).min  # no date: last, not first
    return values


def ranked(searcher: Any, query: Any, limit: int) -> list[tuple[float, int]] | None:
    """The top `limit` of scored_matches(), or None where it does not know the query."""
    found = scored_matches(searcher, query)
    return None if found is None else top_scored(found[0], found[1], limit)


def _evaluate(reader: Any, top: Any, q: Any, scoring: bool) -> tuple[Any, Any] | None:
    """(document numbers ascending, scores or None) of one segment. Scores are what Whoosh's
    matchers give: a word's BM25F (or its weight in a field without lengths), a date range's
    constant 1, sums over unions and intersections, the included side of an exclusion. None for
    a query this does not know."""
    import numpy as np
    from whoosh.query import And, AndNot, Every, Not, NullQuery, Or, Prefix, Term, Wildcard

    if q is NullQuery:
        return np.zeros(0, dtype=np.int64), (np.zeros(0) if scoring else None)
    if scoring and getattr(q, "boost", 1.0) != 1.0 and type(q) is not Term:
        return None
    dates = _date_terms(reader, q)
    if dates is not None:  # Whoosh scores a date range as a constant 1 (its boost)
        found = _evaluate(reader, top, dates, False)
        return None if found is None else (found[0], np.ones(len(found[0])) if scoring else None)
    if isinstance(q, (Prefix, Wildcard)):  # the words of the index it stands for, in this segment
        words = [Term(q.fieldname, w) for w in q._btexts(reader) if w]
        if len(words) == 1:  # Whoosh matches a lone word as itself (its BM25F, the query's boost left out)
            return _evaluate(reader, top, words[0], scoring)
        if scoring and q.boost != 1.0:
            return None
        found = _evaluate(reader, top, Or(words), False)
        # Several words: Whoosh matches them without a weighting, which scores each document 1.
        return None if found is None else (found[0], np.ones(len(found[0])) if scoring else None)
    if type(q) is Term:
        ids, weights = _postings(reader, q.fieldname, q.text, weights=scoring)
        if not scoring:
            return ids, None
        if top.schema[q.fieldname].scorable:
            weighting = top.weighting
            b, k1 = weighting._field_B.get(q.fieldname, weighting.B), weighting.K1
            average = top.avg_field_length(q.fieldname) or 1
            lengths = np.frombuffer(_field_lengths(reader, q.fieldname), dtype=np.int64)[ids] \
                if len(ids) else np.zeros(0)
            weights = top.idf(q.fieldname, q.text) * (
                (weights * (k1 + 1)) / (weights + k1 * ((1 - b) + b * lengths / average)))
        return ids, weights * q.boost if q.boost != 1.0 else weights
    if type(q) is Every:  # Whoosh scores every document with the query's boost
        if q.fieldname not in (None, "", "*"):
            return None
        everything = _live(reader)
        return everything, (np.full(len(everything), float(q.boost)) if scoring else None)
    if type(q) is Not:  # Whoosh's inverse matcher scores each document it lets through 1
        inner = _evaluate(reader, top, q.query, False)
        if inner is None:
            return None
        everything = _live(reader)
        kept = everything[_outside(everything, inner[0], reader.doc_count_all())]
        return kept, (np.ones(len(kept)) if scoring else None)
    if type(q) is AndNot:
        a, b = _evaluate(reader, top, q.a, scoring), _evaluate(reader, top, q.b, False)
        if a is None or b is None:
            return None
        keep = _outside(a[0], b[0], reader.doc_count_all())
        return a[0][keep], (a[1][keep] if scoring else None)
    if type(q) in (And, Or):
        evaluated = [_evaluate(reader, top, k, scoring) for k in q.subqueries]
        if not evaluated:  # (a date range over a segment without those dates): nothing, as in Whoosh
            return np.zeros(0, dtype=np.int64), (np.zeros(0) if scoring else None)
        kids = [k for k in evaluated if k is not None]
        if len(kids) < len(evaluated):
            return None
        size = reader.doc_count_all()
        if len(kids) > 1 and sum(len(ids) for ids, _ in kids) * 8 > size:
            return _combine_dense(type(q) is And, kids, size, scoring)
        ids, scores = kids[0]
        for other_ids, other_scores in kids[1:]:
            if type(q) is And:
                ids, mine, theirs = np.intersect1d(ids, other_ids, assume_unique=True, return_indices=True)
                scores = scores[mine] + other_scores[theirs] if scoring else None
            elif scoring:
                ids, where = np.unique(np.concatenate([ids, other_ids]), return_inverse=True)
                scores = np.bincount(where, weights=np.concatenate([scores, other_scores]), minlength=len(ids))
            else:
                ids = np.union1d(ids, other_ids)
        return ids, scores
    return None


def _outside(ids: Any, excluded: Any, size: int) -> Any:
    """Which of these documents are not excluded (a mask over ids)."""
    import numpy as np

    out = np.zeros(size, dtype=bool)
    out[excluded] = True
    return ~out[ids]


def _combine_dense(both: bool, kids: list[tuple[Any, Any]], size: int, scoring: bool) -> tuple[Any, Any]:
    """The intersection (both) or union of long document lists, over arrays as long as the
    segment instead of by sorting (a common word's list is half a million long at 1M messages).
    Scores add up in the same order as the pairwise way, so they are the same to the last bit."""
    import numpy as np

    if both:
        count = np.zeros(size, dtype=np.uint8 if len(kids) < 255 else np.int64)
        for ids, _ in kids:
            count[ids] += 1
        found = np.flatnonzero(count == len(kids))
    else:
        seen = np.zeros(size, dtype=bool)
        for ids, _ in kids:
            seen[ids] = True
        found = np.flatnonzero(seen)
    if not scoring:
        return found, None
    total = np.zeros(size)
    for ids, scores in kids:
        total[ids] += scores  # (a list holds each document once)
    return found, total[found]


FACET_FIELDS = {"kind": "kind", "component": "components", "list": "list", "status": "status", "year": "year",
                "role": "role"}


class FacetTable:
    """One segment's facet values, read from the facet fields' posting lists: for a facet where a
    document has at most one value (kind, list, status, year) an array of value numbers per
    document, counted with one bincount; for the others (components, roles) a sparse 0/1 matrix
    (documents x values), counted with one sparse product. Either replaces a walk over every
    matching document in Python. Segments never change, so a table is read once per segment and
    process: an update adds a small segment and a small table, it does not make every worker
    read the whole index again (9 s at 1M messages)."""

    def __init__(self, reader: Any):
        import numpy as np
        from scipy import sparse

        self.size = reader.doc_count_all()
        self.names: dict[str, list[str]] = {}
        self.codes: dict[str, Any] = {}
        self.matrices: dict[str, Any] = {}
        for name, fieldname in FACET_FIELDS.items():
            field_type = reader.schema[fieldname]
            names: list[str] = []
            rows: list[Any] = []
            for btext in reader.lexicon(fieldname):
                value = str(field_type.from_bytes(btext))
                ids = _posting_ids(reader, fieldname, btext) if value else ()
                if len(ids):  # (an empty value, a pain point's list, is no facet)
                    rows.append(ids)
                    names.append(value)
            self.names[name] = names
            every = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
            values = np.concatenate([np.full(len(r), i) for i, r in enumerate(rows)]) if rows \
                else np.zeros(0, dtype=np.int64)
            if len(np.unique(every)) == len(every):  # one value at most: value numbers, len(names) for none
                codes = np.full(self.size, len(names), dtype=np.int32)
                codes[every] = values
                self.codes[name] = codes
            else:
                self.matrices[name] = sparse.csr_matrix(
                    (np.ones(len(every), dtype=np.int32), (every, values)), shape=(self.size, max(1, len(names))))

    def add_counts(self, matching: Any, out: dict[str, dict[str, int]]) -> None:
        """Add the facet counts of these documents (segment numbers, ascending) to `out`."""
        import numpy as np

        # Many matches: one pass over the whole matrix beats copying out their rows.
        chosen = None
        if self.matrices and len(matching) * 8 > self.size:
            chosen = np.zeros(self.size, dtype=np.int32)
            chosen[matching] = 1
        for name in FACETS:
            names = self.names[name]
            if not names:
                continue
            if name in self.codes:
                sums = np.bincount(self.codes[name][matching], minlength=len(names) + 1)
            else:
                table = self.matrices[name]
                sums = np.asarray(table.T @ chosen).ravel() if chosen is not None \
                    else np.asarray(table[matching].sum(axis=0)).ravel()
            for i in np.flatnonzero(sums[:len(names)]):
                out[name][names[i]] = out[name].get(names[i], 0) + int(sums[i])


def facet_counts(searcher: Any, docnums: Any) -> dict[str, dict[str, int]]:
    """Facet counts of these documents (a list or array of document numbers), largest first."""
    import numpy as np

    matching = np.sort(np.asarray(docnums, dtype=np.int64))
    out: dict[str, dict[str, int]] = {name: {} for name in FACETS}
    for sub, offset in searcher.leaf_searchers():
        reader = sub.reader()
        lo, hi = np.searchsorted(matching, [offset, offset + reader.doc_count_all()])
        if hi > lo:
            _segment_facets(reader).add_counts(matching[lo:hi] - offset, out)
    return {name: dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) for name, counts in out.items()}


def _segment_facets(reader: Any) -> FacetTable:
    return _segment_cached(reader, "facets", lambda: FacetTable(reader))  # type: ignore[no-any-return]
