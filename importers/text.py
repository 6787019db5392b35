"""Small text helpers shared by the importers: subjects, addresses, dates, ids, HTML."""

from __future__ import annotations

import hashlib
import html
import re
from datetime import UTC, datetime, timedelta, timezone
from email.utils import getaddresses, parsedate_to_datetime

from dateutil import parser as dateparser

# Reply and forward prefixes in the languages operators write in (English, German, Nordic,
# Dutch, Italian, French, Spanish), optionally counted ("Re[2]:").
_PREFIX_RE = re.compile(
    r"^\s*(?:(?:re|fwd?|aw|sv|vs|antw|wg|tr|rif|r|ref|odp|res)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*"
    r"|\[[^\]\n]{1,60}\]\s*)",
    re.IGNORECASE,
)
_REPLY_RE = re.compile(r"^\s*(?:\[[^\]]{1,60}\]\s*)*(?:re|aw|sv|vs|antw|odp|res)\s*(?:\[\d+\])?\s*:", re.I)
_WS_RE = re.compile(r"\s+")
_OBFUSCATED_RE = re.compile(r"\b([\w.+\-=]+) at ([\w\-]+(?:\.[\w\-]+)+)\b")
_EMAIL_RE = re.compile(r"[\w.+\-=/]+@[\w\-]+(?:\.[\w\-]+)+")
_MSGID_RE = re.compile(r"<([^<>\s]+)>")

# Time-zone abbreviations seen in pipermail pages and old archives; dateutil needs them spelled out.
TZINFOS = {
    name: timezone(timedelta(hours=hours))
    for name, hours in {
        "UTC": 0, "GMT": 0, "UT": 0, "Z": 0, "WET": 0, "BST": 1, "IST": 1, "CET": 1, "MET": 1,
        "CEST": 2, "MEST": 2, "EET": 2, "EEST": 3, "MSK": 3, "EST": -5, "EDT": -4, "CST": -6,
        "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7, "AKST": -9, "AKDT": -8,
        "HST": -10, "JST": 9, "KST": 9, "AEST": 10, "AEDT": 11, "NZST": 12, "NZDT": 13,
    }.items()
}
_EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)


def clean_text(value: str) -> str:
    """Drop NUL and other C0 controls that databases refuse, keeping tabs and newlines."""
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", "", value)


def normalize_subject(subject: str) -> str:
    """Strip reply/forward prefixes and list tags, collapse white space (for threading)."""
    text = _WS_RE.sub(" ", subject or "").strip()
    while True:
        stripped = _PREFIX_RE.sub("", text, count=1).strip()
        if stripped == text:
            return text
        text = stripped


def subject_key(subject: str) -> str:
    """The key two subjects must share to fall into one thread by subject."""
    return normalize_subject(subject).casefold()[:250]


def is_reply_subject(subject: str) -> bool:
    """True for subjects that say they answer another message ("Re: ...")."""
    return bool(_REPLY_RE.match(subject or ""))


def deobfuscate(text: str) -> str:
    """Undo pipermail's `user at host` address hiding."""
    return _OBFUSCATED_RE.sub(r"\1@\2", text)


def parse_author(value: str) -> tuple[str, str]:
    """Name and lower-cased address from a From header in any of the shapes archives use."""
    value = clean_text(deobfuscate(value or "")).strip()
    # Mailman's "user@host (Real Name)" form.
    m = re.match(r"^\s*(\S+@\S+)\s+\((.*)\)\s*$", value)
    if m:
        return m.group(2).strip().strip('"'), m.group(1).strip("<>").lower()
    if "<" not in value:
        found = _EMAIL_RE.search(value)
        if found:
            name = _EMAIL_RE.sub("", value).strip(" \"'()")
            return _WS_RE.sub(" ", name) or found.group(0).split("@")[0], found.group(0).lower().strip(".")
    pairs = getaddresses([value])
    name, addr = pairs[0] if pairs else ("", "")
    if "@" not in addr:
        found = _EMAIL_RE.search(value)
        addr = found.group(0) if found else ""
        name = _EMAIL_RE.sub("", value).replace("<>", "").strip(" <>\"'()") if found else value
    name = name.strip().strip('"').strip()
    if "..." in addr or "\u2026" in addr:  # archives that shorten addresses to hide them
        addr = ""
    if not name and addr:
        name = addr.split("@")[0]
    return _WS_RE.sub(" ", name), addr.lower().strip(".")


def name_key(name: str) -> str:
    """A person's name reduced to compare across archives that hide addresses."""
    name = re.sub(r"\(.*?\)|\[.*?\]", " ", name or "")
    if "," in name:  # "Collins, Sean" -> "Sean Collins"
        last, _, first = name.partition(",")
        name = f"{first} {last}"
    return " ".join(re.findall(r"\w+", name.casefold()))


def parse_date(value: str | None, *, dayfirst: bool = False) -> datetime | None:
    """A timezone-aware UTC datetime from any date text archives carry, or None."""
    if not value:
        return None
    value = _WS_RE.sub(" ", value).strip()
    result: datetime | None = None
    try:
        result = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        result = None
    if result is None:
        cleaned = re.sub(r"\([A-Za-z ]+\)\s*$", "", value).replace(" at ", " ").strip()
        try:
            result = dateparser.parse(cleaned, tzinfos=TZINFOS, dayfirst=dayfirst, fuzzy=True)
        except (ValueError, OverflowError, TypeError):
            return None
    if result.tzinfo is None:
        result = result.replace(tzinfo=UTC)
    try:
        result = result.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
    if result < _EARLIEST or result > datetime.now(UTC) + timedelta(days=2):
        return None
    return result


def repair_message_id(value: str | None) -> str | None:
    """The first usable Message-ID token without angle brackets, or None."""
    if not value:
        return None
    value = clean_text(value).strip()
    m = _MSGID_RE.search(value)
    token = m.group(1) if m else value.strip("<> \t\r\n").split()[0] if value.strip("<> \t\r\n") else ""
    token = token.strip("<>")
    if not token or len(token) > 900 or " " in token:
        return None
    return token


def message_ids(value: str | None) -> list[str]:
    """All Message-IDs in a References or In-Reply-To header, in order."""
    if not value:
        return []
    found = _MSGID_RE.findall(clean_text(value))
    if not found:
        token = repair_message_id(value)
        return [token] if token and "@" in token else []
    return [x for x in found if len(x) <= 900]


def generated_id(*parts: str) -> str:
    """A deterministic Message-ID for messages that carry none, so re-imports match."""
    digest = hashlib.sha1("\x1f".join(parts).encode("utf-8", "replace")).hexdigest()[:32]
    return f"earshot.{digest}@generated.invalid"


def html_to_text(markup: str) -> str:
    """Readable text from an HTML body: block elements become lines, scripts vanish."""
    from bs4 import BeautifulSoup  # (here: 0.05-0.09 s to import, and most mail is plain text)

    soup = BeautifulSoup(markup, "html.parser")
    for tag in soup(["script", "style", "head", "title"]):
        tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for block in soup.find_all(["p", "div", "li", "tr", "h1", "h2", "h3", "h4", "pre", "blockquote"]):
        block.insert_before("\n")
        block.insert_after("\n")
    text = soup.get_text()
    text = html.unescape(text)
    text = re.sub(r"[ \t\xa0]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def list_name_from_id(list_id: str) -> str | None:
    """`OpenStack-dev <openstack-dev.lists.openstack.org>` -> `openstack-dev`."""
    m = re.search(r"<([^<>]+)>", list_id or "")
    ident = (m.group(1) if m else (list_id or "")).strip().lower()
    if not ident or " " in ident:
        return None
    if ".lists." in ident:
        return ident.split(".lists.")[0]
    return ident


def list_name_from_tag(subject: str) -> str | None:
    """The list tag of a subject: `[Openstack-operators] ...` -> `openstack-operators`."""
    m = re.match(r"^\s*(?:(?:re|fwd?|aw)\s*:\s*)*\[([A-Za-z0-9][\w.\-]{1,60})\]", subject or "", re.I)
    return m.group(1).lower() if m else None


def list_name_from_address(address: str) -> str | None:
    """`dev@cloudstack.apache.org` -> `cloudstack-dev` (as Apache's archives name it);
    `openstack-dev@lists.openstack.org` -> `openstack-dev`."""
    local, _, domain = (address or "").strip().strip("<>").lower().partition("@")
    if not local:
        return None
    if domain.endswith(".apache.org") and domain.count(".") == 2:
        return f"{domain.split('.')[0]}-{local}"
    return local
