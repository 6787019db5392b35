"""Archives the team does not have: corrupted copies of real ones never crash an import."""

import gzip
import random

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
