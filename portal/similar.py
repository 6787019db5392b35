"""Similar reports: BM25 over titles and text, as one sparse matrix product per query.

Built with scikit-learn's tokenizer and a SciPy CSR matrix, so 100k documents fit in a few
hundred megabytes and a query is a sparse matrix-vector product.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer

# Words that carry no topic in bug reports and list mail, on top of English stop words.
_EXTRA_STOP = {"hi", "thanks", "thank", "regards", "please", "issue", "problem", "bug", "error", "get", "got",
               "using", "use", "used", "would", "could", "also", "like", "just", "one", "see", "new"}


@dataclass
class Doc:
    kind: str
    id: int | str
    title: str
    text: str


class SimilarityIndex:
    """BM25 (k1, b) with the title counted `title_weight` times."""

    def __init__(self, docs: Sequence[Doc], *, k1: float = 1.2, b: float = 0.75, title_weight: int = 3):
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        self.docs = list(docs)
        words = r"(?u)\b[a-zA-Z][\w\-.]*\w\b|\b\w{2,}\b"  # keeps nova-compute, l3-agent, oslo.messaging whole
        self.vectorizer = CountVectorizer(lowercase=True, token_pattern=words,
                                          stop_words=list(ENGLISH_STOP_WORDS | _EXTRA_STOP), max_df=0.5,
                                          dtype=np.float32)
        corpus = [f"{(d.title + ' ') * title_weight}{d.text}" for d in self.docs]
        tf = self.vectorizer.fit_transform(corpus).tocsr() if corpus else sparse.csr_matrix((0, 0))
        n = tf.shape[0]
        df = np.bincount(tf.indices, minlength=tf.shape[1]) if n else np.zeros(0)
        self.idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        lengths = np.asarray(tf.sum(axis=1)).ravel()
        avg = lengths.mean() if n else 1.0
        # BM25 term weights per document, computed once: tf*(k1+1) / (tf + k1*(1-b+b*len/avg)).
        rows = np.repeat(np.arange(n), np.diff(tf.indptr))
        norm = k1 * (1 - b + b * lengths[rows] / avg)
        data = tf.data * (k1 + 1) / (tf.data + norm)
        self.matrix = sparse.csr_matrix((data.astype(np.float32), tf.indices, tf.indptr), shape=tf.shape)
        self.matrix_t = self.matrix.T.tocsr()

    def query(self, text: str, k: int = 10, *, exclude: set[int | str] | None = None,
              allowed: np.ndarray | None = None) -> list[tuple[Doc, float]]:
        """The k documents most like the text, best first, with their BM25 scores."""
        if not self.docs:
            return []
        q = self.vectorizer.transform([text])
        if q.nnz == 0:
            return []
        terms = q.indices
        weights = self.idf[terms]
        scores = np.asarray(self.matrix[:, terms] @ weights).ravel()
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0)
        if exclude:
            for i, d in enumerate(self.docs):
                if d.id in exclude:
                    scores[i] = 0.0
        top = np.argpartition(-scores, min(k, len(scores) - 1))[:k]
        ranked = sorted(((int(i), float(scores[i])) for i in top if scores[i] > 0), key=lambda x: -x[1])
        return [(self.docs[i], s) for i, s in ranked]


# One index per database URL per process, rebuilt when threads change (derived data).
_cache: dict[str, tuple[tuple[int, int], SimilarityIndex]] = {}


def thread_index(session: object, url: str) -> SimilarityIndex:
    """The similarity index of every thread (subject, and the new text of its messages)."""
    from sqlalchemy import func, select
    from sqlmodel import Session

    from .models import Message, Thread

    assert isinstance(session, Session)
    stamp = (int(session.execute(select(func.count(Thread.id))).scalar_one()),
             int(session.execute(select(func.max(Message.id))).scalar() or 0))
    cached = _cache.get(url)
    if cached and cached[0] == stamp:
        return cached[1]
    texts: dict[int, list[str]] = {}
    for tid, text in session.execute(select(Message.thread_id, Message.new_text).order_by(Message.thread_id,
                                                                                         Message.id)):
        parts = texts.setdefault(tid, [])
        if sum(len(p) for p in parts) < 4000:
            parts.append(text[:2000])
    docs = [Doc("thread", tid, subject or "", "\n".join(texts.get(tid, [])))
            for tid, subject in session.execute(select(Thread.id, Thread.subject))]
    index = SimilarityIndex(docs)
    _cache[url] = (stamp, index)
    return index
