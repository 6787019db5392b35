"""/api/v1/similar latency at scale: the fused index (BM25 words + title n-grams) over N generated
threads, beside a TF-IDF cosine search (scikit-learn, the usual first tool) on the same documents in the same run.

    python bench/similar_bench.py [--threads 100000] [--queries 200]

Prints JSON: build seconds and query p50/p95 in ms for both, for top-10 answers.
"""

from __future__ import annotations

import argparse
import email
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from portal.demo import generate_messages  # noqa: E402
from portal.similar import Doc, SimilarityIndex  # noqa: E402


def thread_docs(n: int, seed: int) -> list[Doc]:
    """N thread-like documents: generated subjects and bodies, every thread its own words."""
    docs = []
    rng = random.Random(seed)
    vocabulary = ["nova", "neutron", "cinder", "keystone", "placement", "cells", "quota", "router", "ceph",
                  "libvirt", "rabbitmq", "upgrade", "gate", "tempest", "ldap", "resize", "migration", "dhcp",
                  "volume", "scheduler", "timeout", "regression", "agent", "compute", "hypervisor", "token"]
    for i, raw in enumerate(generate_messages(n, seed)):
        msg = email.message_from_bytes(raw)
        extra = " ".join(rng.choice(vocabulary) for _ in range(8)) + f" host{rng.randint(1, 5000)}"
        docs.append(Doc("thread", i, str(msg["Subject"]), msg.get_payload()[:1500] + " " + extra))
    return docs


def timed(fn, queries: list[str]) -> list[float]:
    out = []
    for q in queries:
        start = time.perf_counter()
        fn(q)
        out.append(1000 * (time.perf_counter() - start))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    docs = thread_docs(args.threads, seed=3)
    rng = random.Random(9)
    queries = [f"{d.title} {d.text[:300]}" for d in rng.sample(docs, args.queries)]
    start = time.perf_counter()
    index = SimilarityIndex(docs)
    build = time.perf_counter() - start
    ours = timed(lambda q: index.query(q, 10), queries)

    from sklearn.feature_extraction.text import TfidfVectorizer

    start = time.perf_counter()
    vectorizer = TfidfVectorizer(stop_words="english")
    matrix = vectorizer.fit_transform([f"{d.title} {d.text}" for d in docs])
    ref_build = time.perf_counter() - start

    def cosine(q: str) -> np.ndarray:
        scores = (matrix @ vectorizer.transform([q]).T).toarray().ravel()
        return np.argpartition(-scores, 10)[:10]

    ref = timed(cosine, queries)

    def pct(values: list[float], p: float) -> float:
        return round(float(np.percentile(values, p)), 2)

    print(json.dumps({"threads": args.threads, "queries": args.queries,
                      "earshot": {"build_s": round(build, 2), "p50_ms": pct(ours, 50), "p95_ms": pct(ours, 95),
                               "mean_ms": round(statistics.mean(ours), 2)},
                      "tfidf_cosine": {"build_s": round(ref_build, 2), "p50_ms": pct(ref, 50), "p95_ms": pct(ref, 95)},
                      "target": "p95 < 100 ms at 100k threads"}))


if __name__ == "__main__":
    main()
