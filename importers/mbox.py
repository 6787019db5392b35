"""Streaming mbox reader: mboxo, mboxrd, Pony Mail / mod_mbox downloads, HyperKitty exports and
Mailman 2 monthly `.txt` archives, plain or gzipped. Memory holds one message at a time."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

_FROM_RE = re.compile(rb"^From (\S+(?: at \S+)?)\s+(.*\d{1,2}:\d\d.*)$")
# Some exports (Pony Mail's) write a bare "From " envelope with neither sender nor date.
_BARE_FROM_RE = re.compile(rb"^From(?: \S+)?\s*$")
_HEADER_RE = re.compile(rb"^[!-9;-~]{1,80}:")
_ESCAPED_FROM_RE = re.compile(rb"^>(>*From )")
# A message over this size is reported and skipped so a broken archive cannot exhaust memory.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass
class RawMessage:
    data: bytes
    line: int
    envelope: str
    too_large: bool = False


def is_separator(line: bytes, next_line: bytes | None) -> bool:
    """A "From " line starts a message only when the next line is a header (mboxo bodies
    hold unescaped "From " lines) and it carries a time of day."""
    if not line.startswith(b"From"):
        return False
    stripped = line.rstrip(b"\r\n")
    if not _FROM_RE.match(stripped) and not _BARE_FROM_RE.match(stripped):
        return False
    return next_line is not None and bool(_HEADER_RE.match(next_line))


def iter_mbox(stream: BinaryIO, progress: Callable[[int], None] | None = None) -> Iterator[RawMessage]:
    """Yield each message's bytes (envelope line removed, mboxrd escapes undone)."""
    chunks: list[bytes] = []
    size = 0
    start_line = 0
    envelope = ""
    too_large = False
    pending: bytes | None = None  # a "From " line waiting for the next line to decide
    pending_no = 0
    pending_after_blank = True
    line_no = 0
    seen_any = False

    def flush() -> RawMessage | None:
        if not chunks and not seen_any:
            return None
        data = b"".join(chunks)
        if data.endswith(b"\n\n"):
            data = data[:-1]
        return RawMessage(data, start_line, envelope, too_large)

    for line in stream:
        line_no += 1
        if pending is not None:
            if _HEADER_RE.match(line) and (_FROM_RE.match(pending.rstrip(b"\r\n")) or pending_after_blank):
                done = flush()
                if done is not None and (done.data.strip() or done.too_large):
                    yield done
                    if progress:
                        progress(0)
                chunks, size, too_large, seen_any = [], 0, False, True
                start_line = pending_no
                m = _FROM_RE.match(pending.rstrip(b"\r\n"))
                envelope = m.group(2).decode("latin-1") if m else ""
            else:
                chunks.append(pending)
            pending = None
        if line.startswith(b"From") and (line.startswith(b"From ") or line.rstrip() == b"From"):
            pending, pending_no = line, line_no
            pending_after_blank = not chunks or chunks[-1].strip() == b""
            continue
        if line.startswith(b">") and _ESCAPED_FROM_RE.match(line):
            line = line[1:]
        if not seen_any and not chunks:
            seen_any = True
            start_line = line_no
        size += len(line)
        if size > MAX_MESSAGE_BYTES:
            too_large = True
            chunks = []
        else:
            chunks.append(line)
    if pending is not None:
        chunks.append(pending)
    done = flush()
    if done is not None and (done.data.strip() or done.too_large):
        yield done


def looks_like_mbox(head: bytes) -> bool:
    """True when the first line is an mbox envelope ("From sender date")."""
    lines = head.split(b"\n", 2)
    return len(lines) >= 2 and is_separator(lines[0] + b"\n", lines[1] + b"\n")
