"""Archives the team does not have: corrupted copies of real ones never crash an import."""

import gzip
import random
import re

from importers.model import ImportProblem, ParsedMessage
from importers.sources import iter_path

SAMPLES = [
    "mbox/ponymail/httpd-users-200606-part.mbox",
    "mbox/perceval/mbox_complex.mbox",
    "pipermail/twisted/twisted-python_2020-January.txt.gz",
    "eml/flanker/broken-ctype.eml",
    "eml/hyperkitty/non-ascii-headers.txt",
]


def _mutations(data: bytes, rng: random.Random):
    yield data[: len(data) // 2]  # truncated mid-message
    flipped = bytearray(data)
    for _ in range(max(1, len(data) // 200)):
        flipped[rng.randrange(len(flipped))] = rng.randrange(256)
    yield bytes(flipped)  # bit rot
    yield data.replace(b"\n", b"\r\n")  # CRLF line ends
    yield b"\x00" * 64 + data  # binary junk in front
    yield data.replace(b":", b"", 20)  # damaged headers
    yield gzip.compress(data)[:-10]  # truncated gzip


def test_corrupted_archives_yield_messages_or_problems_never_exceptions(shared, tmp_path):
    rng = random.Random(20261128)
    for name in SAMPLES:
        data = (shared / "corpus" / name).read_bytes()
        if name.endswith(".gz"):
            data = gzip.decompress(data)
        for i, mutated in enumerate(_mutations(data, rng)):
            path = tmp_path / f"{i}-{name.replace('/', '_')}"
            path.write_bytes(mutated)
            items = list(iter_path(path))
            assert all(isinstance(x, ParsedMessage | ImportProblem) for x in items)
            for p in (x for x in items if isinstance(x, ImportProblem)):
                assert p.file == str(path) and p.where and p.reason


def test_unreadable_folder_and_symlink_loop(tmp_path):
    (tmp_path / "box").mkdir()
    (tmp_path / "box" / "loop").symlink_to(tmp_path / "box")
    (tmp_path / "box" / "m.eml").write_bytes(b"From: a@b.org\nSubject: hi\nMessage-ID: <l@x>\n\nbody\n")
    items = list(iter_path(tmp_path / "box"))
    assert [x.message_id for x in items if isinstance(x, ParsedMessage)] == ["l@x"]


def test_headers_without_encoded_words_skip_the_decoder_and_read_the_same(shared):
    """Header values without "=?" are taken as they are (the decoder would hand them back
    unchanged): every header of the corpus archives reads as decoding it in full does."""
    import email
    import email.policy
    from email.header import decode_header, make_header

    from importers.message import decode_header_value
    from importers.text import clean_text

    def in_full(value):
        try:
            text = str(make_header(decode_header(value)))
        except (UnicodeError, LookupError, ValueError, email.errors.HeaderParseError):
            text = value
        if any("\udc80" <= ch <= "\udcff" for ch in text):
            data = text.encode("utf-8", "surrogateescape")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = data.decode("cp1252", "replace")
        return clean_text(re.sub(r"\s*\n\s*", " ", text)).strip()

    values = ["=?utf-8?q?caf=C3=A9?= bar", "Re: a\n  folded\tsubject", "=?bogus?x?y?=", "odd =? mark",
              "caf\udce9 latin-1 bytes", "\udcc3\udca9t\udcc3\udca9 utf-8 bytes", ""]
    for path in sorted((shared / "corpus").rglob("*.mbox")):
        for raw in path.read_bytes().split(b"\nFrom ")[:2000]:
            values.extend(v for _k, v in email.message_from_bytes(raw, policy=email.policy.compat32).items())
    assert len(values) > 1000 and sum("=?" in v for v in values if isinstance(v, str)) > 10
    for value in values:
        assert decode_header_value(value) == in_full(value), value
