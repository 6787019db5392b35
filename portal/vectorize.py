"""Word counts and character n-gram TF-IDF for portal.similar, computed as scikit-learn's
CountVectorizer and TfidfVectorizer compute them (the same vocabulary in the same order, the same
counts, weights and norms; tests/portal/test_similar.py holds them to scikit-learn's on real list
mail), in NumPy and SciPy alone.

Why not scikit-learn itself: importing it loads scipy.stats and its distributions, 0.6 s before the
first pain point of an import is grouped and before a web worker answers its first similar
reports; the two vectorizers are a page of code. Learned classifiers (portal.learn) still use it.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable, Iterable
from functools import lru_cache

import numpy as np
from scipy import sparse

_WHITE_SPACES = re.compile(r"\s\s+")


class Counts:
    """Counts of the words a `token_pattern` finds in lower-cased text, less `stop_words`, over
    a vocabulary learned by fit_transform (in alphabetical order, without words in more than
    `max_df` of the documents)."""

    def __init__(self, *, token_pattern: str = "", stop_words: Iterable[str] = (), max_df: float = 1.0,
                 analyzer: Callable[[str], list[str]] | None = None):
        self.max_df = max_df
        self.vocabulary_: dict[str, int] = {}
        if analyzer is None:
            find = re.compile(token_pattern).findall
            stop = frozenset(stop_words)

            def analyzer(text: str) -> list[str]:
                return [w for w in find(text.lower()) if w not in stop]

        self.analyze = analyzer

    def _arrays(self, docs: Iterable[str], vocabulary: dict[str, int], grow: bool) -> tuple[array, array, array]:
        """Column indices, counts and row offsets of the documents' words, in the order each row
        first met them (columns numbered as `vocabulary` grows)."""
        # Typed arrays, not lists: a list holds an int object per entry (36 bytes, not 4), and the
        # title n-grams of a large archive's pain threads are millions of entries (a 200k-message
        # import: 3.4 million, 120 MB as lists).
        indices = array("i")
        counts = array("f")
        indptr = array("q", [0])
        for doc in docs:
            seen: dict[int, int] = {}
            for word in self.analyze(doc):
                column = vocabulary.get(word)
                if column is None:
                    if not grow:
                        continue
                    column = vocabulary[word] = len(vocabulary)
                seen[column] = seen.get(column, 0) + 1
            indices.extend(seen)
            counts.extend(seen.values())
            indptr.append(len(indices))
        return indices, counts, indptr

    def _count(self, docs: Iterable[str], vocabulary: dict[str, int], grow: bool) -> sparse.csr_matrix:
        indices, counts, indptr = self._arrays(docs, vocabulary, grow)
        return _csr(indices, counts, np.frombuffer(indptr, dtype=np.int64), len(vocabulary))

    def fit_transform(self, docs: Iterable[str]) -> sparse.csr_matrix:
        vocabulary: dict[str, int] = {}
        indices, counts, indptr = self._arrays(docs, vocabulary, grow=True)
        if not vocabulary:
            raise ValueError("empty vocabulary; perhaps the documents only contain stop words")
        rows = len(indptr) - 1
        df = document_frequencies(np.frombuffer(indices, dtype=np.int32), len(vocabulary))
        keep = df <= self.max_df * rows
        if not keep.any():
            raise ValueError("After pruning, no terms remain. Try a lower min_df or a higher max_df.")
        words = sorted(w for w, column in vocabulary.items() if keep[column])
        self.vocabulary_ = {w: i for i, w in enumerate(words)}
        column = np.full(len(vocabulary), -1, dtype=np.int32)
        column[np.asarray([vocabulary[w] for w in words], dtype=np.int64)] = np.arange(len(words), dtype=np.int32)
        offsets = _renumber(indices, counts, np.frombuffer(indptr, dtype=np.int64), column)
        return _csr(indices, counts, offsets, len(words))

    def fit(self, docs: Iterable[str]) -> Counts:
        self.fit_transform(docs)
        return self

    def fit_frequencies(self, docs: Iterable[str]) -> tuple[np.ndarray, int]:
        """Learn the vocabulary fit_transform learns without keeping any counts; returns each
        word's document frequency, in the vocabulary's order, and the number of documents. (Memory
        follows the vocabulary, not the documents: grouping's one-off runs weigh the titles of
        every pain thread this way and count them a block at a time.)"""
        df: dict[str, int] = {}
        rows = 0
        for doc in docs:
            rows += 1
            for word in set(self.analyze(doc)):
                df[word] = df.get(word, 0) + 1
        if not df:
            raise ValueError("empty vocabulary; perhaps the documents only contain stop words")
        words = sorted(w for w, n in df.items() if n <= self.max_df * rows)
        if not words:
            raise ValueError("After pruning, no terms remain. Try a lower min_df or a higher max_df.")
        self.vocabulary_ = {w: i for i, w in enumerate(words)}
        return np.asarray([df[w] for w in words], dtype=np.int64), rows

    def transform(self, docs: Iterable[str]) -> sparse.csr_matrix:
        return self._count(docs, self.vocabulary_, grow=False)


def document_frequencies(indices: np.ndarray, columns: int) -> np.ndarray:
    """How many rows hold each column, from a matrix's column indices (each at most once a row),
    a quarter million entries at a time (bincount takes a 64-bit copy of the indices it counts)."""
    df = np.zeros(columns, dtype=np.int64)
    step = 1 << 18
    for lo in range(0, len(indices), step):
        df += np.bincount(indices[lo:lo + step], minlength=columns)
    return df


def _renumber(indices: array, counts: array, indptr: np.ndarray, column: np.ndarray) -> np.ndarray:
    """Each entry's column renumbered through `column` (-1: dropped), the dropped entries removed,
    in the arrays themselves, a thousand rows at a time; returns the new row offsets.

    (Renumbering with whole-matrix operations held four more arrays as long as the matrix: a large
    archive's title n-grams are millions of entries.)"""
    where = np.frombuffer(indices, dtype=np.int32)
    values = np.frombuffer(counts, dtype=np.float32)
    rows = len(indptr) - 1
    out = np.zeros(rows + 1, dtype=np.int64)
    written = 0
    step = 1024
    for start in range(0, rows, step):
        end = min(start + step, rows)
        lo, hi = int(indptr[start]), int(indptr[end])
        renumbered = column[where[lo:hi]]
        kept = renumbered >= 0
        before = np.zeros(hi - lo + 1, dtype=np.int64)  # entries kept before each one
        np.cumsum(kept, out=before[1:])
        n = int(before[-1])
        values[written:written + n] = values[lo:hi][kept]  # (a copy first: never overwrites what it reads)
        where[written:written + n] = renumbered[kept]
        out[start + 1:end + 1] = written + before[indptr[start + 1:end + 1] - lo]
        written += n
    del where, values  # (the views pin the arrays' size)
    del indices[written:], counts[written:]  # (given back)
    return out


def _csr(indices: array, counts: array, indptr: np.ndarray, columns: int) -> sparse.csr_matrix:
    """A matrix over the arrays' memory (no copy), each row's entries in column order."""
    matrix = sparse.csr_matrix((np.frombuffer(counts, dtype=np.float32), np.frombuffer(indices, dtype=np.int32),
                                indptr.astype(np.int32)), shape=(len(indptr) - 1, columns), dtype=np.float32)
    matrix.sort_indices()
    return matrix


def char_wb_ngrams(text: str, low: int = 3, high: int = 5) -> list[str]:
    """Character n-grams inside words, each word padded with a space at either end (a word
    shorter than n gives itself once)."""
    grams: list[str] = []
    add = grams.append
    for w in _WHITE_SPACES.sub(" ", text.lower()).split():
        w = f" {w} "
        size = len(w)
        for n in range(low, high + 1):
            offset = 0
            add(w[offset:offset + n])
            while offset + n < size:
                offset += 1
                add(w[offset:offset + n])
            if offset == 0:
                break
    return grams


def l2_rows(matrix: sparse.csr_matrix, *, copy: bool = True) -> sparse.csr_matrix:
    """Each row divided by its Euclidean length (summed in double precision); empty rows stay.
    With copy=False the matrix's own values are divided (and it is returned)."""
    out = matrix.tocsr(copy=True) if copy or matrix.format != "csr" else matrix
    # A thousand rows at a time: the double-precision copies of a whole matrix of millions of
    # entries were most of building a similarity index's memory. (Each row is summed in the same
    # order either way: the same lengths.)
    step = 1024
    for start in range(0, out.shape[0], step):
        end = min(start + step, out.shape[0])
        lo, hi = int(out.indptr[start]), int(out.indptr[end])
        if lo == hi:
            continue
        rows = np.repeat(np.arange(end - start), np.diff(out.indptr[start:end + 1]))
        values = out.data[lo:hi]
        lengths = np.sqrt(np.bincount(rows, weights=values.astype(np.float64) ** 2, minlength=end - start))
        lengths[lengths == 0] = 1.0
        values[:] = (values / lengths[rows]).astype(out.dtype)
    return out


@lru_cache(maxsize=1)
def english_stop_words() -> frozenset[str]:
    """scikit-learn's English stop words, read from its file without importing scikit-learn (a
    scikit-learn that keeps them elsewhere is imported instead: slower, never wrong)."""
    import runpy
    from importlib.util import find_spec
    from pathlib import Path

    spec = find_spec("sklearn")  # (finding a package does not import it)
    if spec is not None and spec.origin is not None:
        try:
            words = runpy.run_path(str(Path(spec.origin).parent / "feature_extraction" / "_stop_words.py"))
            return frozenset(words["ENGLISH_STOP_WORDS"])
        except (OSError, KeyError):
            pass
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


class TitleGrams:
    """TF-IDF of character 3-5-grams: 1 + log of each count, times the smoothed inverse document
    frequency 1 + log((1 + n) / (1 + df)), rows scaled to length 1."""

    def __init__(self, *, max_df: float = 1.0):
        self.counts = Counts(max_df=max_df, analyzer=char_wb_ngrams)
        self.idf_ = np.zeros(0, dtype=np.float32)

    def _weigh(self, counts: sparse.csr_matrix) -> sparse.csr_matrix:
        """The counts weighed and normalised in place."""
        data = counts.data
        np.log(data, out=data)
        data += 1
        step = 1 << 18  # (a weight per entry at once was half the matrix again)
        for lo in range(0, len(data), step):
            data[lo:lo + step] *= self.idf_[counts.indices[lo:lo + step]]
        return l2_rows(counts, copy=False)

    def _fit_idf(self, df: np.ndarray, rows: int) -> None:
        smoothed = df.astype(np.float32) + 1.0
        idf = np.full_like(smoothed, fill_value=rows + 1, dtype=np.float32)
        idf /= smoothed
        np.log(idf, out=idf)
        idf += 1.0
        self.idf_ = idf

    def fit_transform(self, titles: Iterable[str]) -> sparse.csr_matrix:
        counts = self.counts.fit_transform(titles)
        self._fit_idf(document_frequencies(counts.indices, counts.shape[1]), counts.shape[0])
        return self._weigh(counts)

    def fit(self, titles: Iterable[str]) -> TitleGrams:
        """The vocabulary and weights fit_transform learns, without the matrix (transform the titles
        a block at a time after)."""
        self._fit_idf(*self.counts.fit_frequencies(titles))
        return self

    def transform(self, titles: Iterable[str]) -> sparse.csr_matrix:
        return self._weigh(self.counts.transform(titles))
