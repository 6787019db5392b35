"""Read archives in a separate process while the caller stores what was read.

Parsing is about half of an import; a second process does it (and compresses each message's
original bytes for storage) while the first writes to the database. The child is started with
"spawn" (it holds no database connections of the parent) and sends items in chunks through a
bounded queue, so memory stays flat.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import traceback
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from .model import ImportProblem, ParsedMessage
from .sources import iter_path

_CHUNK = 200
_AHEAD = 2  # chunks waiting for the storing process from which this one also runs `prepare`


def _waiting(out: mp.Queue) -> int:
    try:
        return out.qsize()
    except NotImplementedError:  # (macOS has no sem_getvalue): always ahead
        return _AHEAD


def _produce(out: mp.Queue, paths: list[str], fmt: str, list_name: str | None, now: datetime | None,
             prepare: Callable[[ParsedMessage], object] | None = None) -> None:
    chunk: list[ParsedMessage | ImportProblem] = []
    read = [0]

    def progress(n: int) -> None:
        read[0] += n

    # `prepare` runs only while this process is ahead (chunks wait in the queue): otherwise the
    # storing process is the one waiting, and does that work itself.
    ahead = False
    try:
        for path in paths:
            for item in iter_path(Path(path), fmt, list_name=list_name, now=now, progress=progress):
                if isinstance(item, ParsedMessage):
                    if prepare is not None and ahead:  # (before raw is compressed: it may read it)
                        try:
                            item.prepared = prepare(item)
                        except Exception:  # noqa: BLE001 - the storing process judges it, and reports
                            item.prepared = None
                    item.raw_compressed, item.raw = zlib.compress(item.raw, 3), b""
                chunk.append(item)
                if len(chunk) >= _CHUNK:
                    out.put(("items", chunk, read[0]))
                    chunk, read[0] = [], 0
                    ahead = _waiting(out) >= _AHEAD
        out.put(("items", chunk, read[0]))
        out.put(("done", None, 0))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        out.put(("error", traceback.format_exc(), 0))


def iter_paths_parallel(paths: list[Path], fmt: str = "auto", *, list_name: str | None = None,
                        now: datetime | None = None, progress: Callable[[int], None] | None = None,
                        prepare: Callable[[ParsedMessage], object] | None = None,
                        ) -> Iterator[ParsedMessage | ImportProblem]:
    """The same items as iter_path over every path, parsed in a child process. `prepare` (a
    picklable callable) is called there on messages, while that process is ahead of this one,
    and what it returns is sent as the message's `prepared` (None for the others): work the
    storing process would otherwise do, done beside parsing when there is room for it."""
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue(maxsize=16)
    proc = ctx.Process(target=_produce, args=(out, [str(p) for p in paths], fmt, list_name, now, prepare),
                       daemon=True)
    proc.start()
    try:
        while True:
            try:
                kind, payload, nbytes = out.get(timeout=5)
            except queue_mod.Empty:
                if not proc.is_alive():
                    raise RuntimeError(f"the parsing process ended unexpectedly (exit code {proc.exitcode})") from None
                continue
            if kind == "items":
                if progress and nbytes:
                    progress(nbytes)
                yield from payload
            elif kind == "done":
                return
            else:
                raise RuntimeError(f"the parsing process failed:\n{payload}")
    finally:
        if proc.is_alive():
            proc.terminate()
        proc.join(10)
        out.close()
        out.join_thread()
