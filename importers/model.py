"""Plain data that every importer yields: no Flask, no database."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class ParsedMessage:
    """One message recovered from an archive, normalised and ready to store."""

    message_id: str
    subject: str
    author_name: str
    author_email: str
    date: datetime | None
    body_text: str
    new_text: str
    quoted_text: str
    raw: bytes
    source_file: str
    position: str
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    list_name: str | None = None
    message_id_generated: bool = False
    # True when the message was rebuilt from quoted history inside another message.
    recovered: bool = False
    # True when the source carried no threading headers (pasted pages, HTML without links).
    headerless: bool = False
    source_format: str = "mbox"
    # False when the date is a fallback (Received, mbox envelope, "about 1 month ago"): such
    # dates are shared by unrelated messages and must not identify one.
    date_trusted: bool = True
    # Tickets the source itself names outside the text (a Redmine page's own number).
    own_refs: list[str] = field(default_factory=list)
    # `raw` compressed with zlib (level 3) by a parsing process, which then sends raw empty: the
    # storing process has less to receive and nothing to compress.
    raw_compressed: bytes | None = None
    # What the importing side asked a parsing process to work out from the message beside
    # parsing it (iter_paths_parallel's `prepare`); None when parsed in the storing process.
    prepared: object = None


@dataclass
class ImportProblem:
    """A piece of input that could not be read; the import goes on without it."""

    file: str
    where: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "where": self.where, "reason": self.reason}
