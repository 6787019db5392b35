"""Mailman 2 pipermail HTML month folders: one page per message plus thread.html/date.html."""

from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import unquote

from .model import ParsedMessage
from .quotes import split_new_text
from .text import (
    clean_text,
    deobfuscate,
    generated_id,
    html_to_text,
    list_name_from_address,
    list_name_from_tag,
    message_ids,
    parse_author,
    parse_date,
)

_TITLE_RE = re.compile(r"<TITLE>\s*(.*?)\s*</TITLE>", re.I | re.S)
_H1_RE = re.compile(r"<H1>\s*(.*?)\s*</H1>", re.I | re.S)
_AUTHOR_RE = re.compile(r"</H1>\s*<B>(.*?)</B>", re.I | re.S)
_MAILTO_RE = re.compile(r'<A HREF="mailto:([^"?]*)(\?[^"]*)?"[^>]*>\s*(.*?)\s*</A>', re.I | re.S)
_DATE_RE = re.compile(r"<I>\s*(.*?)\s*</I>", re.I | re.S)
_BODY_RE = re.compile(r"<!--beginarticle-->(.*?)<!--endarticle-->", re.I | re.S)
_IRT_RE = re.compile(r"In-Reply-To=([^\"&]+)", re.I)
_PAGE_RE = re.compile(r"^\d{6}\.html?$")
_THREAD_LINK_RE = re.compile(r'<LI>\s*<A HREF="(\d{6}\.html?)"', re.I)


def is_message_page(text: str) -> bool:
    """A pipermail message page carries the beginarticle marker."""
    return "<!--beginarticle-->" in text


def is_month_folder(path: Path) -> bool:
    """A folder holding NNNNNN.html message pages (and usually thread.html, date.html)."""
    return path.is_dir() and any(_PAGE_RE.match(p.name) for p in path.iterdir())


def message_pages(folder: Path) -> list[Path]:
    """The message pages in archive order."""
    return sorted(p for p in folder.iterdir() if _PAGE_RE.match(p.name))


def thread_parents(folder: Path) -> dict[str, str]:
    """page name -> parent page name, from the nesting of thread.html."""
    index = folder / "thread.html"
    if not index.exists():
        return {}
    parents: dict[str, str] = {}
    stack: list[str | None] = [None]
    last: str | None = None
    tokens = re.finditer(r"(<UL>|</UL>|<LI>\s*<A HREF=\"(\d{6}\.html?)\")", index.read_text("utf-8", "replace"), re.I)
    for tok in tokens:
        word = tok.group(1).upper()
        if word == "<UL>":
            stack.append(last)
        elif word == "</UL>":
            if len(stack) > 1:
                stack.pop()
        else:
            page = tok.group(2)
            parent = stack[-1]
            if parent:
                parents[page] = parent
            last = page
    return parents


def page_identity(author_email: str, author_name: str, date_iso: str, subject: str) -> str:
    """The Message-ID given to a page that shows none; stable across re-imports."""
    return generated_id("pipermail-page", author_email or author_name, date_iso, subject)


def parse_message_page(text: str, *, source_file: str, raw: bytes) -> ParsedMessage:
    """One pipermail message page; raises ValueError when it is not one."""
    body_match = _BODY_RE.search(text)
    if not body_match:
        raise ValueError("not a pipermail message page (no beginarticle marker)")
    title = _H1_RE.search(text) or _TITLE_RE.search(text)
    subject = clean_text(html.unescape(re.sub(r"\s+", " ", title.group(1)))).strip() if title else ""
    author_m = _AUTHOR_RE.search(text)
    name = html.unescape(author_m.group(1)).strip() if author_m else ""
    mailto = _MAILTO_RE.search(text)
    shown = deobfuscate(html.unescape(re.sub(r"<[^>]+>", "", mailto.group(3)))).strip() if mailto else ""
    author_name, author_email = parse_author(f"{name} <{shown}>" if "@" in shown else name)
    list_address = unquote(mailto.group(1)) if mailto else ""
    after_author = text[author_m.end():] if author_m else text
    date_m = _DATE_RE.search(after_author)
    date = parse_date(html.unescape(date_m.group(1))) if date_m else None
    in_reply_to = None
    if mailto and mailto.group(2):
        irt = _IRT_RE.search(mailto.group(2))
        if irt:
            ids = message_ids(unquote(irt.group(1)))
            in_reply_to = ids[-1] if ids else None
    body = deobfuscate(html_to_text(body_match.group(1)))
    split = split_new_text(body)
    list_name = list_name_from_address(list_address) if "@" in list_address else list_name_from_tag(subject)
    message_id = page_identity(author_email, author_name, date.isoformat() if date else "", subject)
    return ParsedMessage(
        message_id=message_id,
        subject=subject,
        author_name=author_name,
        author_email=author_email,
        date=date,
        body_text=body,
        new_text=split.new_text,
        quoted_text=split.quoted_text,
        raw=raw,
        source_file=source_file,
        position="page",
        in_reply_to=in_reply_to,
        references=[in_reply_to] if in_reply_to else [],
        list_name=list_name,
        message_id_generated=True,
        headerless=in_reply_to is None,
        source_format="pipermail-html",
    )
