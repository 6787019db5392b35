"""Similar reports: BM25 over titles and text, fused with character n-grams of the titles.

Two views of each document, both sparse matrices (portal.vectorize: scikit-learn's vectorizers, without
importing scikit-learn), so 100k documents fit in a few hundred megabytes and a query is two sparse
matrix-vector products:

- BM25 over words of the title (counted three times) and the text: what the report is about;
- TF-IDF cosine over character 3-5-grams of the title: the same problem worded a little
  differently ("detach"/"detaching", "l3agent"/"l3-agent", typos), which whole words miss.

BM25 scores are divided by the best among the candidates (BM25 has no fixed scale), the cosine is already
between 0 and 1, and the two are added with equal weights: no tuned constant, and a fused score runs from 0 to
2. (Scaling the cosine by its best too lets a weak title match count fully when no title matches well.) Titles
lose reply prefixes and list tags before their n-grams are taken. On real Jira issues with known duplicates
(bench/dedupe_eval.py) the fusion finds the duplicate in the top 10 for 72% of new reports, BM25 alone for
59%.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from importers.text import normalize_subject

from .bulk import release_free_memory
from .vectorize import Counts, TitleGrams, document_frequencies, english_stop_words, l2_rows

WORDS = r"(?u)\b[a-zA-Z][\w\-.]*\w\b|\b\w{2,}\b"  # keeps nova-compute, l3-agent, oslo.messaging whole
# Words that carry no topic in bug reports and list mail, on top of English stop words.
_EXTRA_STOP = {"hi", "thanks", "thank", "regards", "please", "issue", "problem", "bug", "error", "get", "got",
               "using", "use", "used", "would", "could", "also", "like", "just", "one", "see", "new"}


@dataclass(slots=True)  # (one per pain thread in grouping's index: 34k at 200k messages)
class Doc:
    kind: str
    id: int | str
    title: str
    text: str


class SimilarityIndex:
    """BM25 (k1, b) with the title counted `title_weight` times, fused with title n-grams."""

    def __init__(self, docs: Iterable[Doc], *, k1: float = 1.2, b: float = 0.75, title_weight: int = 3,
                 count: int | None = None):
        """`docs` may be a generator: each text is read once, and only titles are kept (with
        `count`, the number of documents, a generator's texts are never all in memory at once)."""
        if count is None:
            docs = list(docs)
            count = len(docs)
        self.docs: list[Doc] = []
        # Words in over half the documents say nothing about one of them; in a handful of
        # documents that cut would drop every shared word, so it starts at 20.
        max_df = 0.5 if count >= 20 else 1.0
        self.vectorizer = _word_counts(max_df)

        def corpus() -> Iterator[str]:
            for d in docs:
                self.docs.append(Doc(d.kind, d.id, d.title, ""))  # the text is not read again
                yield f"{(d.title + ' ') * title_weight}{d.text}"

        try:
            tf = self.vectorizer.fit_transform(corpus()).tocsr()
        except ValueError:  # no documents, or only stop words in them
            self.vectorizer.fit(["placeholder"])
            tf = sparse.csr_matrix((len(self.docs), 1), dtype=np.float32)
        n = tf.shape[0]
        df = document_frequencies(tf.indices, tf.shape[1]) if n else np.zeros(0)
        self.df = df
        self.idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        self.k1, self.b, self.title_weight = k1, b, title_weight
        self.avg = _bm25_in_place(tf, k1, b)
        self.matrix = tf
        self._normed: tuple[np.ndarray, sparse.csc_matrix] | None = None
        self.titles = TitleGrams(max_df=max_df)
        titled = [normalize_subject(d.title) for d in self.docs]
        # Title n-grams by document (rows); by n-gram (columns) only once a draft's title is
        # compared with every document: grouping compares titles only with a few candidates,
        # and a second copy of millions of entries is most of a large import's grouping memory.
        self.title_rows: sparse.csr_matrix | None
        self._title_columns: sparse.csc_matrix | None = None
        try:
            self.title_rows = self.titles.fit_transform(titled) if any(titled) else None
        except ValueError:  # every n-gram in more than half the titles: nothing to tell them apart
            self.title_rows = None

    def extend(self, docs: Sequence[Doc], *, retire: Sequence[int] = ()) -> None:
        """Add documents without rebuilding: they are weighed with the vocabulary, idf and average
        length this index was built with (words it never saw do not count), which is what makes
        adding a few cheap. `retire` are positions of documents that must no longer match (an
        older version of one of the new documents)."""
        new = list(docs)
        if new:
            tf = self.vectorizer.transform([f"{(d.title + ' ') * self.title_weight}{d.text}" for d in new]).tocsr()
            lengths = np.asarray(tf.sum(axis=1)).ravel()
            rows = np.repeat(np.arange(tf.shape[0]), np.diff(tf.indptr))
            norm = self.k1 * (1 - self.b + self.b * lengths[rows] / self.avg)
            data = (tf.data * (self.k1 + 1) / (tf.data + norm)).astype(np.float32)
            block = sparse.csr_matrix((data, tf.indices, tf.indptr), shape=tf.shape)
            self.matrix = sparse.vstack([self.matrix, block], format="csr")
            if self.title_rows is not None:
                titles = self.titles.transform([normalize_subject(d.title) for d in new]).astype(np.float32)
                self.title_rows = sparse.vstack([self.title_rows, titles], format="csr")
            self.docs.extend(Doc(d.kind, d.id, d.title, "") for d in new)
        for i in retire:
            self.matrix.data[self.matrix.indptr[i]:self.matrix.indptr[i + 1]] = 0
            if self.title_rows is not None:
                self.title_rows.data[self.title_rows.indptr[i]:self.title_rows.indptr[i + 1]] = 0
        self._normed = None
        self._title_columns = None

    def bm25(self, text: str) -> np.ndarray:
        """BM25 score of every document for the words of the text (zeros when it has none)."""
        q = self.vectorizer.transform([text])
        if q.nnz == 0:
            return np.zeros(len(self.docs), dtype=np.float32)
        return np.asarray(self.matrix[:, q.indices] @ self.idf[q.indices]).ravel()

    def word_cosine(self, i: int) -> np.ndarray:
        """Cosine of document i's BM25-weighted words with every document's (1.0 with itself).

        Only the columns of i's words are read, so the cost follows their postings, not the
        size of the collection."""
        if self._normed is None:
            smooth = _smoothed_idf(len(self.docs), self.df)
            rows = _cosine_rows(self.matrix.copy(), smooth)
            # Kept by word only: document i's own row is weighed again from the BM25 matrix when
            # asked for (the same arithmetic as l2_rows), a copy of every row less to hold.
            self._normed = (smooth, rows.tocsc())
        smooth, cols = self._normed
        lo, hi = self.matrix.indptr[i], self.matrix.indptr[i + 1]
        if lo == hi:
            return np.zeros(len(self.docs), dtype=np.float32)
        words = self.matrix.indices[lo:hi]
        values = self.matrix.data[lo:hi] * smooth[words]
        # (Summed in order by bincount and divided in double precision, as l2_rows does: the same values.)
        length = np.sqrt(np.bincount(np.zeros(hi - lo, dtype=np.intp), weights=values.astype(np.float64) ** 2))[0]
        values = (values / (length or 1.0)).astype(np.float32)
        return np.asarray(cols[:, words] @ values).ravel()

    def title_cosine_of(self, i: int, among: np.ndarray) -> np.ndarray:
        """Cosine of document i's title n-grams with the titles of the documents `among` marks
        (a boolean per document; zero for the rest), without re-tokenising."""
        out = np.zeros(len(self.docs), dtype=np.float32)
        if self.title_rows is None:
            return out
        rows = self.title_rows
        lo, hi = rows.indptr[i], rows.indptr[i + 1]
        if lo == hi or not among.any():
            return out
        mine = np.zeros(rows.shape[1], dtype=np.float32)
        mine[rows.indices[lo:hi]] = rows.data[lo:hi]
        which = np.flatnonzero(among)
        out[which] = rows[which] @ mine
        return out

    def title_cosine(self, title: str) -> np.ndarray:
        """Cosine of the title's character n-grams with every document's title."""
        if self.title_rows is None or not title.strip():
            return np.zeros(len(self.docs), dtype=np.float32)
        q = self.titles.transform([normalize_subject(title)])
        if q.nnz == 0:
            return np.zeros(len(self.docs), dtype=np.float32)
        if self._title_columns is None:
            self._title_columns = self.title_rows.tocsc()
        return np.asarray(self._title_columns[:, q.indices] @ q.data).ravel()

    def query(self, text: str, k: int = 10, *, title: str | None = None, exclude: set[int | str] | None = None,
              allowed: np.ndarray | None = None) -> list[tuple[Doc, float]]:
        """The k documents most like a draft, best first, with their fused scores.

        `title` is the draft's title; without one, its first line stands in."""
        if not self.docs:
            return []
        if title is None:
            title = text.strip().split("\n", 1)[0] if text.strip() else ""
        words = self.bm25(text)
        grams = self.title_cosine(title)
        candidates = (words > 0) | (grams > 0)
        if allowed is not None:
            candidates &= allowed
        if exclude:
            for i, d in enumerate(self.docs):
                if d.id in exclude:
                    candidates[i] = False
        if not candidates.any():
            return []
        pool = allowed if allowed is not None else np.ones(len(self.docs), dtype=bool)
        scores = _scaled(words, pool) + grams
        scores = np.where(candidates, scores, -np.inf)
        k = min(k, int(candidates.sum()))
        top = np.argpartition(-scores, k - 1)[:k]
        ranked = sorted(((int(i), float(scores[i])) for i in top), key=lambda x: -x[1])
        return [(self.docs[i], s) for i, s in ranked]


def _word_counts(max_df: float) -> Counts:
    return Counts(token_pattern=WORDS, stop_words=english_stop_words() | _EXTRA_STOP, max_df=max_df)


def _bm25_in_place(tf: sparse.csr_matrix, k1: float, b: float) -> float:
    """Word counts turned into BM25 term weights, tf*(k1+1) / (tf + k1*(1-b+b*len/avg)), in the
    counts' own array; returns the average length. (A thousand documents at a time: whole, the
    64-bit row numbers, norms and weights were three more arrays as long as the matrix.)"""
    n = tf.shape[0]
    lengths = np.asarray(tf.sum(axis=1)).ravel()
    avg = lengths.mean() if n else 1.0
    data = tf.data
    step = 1024
    for start in range(0, n, step):
        end = min(start + step, n)
        lo, hi = tf.indptr[start], tf.indptr[end]
        rows = np.repeat(np.arange(start, end), np.diff(tf.indptr[start:end + 1]))
        norm = k1 * (1 - b + b * lengths[rows] / avg)
        counts = data[lo:hi]
        data[lo:hi] = (counts * (k1 + 1) / (counts + norm)).astype(np.float32)
    return float(avg) or 1.0


def _smoothed_idf(n: int, df: np.ndarray) -> np.ndarray:
    """Word cosines' idf, never below 1: with BM25's idf a word every document shares weighs
    nothing, so in a small collection two near-identical reports would look unrelated."""
    return (np.log((1 + n) / (1 + df)) + 1).astype(np.float32)


def _cosine_rows(matrix: sparse.csr_matrix, smooth: np.ndarray) -> sparse.csr_matrix:
    """BM25 weights times the smoothed idf, rows scaled to length 1, in the matrix's own arrays
    (a quarter million entries at a time): what word cosines are the dot products of. (Kept and
    one-off grouping both weigh through here: their cosines are the same to the bit.)"""
    step = 1 << 18
    for lo in range(0, matrix.nnz, step):
        matrix.data[lo:lo + step] *= smooth[matrix.indices[lo:lo + step]]
    return l2_rows(matrix, copy=False)


def _scaled(scores: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Scores divided by the best in the pool of candidates (all zeros when none scores)."""
    best = float(scores[pool].max()) if pool.any() else 0.0
    return scores / best if best > 0 else np.zeros_like(scores)


@dataclass
class _Cached:
    stamp: tuple[int, int]
    index: SimilarityIndex
    position: dict[int, int]  # thread id -> its newest document in the index
    built_with: int  # documents at the last full build
    # The last edit of a field report seen (reports are edited in place: no new message).
    edited: object = None


# One index per database URL per process (derived data): extended with the threads that got
# messages since, and built anew when threads went away or the extensions grew large.
_cache: dict[str, _Cached] = {}
EXTEND_AT_MOST = 500


def thread_index(session: object, url: str) -> SimilarityIndex:
    """The similarity index of every thread (subject, and the new text of its messages)."""
    from sqlalchemy import func, select
    from sqlmodel import Session

    from .models import Message, Thread

    assert isinstance(session, Session)
    stamp = (int(session.execute(select(func.count(Thread.id))).scalar_one()),
             int(session.execute(select(func.max(Message.id))).scalar() or 0))
    cached = _cache.get(url)
    edited, edited_threads = _edits(session, cached)
    if cached and cached.stamp == stamp and not edited_threads:
        return cached.index
    if cached and stamp[0] >= cached.stamp[0] and stamp[1] >= cached.stamp[1] \
            and len(cached.index.docs) - cached.built_with < max(EXTEND_AT_MOST, cached.built_with // 10):
        changed = set(session.execute(select(Message.thread_id).where(Message.id > cached.stamp[1]).distinct()
                                      .limit(EXTEND_AT_MOST + 1)).scalars()) | edited_threads
        if len(changed) <= EXTEND_AT_MOST:
            _add_threads(session, cached, sorted(changed))
            cached.stamp, cached.edited = stamp, edited
            # With several writers a message can commit after one with a higher id was seen; a
            # thread missed that way shows as a count the index does not reach: build it anew.
            if len(cached.position) >= stamp[0]:
                return cached.index
    every = list(session.execute(select(Thread.id).order_by(Thread.id)).scalars())
    index = SimilarityIndex(iter_thread_docs(session, every), count=len(every))
    _cache[url] = _Cached(stamp, index, {int(d.id): i for i, d in enumerate(index.docs)}, len(index.docs), edited)
    return index


def _add_threads(session: object, cached: _Cached, thread_ids: list[int]) -> None:
    """Add these threads' current documents to a cached index; their older ones stop matching."""
    docs = thread_docs(session, thread_ids)
    start = len(cached.index.docs)
    cached.index.extend(docs, retire=[cached.position[t] for t in thread_ids if t in cached.position])
    for offset, d in enumerate(docs):
        cached.position[int(d.id)] = start + offset


_subset_cache: dict[str, _Cached] = {}


def _edits(session: Any, cached: _Cached | None) -> tuple[object, set[int]]:
    """The newest field report edit, and the threads of reports edited since the cache saw one:
    their words changed in place, so the message ids do not tell."""
    from sqlalchemy import func, select

    from .models import FieldReport

    newest = session.execute(select(func.max(FieldReport.updated_at))).scalar()
    if cached is None or newest is None or newest == cached.edited:
        return newest, set()
    q = select(FieldReport.thread_id).where(FieldReport.thread_id.is_not(None))
    if cached.edited is not None:
        q = q.where(FieldReport.updated_at > cached.edited)
    return newest, set(session.execute(q.limit(EXTEND_AT_MOST + 1)).scalars())


def subset_index(session: object, url: str, thread_ids: list[int]) -> tuple[SimilarityIndex, dict[int, int]]:
    """An index holding (at least) these threads, and where each one's newest document is.

    Grouping asks for every pain thread each time a report comes in. The first call builds the
    index of exactly these threads; later calls in the same process add the threads it lacks and
    those that got messages since (weighed as `extend` says), so filing one report costs a few
    documents, not the whole collection. Documents of threads no longer asked for stay in the
    index: callers look only at the positions returned for their threads."""
    from sqlalchemy import func, select
    from sqlmodel import Session

    from .models import Message

    assert isinstance(session, Session)
    newest = int(session.execute(select(func.max(Message.id))).scalar() or 0)
    cached = _subset_cache.get(url)
    edited, edited_threads = _edits(session, cached)
    if cached is not None and newest >= cached.stamp[1] \
            and len(cached.index.docs) - cached.built_with < max(EXTEND_AT_MOST, cached.built_with // 10):
        changed: set[int] = set(session.execute(
            select(Message.thread_id).where(Message.id > cached.stamp[1]).distinct().limit(EXTEND_AT_MOST + 1)
        ).scalars()) if newest > cached.stamp[1] else set()
        changed |= edited_threads
        missing = [t for t in thread_ids if t not in cached.position or t in changed]
        if len(changed) <= EXTEND_AT_MOST and len(missing) <= EXTEND_AT_MOST:
            _forget_on_rollback(session, url)
            _add_threads(session, cached, missing)
            cached.stamp, cached.edited = (0, newest), edited
            return cached.index, cached.position
    _forget_on_rollback(session, url)
    index = SimilarityIndex(iter_thread_docs(session, thread_ids), count=len(thread_ids))
    release_free_memory()  # (what building it made and dropped: 60 MB for 34k pain threads)
    cached = _Cached((0, newest), index, {int(d.id): i for i, d in enumerate(index.docs)}, len(index.docs),
                     edited)
    _subset_cache[url] = cached
    return index, cached.position


class EarlierPairs:
    """Each document's word and title cosines with the documents before it, for those at least
    `floor` in words: what a one-off grouping asks of every new pain thread (the threads before it
    are the ones already placed). The same cosines as SimilarityIndex.word_cosine and
    title_cosine_of give, to the bit: the same weights, and every sum taken in the same order.

    Its memory hardly grows with the collection, where a SimilarityIndex of every pain thread does
    (at 200k messages the title n-grams alone were 3.4 million entries, 27 MB): only the normalised
    words by word are kept (for a document's cosines with all others at once); the documents' rows
    of words and of title n-grams are written to a temporary folder a block of documents at a
    time, and the titles' vocabulary is learned without their matrix. Documents are answered a
    batch at a time: each one's words against every document, then the batch's titles against
    each earlier block read back, once per batch."""

    def __init__(self, docs: Iterable[Doc], count: int, *, floor: float, k1: float = 1.2, b: float = 0.75,
                 title_weight: int = 3, block: int = 4096, batch: int = 128):
        """`count` is the number of documents given (a generator's texts are read once). An
        OSError means the temporary folder (under TMPDIR) could not be written; it is gone then."""
        import tempfile

        self.floor, self.block, self.batch = floor, block, batch
        self._folder = tempfile.TemporaryDirectory(prefix="earshot-pairs-")
        try:
            self._build(docs, count, k1, b, title_weight)
        except BaseException:
            self._folder.cleanup()
            raise

    def _build(self, docs: Iterable[Doc], count: int, k1: float, b: float, title_weight: int) -> None:
        import os
        from itertools import islice

        block = self.block
        max_df = 0.5 if count >= 20 else 1.0
        vectorizer = _word_counts(max_df)
        ids = array("q")
        # The titles wait in a file, a line each, for their two passes (the vocabulary, then the
        # n-grams a block at a time). A line break in one is a space there: n-grams split words
        # at either alike.
        titles = os.path.join(self._folder.name, "titles")
        with open(titles, "w", encoding="utf-8", newline="\n") as out:

            def corpus() -> Iterator[str]:
                for d in docs:
                    ids.append(int(d.id))
                    out.write(normalize_subject(d.title).replace("\n", " ") + "\n")
                    yield f"{(d.title + ' ') * title_weight}{d.text}"

            try:
                tf = vectorizer.fit_transform(corpus()).tocsr()
            except ValueError:  # no documents, or only stop words in them
                tf = sparse.csr_matrix((len(ids), 1), dtype=np.float32)

        def read_titles() -> Iterator[str]:
            with open(titles, encoding="utf-8", newline="\n") as lines:
                yield from (line[:-1] for line in lines)

        n = tf.shape[0]
        df = document_frequencies(tf.indices, tf.shape[1]) if n else np.zeros(0)
        _bm25_in_place(tf, k1, b)
        words = _cosine_rows(tf, _smoothed_idf(n, df))
        self.ids = np.frombuffer(ids, dtype=np.int64)
        self._order = np.argsort(self.ids, kind="stable")
        grams: TitleGrams | None = TitleGrams(max_df=max_df)
        try:
            if grams is not None and any(read_titles()):
                grams.fit(read_titles())
            else:
                grams = None
        except ValueError:  # every n-gram in more than half the titles: nothing to tell them apart
            grams = None
        self._titled = grams is not None
        lines = read_titles()
        for lo in range(0, n, block):
            rows = words[lo:lo + block]
            parts = {"w_data": rows.data, "w_indices": rows.indices, "w_indptr": rows.indptr,
                     "w_shape": np.asarray(rows.shape)}
            if grams is not None:
                t = grams.transform(list(islice(lines, block)))
                parts.update(t_data=t.data, t_indices=t.indices, t_indptr=t.indptr, t_shape=np.asarray(t.shape))
            np.savez(self._path(lo // block), **parts)
            del rows, parts
        lines.close()
        os.unlink(titles)
        columns = words.shape[1]
        del words, tf  # (the by-word matrix is assembled from the blocks: never both at once)
        self.columns = self._by_word(n, columns)
        self.expected = np.ones(n, dtype=bool)
        self._found: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _by_word(self, n: int, columns: int) -> sparse.csc_matrix:
        """The normalised words by word (what tocsc() gives: each word's documents in order),
        filled from the blocks of rows written to disk, one block at a time."""
        blocks = range((n + self.block - 1) // self.block)
        counts = np.zeros(columns + 1, dtype=np.int64)
        for number in blocks:
            with np.load(self._path(number)) as f:
                counts[1:] += np.bincount(f["w_indices"], minlength=columns)
        indptr = np.cumsum(counts)
        indices = np.empty(int(indptr[-1]), dtype=np.int32)
        data = np.empty(int(indptr[-1]), dtype=np.float32)
        free = indptr[:-1].copy()  # where each word's next document goes
        for number in blocks:
            rows = self._rows(number, "w")
            owner = np.repeat(np.arange(rows.shape[0], dtype=np.int32) + number * self.block, np.diff(rows.indptr))
            order = np.argsort(rows.indices, kind="stable")  # (by word; each word's rows stay in order)
            word = rows.indices[order]
            rank = np.arange(len(word)) - np.searchsorted(word, word)  # (place among this block's rows of the word)
            where = free[word] + rank
            indices[where] = owner[order]
            data[where] = rows.data[order]
            free += np.bincount(word, minlength=columns)
            del rows, owner, order, word, rank, where
        return sparse.csc_matrix((data, indices, indptr), shape=(n, columns))

    def __len__(self) -> int:
        return len(self.ids)

    def close(self) -> None:
        self._folder.cleanup()

    def _path(self, number: int) -> str:
        import os

        return os.path.join(self._folder.name, f"{number}.npz")

    def _rows(self, number: int, kind: str) -> sparse.csr_matrix:
        """Block `number`'s rows of words ("w") or title n-grams ("t")."""
        with np.load(self._path(number)) as f:
            return sparse.csr_matrix((f[f"{kind}_data"], f[f"{kind}_indices"], f[f"{kind}_indptr"]),
                                     shape=tuple(f[f"{kind}_shape"]))

    def expect(self, asked: np.ndarray) -> None:
        """The documents likely to be asked about (a boolean per document): a batch is made of those
        only. (Any other is still answered when asked, in a batch of its own making.)"""
        self.expected = asked

    def thread(self, j: int) -> int:
        return int(self.ids[j])

    def mark(self, i: int) -> None:
        """(Documents count as placed once earlier than the one asked about: nothing to do.)"""

    def position(self, thread_id: int) -> int | None:
        """Where this thread's document is (None when it has none)."""
        at = int(np.searchsorted(self.ids, thread_id, sorter=self._order))
        if at < len(self.ids) and self.ids[self._order[at]] == thread_id:
            return int(self._order[at])
        return None

    def near(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The documents before i at least `floor` in words with it, in order, with their word and
        title cosines."""
        if i not in self._found:
            for stale in [k for k in self._found if k < i]:  # (expected, but placed by a ticket after all)
                del self._found[stale]
            self._work_out(i)
        return self._found.pop(i)

    def _work_out(self, i: int) -> None:
        """Answer document i and the next expected ones in its block (up to a batch)."""
        number = i // self.block
        base = number * self.block
        end = min(base + self.block, len(self.ids))
        later = [k for k in np.flatnonzero(self.expected[i + 1:end]) + i + 1 if int(k) not in self._found]
        batch = np.asarray([i, *later[:self.batch - 1]], dtype=np.int64)
        # Words: each document's cosines with every document (SimilarityIndex.word_cosine's product).
        own = self._rows(number, "w")[batch - base]
        near: list[np.ndarray] = []
        weights: list[np.ndarray] = []
        for k, at in enumerate(batch):
            lo, hi = own.indptr[k], own.indptr[k + 1]
            if lo == hi:
                near.append(np.zeros(0, dtype=np.int32))
                weights.append(np.zeros(0, dtype=np.float32))
                continue
            cosines = np.asarray(self.columns[:, own.indices[lo:hi]] @ own.data[lo:hi]).ravel()[:at]
            js = np.flatnonzero(cosines >= self.floor).astype(np.int32)
            near.append(js)
            weights.append(cosines[js])
        del own
        titles = [np.zeros(len(js), dtype=np.float32) for js in near]
        if self._titled:
            mine = self._rows(number, "t")[batch - base]
            # Each earlier block read back once for the batch; a document's title against its
            # candidates in it is title_cosine_of's product (the same sums in the same order).
            for other in range(number + 1):
                lo = other * self.block
                grams = self._rows(other, "t")
                for k in range(len(batch)):
                    a, z = np.searchsorted(near[k], [lo, lo + self.block])
                    start, stop = mine.indptr[k], mine.indptr[k + 1]
                    if a == z or start == stop:
                        continue
                    dense = np.zeros(grams.shape[1], dtype=np.float32)
                    dense[mine.indices[start:stop]] = mine.data[start:stop]
                    titles[k][a:z] = grams[near[k][a:z] - lo] @ dense
                del grams
        for k, at in enumerate(batch):
            self._found[int(at)] = (near[k], weights[k], titles[k])


class KeptPairs:
    """EarlierPairs' answers from a SimilarityIndex kept between groupings (subset_index), where
    documents are in no useful order: a document counts once marked placed."""

    def __init__(self, index: SimilarityIndex, position: dict[int, int], *, floor: float):
        self.index, self.floor, self._position = index, floor, position
        self.placed = np.zeros(len(index.docs), dtype=bool)

    def __len__(self) -> int:
        return len(self.index.docs)

    def close(self) -> None:
        """(The index stays for the next grouping.)"""

    def position(self, thread_id: int) -> int | None:
        return self._position.get(thread_id)

    def thread(self, j: int) -> int:
        return int(self.index.docs[j].id)

    def mark(self, i: int) -> None:
        self.placed[i] = True

    def near(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The placed documents at least `floor` in words with document i, in order, with their word
        and title cosines (titles are the dearer half: worked out for those only)."""
        words = self.index.word_cosine(i)
        near = self.placed & (words >= self.floor)
        titles = self.index.title_cosine_of(i, near)
        which = np.flatnonzero(near)
        return which, words[which], titles[which]


def forget_subset_index(url: str) -> None:
    """Let this process's index of pain threads go (the next subset_index builds it anew)."""
    _subset_cache.pop(url, None)


def _forget_on_rollback(session: object, url: str) -> None:
    """The documents just read may belong to a transaction that rolls back (and SQLite gives its
    ids to the next rows): if it does, the cached index is dropped and built anew next time."""
    from sqlalchemy import event

    info = session.info  # type: ignore[attr-defined]
    if "subset_index_urls" not in info:
        info["subset_index_urls"] = set()

        def _rolled_back(sess: Any) -> None:
            for u in sess.info.get("subset_index_urls", ()):
                _subset_cache.pop(u, None)
            sess.info["subset_index_urls"] = set()

        def _committed(sess: Any) -> None:
            sess.info["subset_index_urls"] = set()

        event.listen(session, "after_rollback", _rolled_back)
        event.listen(session, "after_commit", _committed)
    info["subset_index_urls"].add(url)


def thread_docs(session: object, thread_ids: list[int] | None = None) -> list[Doc]:
    """Threads as documents: the subject, and the new text of their first messages (4,000
    characters at most). In the order of `thread_ids` when given (else by id); unknown ids are
    left out."""
    return list(iter_thread_docs(session, thread_ids))


def iter_thread_docs(session: object, thread_ids: list[int] | None = None) -> Iterator[Doc]:
    """thread_docs, read and given 500 threads at a time."""
    from sqlalchemy import select
    from sqlmodel import Session

    from .models import Message, Thread

    assert isinstance(session, Session)
    if thread_ids is None:
        thread_ids = list(session.execute(select(Thread.id).order_by(Thread.id)).scalars())
    for chunk in (thread_ids[i:i + 500] for i in range(0, len(thread_ids), 500)):
        texts: dict[int, list[str]] = {}
        for tid, text in session.execute(select(Message.thread_id, Message.new_text)
                                         .where(Message.thread_id.in_(chunk)).order_by(Message.thread_id, Message.id)):
            parts = texts.setdefault(tid, [])
            if sum(len(p) for p in parts) < 4000:
                parts.append(text[:2000])
        subjects = {tid: subject or "" for tid, subject in
                    session.execute(select(Thread.id, Thread.subject).where(Thread.id.in_(chunk)))}
        yield from (Doc("thread", tid, subjects[tid], "\n".join(texts.get(tid, []))) for tid in chunk
                    if tid in subjects)


def similar_items(session: object, url: str, text: str, *, title: str | None = None, k: int = 10,
                  kind: str | None = None) -> list[dict[str, object]]:
    """The threads and pain points most like a draft, best first: a pain point comes just before
    its best thread, with that thread's score; a field report's thread is given as the report
    (kind "report"). `kind` keeps pain points, or threads and reports."""
    from sqlalchemy import select
    from sqlmodel import Session

    from .models import FieldReport, PainPoint, PainPointMember, Thread

    assert isinstance(session, Session)
    index = thread_index(session, url)
    found = index.query(f"{title}\n{text}" if title else text, k * 4 if kind == "painpoint" else k, title=title)
    ids = [int(d.id) for d, _s in found]
    # An index extended in place may still hold a thread deleted since (a withdrawn report).
    alive = set(session.execute(select(Thread.id).where(Thread.id.in_(ids))).scalars()) if ids else set()
    found = [(d, score) for d, score in found if int(d.id) in alive]
    ids = [i for i in ids if i in alive]
    points: dict[int, int] = dict(session.execute(select(PainPointMember.thread_id, PainPointMember.pain_point_id)
                                  .where(PainPointMember.thread_id.in_(ids))).all()) if ids else {}
    titles: dict[int, str] = dict(session.execute(select(PainPoint.id, PainPoint.title).where(
        PainPoint.id.in_(set(points.values())), PainPoint.merged_into_id.is_(None))).all()) if points else {}
    # A field report's thread is answered as the report (its page is the report's).
    reports: dict[int, int] = dict(session.execute(select(FieldReport.thread_id, FieldReport.id).where(
        FieldReport.thread_id.in_(ids))).all()) if ids and kind != "painpoint" else {}
    items: list[dict[str, object]] = []
    seen: set[int] = set()
    for doc, score in found:
        pp = points.get(int(doc.id))
        if kind != "thread" and pp in titles and pp not in seen:
            seen.add(pp)
            items.append({"kind": "painpoint", "id": pp, "title": titles[pp], "score": round(score, 4)})
        if kind != "painpoint":
            report = reports.get(int(doc.id))
            items.append({"kind": "report" if report else doc.kind, "id": report or doc.id, "title": doc.title,
                          "score": round(score, 4)})
    return items[:k]


def duplicate_recall(folder: object, project: str, k: int = 10) -> dict[str, float]:
    """Similar-report retrieval on one project of a Jira duplicate set (`PROJECT-issues.jsonl.gz`,
    `PROJECT-duplicate_pairs.json`): for each pair the newer issue queries every issue filed
    before it, and a hit is the older one among the top k. Unsupervised: nothing is fitted on
    the pairs."""
    import gzip
    import json
    import time
    from pathlib import Path

    base = Path(str(folder))
    issues = [json.loads(x) for x in gzip.open(base / f"{project}-issues.jsonl.gz")]
    pairs = json.loads((base / f"{project}-duplicate_pairs.json").read_text())
    by_key = {i["key"]: i for i in issues}
    index = SimilarityIndex([Doc("ticket", i["key"], i.get("summary") or "", i.get("description") or "")
                             for i in issues])
    created = np.array([i.get("created") or "" for i in issues])
    hits = total = 0
    times = []
    for a, b in pairs:
        if a not in by_key or b not in by_key:
            continue
        new, old = sorted((by_key[a], by_key[b]), key=lambda i: i.get("created") or "", reverse=True)
        start = time.perf_counter()
        found = index.query(f"{new.get('summary') or ''}\n{new.get('description') or ''}", k,
                            exclude={new["key"]}, allowed=created < (new.get("created") or ""))
        times.append(time.perf_counter() - start)
        total += 1
        hits += any(d.id == old["key"] for d, _s in found)
    return {"pairs": total, "hits": hits, f"recall_at_{k}": round(hits / total, 4) if total else 0.0,
            "query_ms_p50": round(1000 * float(np.median(times)), 2) if times else 0.0}
