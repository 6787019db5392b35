"""Find what a path holds (by content, not only by name) and read every message in it."""

from __future__ import annotations

import gzip
import io
import os
import re
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from . import mbox, pages, pipermail
from .message import parse_raw_message
from .model import ImportProblem, ParsedMessage

FORMATS = ("auto", "mbox", "maildir", "eml", "pipermail", "page")
_GZIP_MAGIC = b"\x1f\x8b"
_HEADER_LINE_RE = re.compile(rb"^[!-9;-~]{1,80}:[ \t]?")
_PIPERMAIL_NAME_RE = re.compile(
    r"^(?P<list>.+?)[_-](?P<year>\d{4})-(?P<month>[A-Za-z]+)(?:[_-]html)?(?:\.txt)?(?:\.gz)?$"
)
_MONTH_NAME_RE = re.compile(r"^\d{4}-[A-Za-z]+(?:\.txt)?(?:\.gz)?$")
_INDEX_PAGES = {"date.html", "thread.html", "subject.html", "author.html", "index.html"}

Progress = Callable[[int], None]
Item = ParsedMessage | ImportProblem


class _Counting(io.RawIOBase):
    """Wraps a binary file and reports the bytes read from disk, for progress bars."""

    def __init__(self, raw: BinaryIO, progress: Progress | None):
        super().__init__()
        self.raw = raw
        self.progress = progress

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def, override]
        data = self.raw.read(len(buf))
        buf[: len(data)] = data
        if self.progress and data:
            self.progress(len(data))
        return len(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.raw.close()
        super().close()


def open_archive(path: Path, progress: Progress | None = None) -> BinaryIO:
    """Open a file for reading, transparently un-gzipping it when its first bytes say gzip."""
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller through the wrapper
    magic = raw.read(2)
    raw.seek(0)
    counted = _Counting(raw, progress)
    if magic == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=counted, mode="rb")  # type: ignore[return-value, arg-type]
    return io.BufferedReader(counted, buffer_size=1 << 20)  # type: ignore[arg-type]


def read_head(path: Path, size: int = 8192) -> bytes:
    """The first bytes of a file, decompressed when gzipped; empty on a broken gzip."""
    try:
        with open_archive(path) as fh:
            return fh.read(size)
    except (OSError, EOFError, zlib.error):
        return b""


def detect_file(path: Path) -> str | None:
    """mbox, pipermail (monthly .txt), eml, html-page, html-index or page; None if unknown."""
    head = read_head(path)
    if not head.strip():
        return None
    if mbox.looks_like_mbox(head):
        first = head.split(b"\n", 1)[0]
        return "pipermail" if b" at " in first.split(b"  ")[0] else "mbox"
    lowered = head[:2048].lower()
    if b"<html" in lowered or b"<!doctype" in lowered:
        text = head.decode("utf-8", "replace")
        if pipermail.is_message_page(text) or path.name.lower() not in _INDEX_PAGES and _full_is_page(path):
            return "html-page"
        return "html-index"
    if _looks_like_headers(head):
        return "eml"
    if pages.detect_page(head.decode("utf-8", "replace")):
        return "page"
    return None


def _looks_like_headers(head: bytes) -> bool:
    """True when the text opens with an RFC 5322 header block (leading blank lines allowed)."""
    block = head.replace(b"\r\n", b"\n").lstrip(b" \t\n").split(b"\n\n", 1)[0]
    lines = [x for x in block.split(b"\n") if x]
    if not lines or not _HEADER_LINE_RE.match(lines[0]):
        return False
    good = sum(bool(_HEADER_LINE_RE.match(x) or x[:1] in b" \t") for x in lines)
    return good >= 0.8 * len(lines) and good >= 2


def _full_is_page(path: Path) -> bool:
    with open_archive(path) as fh:
        return pipermail.is_message_page(fh.read().decode("utf-8", "replace"))


def default_list_name(path: Path) -> str | None:
    """The list an archive file belongs to when its messages do not say."""
    m = _PIPERMAIL_NAME_RE.match(path.name)
    if m:
        return m.group("list").lower()
    if _MONTH_NAME_RE.match(path.name) or path.is_dir():
        parent = path if path.is_dir() else path.parent
        return parent.name.lower() or None
    return None


def total_bytes(paths: list[Path]) -> int:
    """Bytes on disk under the paths, for the progress bar's total."""
    total = 0
    for p in paths:
        if p.is_dir():
            for root, _dirs, files in os.walk(p):
                total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
        elif p.exists():
            total += p.stat().st_size
    return total


def iter_path(path: Path, fmt: str = "auto", *, list_name: str | None = None, now: datetime | None = None,
              progress: Progress | None = None) -> Iterator[Item]:
    """Every message (or problem) under a file or folder."""
    if not path.exists():
        yield ImportProblem(str(path), "path", "no such file or folder")
        return
    if path.is_dir():
        yield from _iter_dir(path, fmt, list_name, now, progress)
        return
    kind = detect_file(path) if fmt in ("auto", "mbox", "eml", "page", "pipermail") else None
    if fmt == "maildir":
        kind = "eml"
    elif fmt == "mbox" and kind not in ("mbox", "pipermail"):
        kind = kind if kind == "eml" else "mbox"
    elif fmt == "page":
        kind = kind if kind in ("html-page", "page") else "page"
    elif fmt == "eml":
        kind = "eml"
    yield from _iter_file(path, kind, list_name, now, progress)


def _iter_file(path: Path, kind: str | None, list_name: str | None, now: datetime | None,
               progress: Progress | None) -> Iterator[Item]:
    name = str(path)
    try:
        if kind in ("mbox", "pipermail"):
            default = list_name or default_list_name(path)
            with open_archive(path, progress) as fh:
                count = 0
                for raw in mbox.iter_mbox(fh):
                    count += 1
                    where = f"line {raw.line} (message {count})"
                    if raw.too_large:
                        yield ImportProblem(name, where, f"message larger than {mbox.MAX_MESSAGE_BYTES} bytes, skipped")
                        continue
                    yield _parse_one(raw.data, name, where, kind, raw.envelope, default, list_name)
        elif kind == "eml":
            data = _read_all(path, progress)
            if mbox.looks_like_mbox(data[:4096]):
                yield from _iter_file(path, "mbox", list_name, now, None)
                return
            yield _parse_one(data, name, "message 1", "eml", None, list_name, list_name)
        elif kind == "html-page":
            data = _read_all(path, progress)
            msg = pipermail.parse_message_page(data.decode("utf-8", "replace"), source_file=name, raw=data)
            msg.list_name = list_name or msg.list_name
            yield msg
        elif kind == "html-index":
            if progress:
                progress(path.stat().st_size)
        elif kind == "page":
            data = _read_all(path, progress)
            yield from pages.parse_page(data.decode("utf-8", "replace"), source_file=name, raw=data,
                                        list_name=list_name, now=now)
        else:
            if progress:
                progress(path.stat().st_size)
            yield ImportProblem(name, "file", "not a mail archive, message or pasted page Earshot knows")
    except (OSError, EOFError, zlib.error) as exc:
        yield ImportProblem(name, "file", f"cannot read: {exc}")
    except ValueError as exc:
        yield ImportProblem(name, "file", str(exc))


def _parse_one(data: bytes, name: str, where: str, kind: str, envelope: str | None, default: str | None,
               forced: str | None) -> Item:
    try:
        msg = parse_raw_message(data, source_file=name, position=where, source_format=kind,
                                envelope_date=envelope, obfuscated=kind == "pipermail", list_name=forced)
    except Exception as exc:  # noqa: BLE001 - any failure of one message is that message's problem
        return ImportProblem(name, where, f"unreadable message: {exc.__class__.__name__}: {exc}")
    if not msg.list_name:
        msg.list_name = default
    return msg


def _read_all(path: Path, progress: Progress | None) -> bytes:
    with open_archive(path, progress) as fh:
        return fh.read()


def _iter_dir(path: Path, fmt: str, list_name: str | None, now: datetime | None,
              progress: Progress | None) -> Iterator[Item]:
    try:
        children = sorted(path.iterdir())
    except OSError as exc:
        yield ImportProblem(str(path), "folder", f"cannot list: {exc}")
        return
    subdirs = {p.name for p in children if p.is_dir()}
    if fmt == "maildir" or {"cur", "new"} & subdirs and fmt == "auto":
        default = list_name or path.name.lower()
        for sub in ("new", "cur") if {"cur", "new"} & subdirs else ("",):
            folder = path / sub if sub else path
            if not folder.is_dir():
                continue
            for f in sorted(folder.iterdir()):
                if not f.is_file() or f.name.startswith("."):
                    continue
                try:
                    data = _read_all(f, progress)
                except (OSError, EOFError, zlib.error) as exc:
                    yield ImportProblem(str(f), "message 1", f"cannot read: {exc}")
                    continue
                if not data.strip():
                    yield ImportProblem(str(f), "message 1", "empty file")
                    continue
                yield _parse_one(data, str(f), "message 1", "maildir", None, default, list_name)
        return
    if fmt in ("auto", "pipermail") and pipermail.is_month_folder(path):
        yield from _iter_pipermail_folder(path, list_name, progress)
        return
    for child in children:
        if child.name.startswith("."):
            continue
        if child.is_symlink() and child.is_dir():
            continue  # links inside a tree can loop; name the target itself to import it
        yield from iter_path(child, fmt, list_name=list_name, now=now, progress=progress)


def _iter_pipermail_folder(path: Path, list_name: str | None, progress: Progress | None) -> Iterator[Item]:
    """Message pages of one month, with thread.html nesting turned into In-Reply-To links."""
    parents = pipermail.thread_parents(path)
    ids: dict[str, str] = {}
    parsed: list[ParsedMessage] = []
    for page in pipermail.message_pages(path):
        try:
            data = _read_all(page, progress)
            msg = pipermail.parse_message_page(data.decode("utf-8", "replace"), source_file=str(page), raw=data)
        except (OSError, ValueError) as exc:
            yield ImportProblem(str(page), "page", str(exc))
            continue
        msg.list_name = list_name or msg.list_name or default_list_name(path)
        ids[page.name] = msg.message_id
        parsed.append(msg)
    for msg in parsed:
        parent = parents.get(Path(msg.source_file).name)
        if parent and parent in ids and ids[parent] not in msg.references:
            msg.references.append(ids[parent])
            msg.in_reply_to = msg.in_reply_to or ids[parent]
            msg.headerless = False
        yield msg
    for f in path.iterdir():
        if f.name in _INDEX_PAGES and progress:
            progress(f.stat().st_size)
