"""Bulk work: an import, an index rebuild, an index writer process.

Such work makes and keeps hundreds of thousands of objects (parsed messages, ORM rows, a posting
pool's terms, word caches). Python's cycle collector runs after every 700 new container objects
and, every so often, walks every object alive: measured on a 20k-message import, a sixth of the
import's time (`bench/import_phases.py`). Bulk work collects less often; whatever cycles it makes
are still found, a little later.

Not much later, though: with the youngest generation collected every 50,000 new objects, the
storing process of a 200k-message import grew steadily to 141 MB (every 10,000: 111 MB, in the
same 45 s; every 2,000: 108 MB, 47 s). Its garbage is small (SQLAlchemy's per-statement
aliases), but kept that long among the batches' rows it pins the allocator's pages.
"""

from __future__ import annotations

import atexit
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

THRESHOLDS = (10_000, 20, 100)


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect cycles less often inside the block (the process's own settings come back after)."""
    before = gc.get_threshold()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)


_skipping_last_collection = False


def skip_last_collection() -> None:
    """At exit, leave the heap to the operating system: Python's last collection walks every
    object a bulk command still holds (0.4 s after a 20k-message import), and nothing it could
    find needs finalising (rows are committed, files closed). For commands, once per process."""
    global _skipping_last_collection
    if not _skipping_last_collection:
        _skipping_last_collection = True
        atexit.register(gc.freeze)


def release_free_memory() -> bool:
    """Hand the heap's free pages back to the operating system (glibc's malloc_trim); False
    where the C library has no such call.

    Building a large in-memory structure (grouping's similarity index of every pain thread) makes
    and frees a great many temporary objects; glibc keeps the pages they were in, so the process
    stays that much larger while it goes on to other work. Regrouping a 200k-message archive:
    214 -> 152 MB right after the index is built, and a peak of 278 -> 247 MB, in a few ms."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    """glibc's malloc_trim among the symbols the process has loaded (no library search: that
    runs ldconfig), or None (musl, macOS)."""
    import ctypes

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim
