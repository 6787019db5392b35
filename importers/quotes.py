"""Separate a message's own new text from quoted text, signatures and list footers, and
recover the earlier messages of a conversation from the quoted history a page carries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from .text import parse_author, parse_date

# Lines after which nothing is the author's own words: Mailman footers and attachment stubs.
_FOOTER_RE = re.compile(
    r"^(?:-{5,} ?next part ?-{5,}|_{20,}\s*$|More information about the |"
    r"An? (?:HTML|non-text) attachment was scrubbed|View raw message\s*$)",
    re.I,
)
_SIG_RE = re.compile(r"^-- ?$")
_QUOTE_RE = re.compile(r"^[ \t]*((?:>[ \t]?)+)")
# "On Mon, Aug 11, 2014 at 9:58 AM, Robert Kukura <...> wrote:" and the many variants.
_ATTRIB_RE = re.compile(
    r"^(?:On|Am|Le|El|Il|Op|Den|W dniu)\s+(?P<when>.{4,80}?),?\s+"
    r"(?!(?:AM|PM|am|pm)\b)(?P<who>[^,<\d]+(?:,[^,<\d]+)?\s*(?:<[^>]*>)?|<[^>]*>|\S+@\S+)\s*"
    r"(?:wrote|schrieb|a écrit|escribió|ha scritto|schreef|skrev|napisał)\s*:?\s*$",
    re.I,
)
# An attribution the archive cut before "wrote:" ("On 28-Sep-2015, at 2:51 pm, Remi Bergsma <>").
_ATTRIB_OPEN_RE = re.compile(r"^On\s+(?P<when>.{4,60}?\d{1,2}:\d\d(?:\s*[ap]m)?)\s*,\s+(?P<who>.+?)\s*$", re.I)
_MAILTO_RE = re.compile(r"<mailto:[^>]*>")
# How the words that open an attribution begin (On, Am, Le, El, Il, Op, Den, W dniu), matched as
# the patterns above match them (re.I: "ıl" is "Il" to them): a line that begins otherwise is no
# attribution, and most lines are not.
_ATTRIB_START_RE = re.compile(r"(?:On|Am|Le|El|Il|Op|De|W )", re.I)
_WROTE_RE = re.compile(r"^\s*(?:wrote|schrieb)\s*:\s*$", re.I)
_OUTLOOK_SEP_RE = re.compile(r"^(?:_{20,}|-{3,}\s*Original Message\s*-{3,})\s*$", re.I)
_OUTLOOK_HDR_RE = re.compile(r"^(From|Sent|Date|To|Cc|Subject)\s*:\s*(.*)$", re.I)


@dataclass
class Split:
    new_text: str
    quoted_text: str


@dataclass
class Segment:
    """One earlier message rebuilt from quoted history."""

    author_name: str
    author_email: str
    date: datetime | None
    text: str


def _quote_level(line: str) -> tuple[int, str]:
    m = _QUOTE_RE.match(line)
    if not m:
        return 0, line
    return m.group(1).count(">"), line[m.end():]


def _attribution(lines: list[str], i: int) -> tuple[str, str, int] | None:
    """(when, who, lines used) when line i opens a quoted message ("On ... wrote:")."""
    text = _quote_level(lines[i])[1].strip()
    if "<mailto:" in text:
        text = _MAILTO_RE.sub("", text)
    if not _ATTRIB_START_RE.match(text):  # every form below opens with one of these words
        return None
    m = _ATTRIB_RE.match(text)
    if m:
        return m.group("when"), m.group("who"), 1
    if i + 1 < len(lines):
        joined = text + " " + _MAILTO_RE.sub("", _quote_level(lines[i + 1])[1].strip())
        m = _ATTRIB_RE.match(joined)
        if m and text.lower().startswith(("on ", "am ", "le ")):
            return m.group("when"), m.group("who"), 2
    m = _ATTRIB_OPEN_RE.match(text)
    if m and ("<" in m.group("who") or "@" in m.group("who")):
        nxt = _quote_level(lines[i + 1])[1] if i + 1 < len(lines) else ""
        return m.group("when"), m.group("who"), 2 if _WROTE_RE.match(nxt) else 1
    return None


def _outlook_block(lines: list[str], i: int) -> tuple[dict[str, str], int] | None:
    """Headers of an Outlook-style quoted message starting at line i, and lines used."""
    start = i
    if _OUTLOOK_SEP_RE.match(lines[i].strip()):
        i += 1
    headers: dict[str, str] = {}
    while i < len(lines) and len(headers) < 6:
        m = _OUTLOOK_HDR_RE.match(lines[i].strip())
        if m:
            headers[m.group(1).lower()] = m.group(2).strip()
            i += 1
        elif headers and lines[i].strip() and not lines[i].strip().endswith(":") and "from" in headers \
                and i + 1 < len(lines) and _OUTLOOK_HDR_RE.match(lines[i + 1].strip()):
            i += 1  # a wrapped header value
        else:
            break
    if "from" in headers and ("sent" in headers or "date" in headers) and len(headers) >= 3:
        return headers, i - start
    return None


def _starts_outlook(lines: list[str], i: int) -> tuple[dict[str, str], int] | None:
    content = _quote_level(lines[i])[1].strip()
    if content[:1] not in ("_", "-", "F", "f"):  # a separator line or "From:"
        return None
    if _OUTLOOK_SEP_RE.match(content) or content.lower().startswith("from:"):
        return _outlook_block([_quote_level(x)[1] for x in lines[i:i + 12]], 0)
    return None


def split_new_text(body: str) -> Split:
    """The author's own words, and everything quoted, signed or appended by the list."""
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    new: list[str] = []
    quoted: list[str] = []
    in_sig = False
    i = 0
    prev_quoted_long = False
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if _starts_outlook(lines, i):
            quoted.extend(lines[i:])
            break
        if _FOOTER_RE.match(stripped) and not stripped.startswith(">"):
            break
        attrib = _attribution(lines, i)
        if attrib:
            quoted.extend(lines[i:i + attrib[2]])
            i += attrib[2]
            prev_quoted_long = True
            continue
        level, _ = _quote_level(line)
        if level:
            quoted.append(line)
            prev_quoted_long = len(line) >= 60
        elif prev_quoted_long and stripped:
            # A pasted archive page wraps long quoted lines without repeating the ">".
            quoted.append(line)
            prev_quoted_long = len(line) >= 60
        else:
            prev_quoted_long = False
            if _SIG_RE.match(line.rstrip("\n")):
                in_sig = True
            elif not in_sig:
                new.append(line)
        i += 1
    return Split(_tidy(new), _tidy(quoted))


def _tidy(lines: list[str]) -> str:
    text = "\n".join(x.rstrip() for x in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def recover_history(body: str, reference: datetime | None = None) -> list[Segment]:
    """Earlier messages quoted in a body, newest first, wherever an attribution names them.

    Each "On <date>, <name> wrote:" line (at any quote depth) or Outlook "From:/Sent:" block
    opens a segment; the text quoted one level deeper (or at the same depth, as mod_mbox pages
    flatten it) belongs to that segment. `reference` is the quoting message's date, used to read
    ambiguous dates such as 05/02/2014 the way that puts them just before it.
    """
    lines = body.replace("\r\n", "\n").split("\n")
    segments: list[tuple[int, Segment, list[str]]] = []  # (level, segment, lines)
    i = 0
    last_owner: list[str] | None = None
    continuing = False  # the previous line was quoted (or its wrapped continuation) and long
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        level, content = _quote_level(line)
        block = _starts_outlook(lines, i)
        if block:
            headers, used = block
            name, email = parse_author(_who(re.sub(r"\[([^\]]+)\]", r"<\1>", headers["from"])))
            seg = Segment(name, email, _read_date(headers.get("sent") or headers.get("date") or "", reference), "")
            segments.append((level - 1, seg, []))  # Outlook quotes at the same depth
            last_owner, continuing = segments[-1][2], False
            i += used
            continue
        if level == 0 and _FOOTER_RE.match(stripped):
            break
        attrib = _attribution(lines, i)
        if attrib:
            when, who, used = attrib
            name, email = parse_author(_who(who))
            seg = Segment(name, email, _read_date(when, reference), "")
            segments.append((level, seg, []))
            last_owner, continuing = segments[-1][2], False
            i += used
            continue
        if segments and level == 0 and stripped and continuing and last_owner is not None:
            last_owner.append(stripped)  # wrapped continuation of a quoted line
            continuing = len(line) >= 60
            i += 1
            continue
        owner = _owner(segments, level) if segments else None
        if owner is not None:
            owner.append(content)
            last_owner = owner
        continuing = level > 0 and len(line) >= 60
        i += 1
    result = []
    for _level, seg, seg_lines in segments:
        seg.text = split_new_text("\n".join(seg_lines)).new_text
        if seg.text or seg.author_name:
            result.append(seg)
    return result


def _who(text: str) -> str:
    """An attribution's author with a "Last, First" name kept whole for address parsing."""
    text = _MAILTO_RE.sub("", text).replace("<>", "").strip()
    m = re.match(r"^([^<\"]*,[^<\"]*)(<.*)$", text)
    return f'"{m.group(1).strip()}" {m.group(2)}' if m else text


def _read_date(text: str, reference: datetime | None) -> datetime | None:
    """Parse an attribution date; for all-numeric dates pick the day/month order that lands
    closest before the quoting message."""
    if not re.match(r"^\s*\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}", text):
        return parse_date(text)
    options = [d for d in (parse_date(text, dayfirst=True), parse_date(text, dayfirst=False)) if d]
    if not options:
        return None
    if reference is None:
        return options[0]
    before = [d for d in options if d <= reference + timedelta(days=1)]
    return min(before or options, key=lambda d: abs((reference - d).total_seconds()))


def _owner(segments: list[tuple[int, Segment, list[str]]], level: int) -> list[str] | None:
    """The segment whose quoted text sits at this depth: the latest opened one level above
    (or, where pages flatten quoting, at the same depth)."""
    for seg_level, _seg, seg_lines in reversed(segments):
        if seg_level in (level - 1, level):
            return seg_lines
    for seg_level, _seg, seg_lines in reversed(segments):
        if seg_level < level:
            return seg_lines
    return None
