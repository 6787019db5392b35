"""Import into a real database: counts, idempotency, cross-form de-duplication, threading."""

import gzip
import shutil

import pytest
from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import select

from portal.models import ImportProblemRow, ImportRun, MailingList, Message, Person, Thread


def _msg(mid, subject, frm="Ann <ann@ops.example>", date="Mon, 1 Sep 2014 10:00:00 +0000", extra="", body="hello"):
    return (f"From x@y Mon Sep  1 10:00:00 2014\nFrom: {frm}\nDate: {date}\nSubject: {subject}\n"
            f"Message-ID: <{mid}>\n{extra}\n{body}\n\n")


def _count(session, model):
    return session.execute(sa_select(func.count()).select_from(model)).scalar_one()


def test_whole_corpus_imports_without_crash_and_reimport_adds_nothing(shared, import_paths, session):
    c = shared / "corpus"
    paths = [c / "mbox", c / "maildir", c / "eml", c / "pipermail", c / "hyperkitty", shared / "seeds"]
    first = import_paths(*paths)
    assert first["messages_new"] > 1500
    assert first["messages_new"] + first["duplicates"] + len(first["problems"]) >= first["messages_seen"]
    for p in first["problems"]:
        assert p["file"] and p["where"] and p["reason"]
    second = import_paths(*paths)
    assert second["messages_new"] == 0 and second["threads_touched"] == 0
    assert second["duplicates"] == first["messages_new"] + first["duplicates"]
    assert _count(session, Message) == first["messages_new"]
    runs = session.exec(select(ImportRun).order_by(ImportRun.id)).all()
    assert [r.messages_new for r in runs] == [first["messages_new"], 0]
    assert _count(session, ImportProblemRow) == 2 * len(first["problems"])


def test_mbox_counts_match_an_independent_count(shared, import_paths):
    import mailbox

    path = shared / "corpus/mbox/ponymail/maven-dev-2017-11-listsao.mbox"
    result = import_paths(path)
    box = mailbox.mbox(str(path), create=False)
    expected = len(box)
    box.close()
    assert result["messages_new"] + result["duplicates"] == expected
    assert result["problems"] == []


def test_html_pages_of_a_month_imported_from_txt_gz_add_nothing(shared, import_paths, session):
    base = shared / "corpus/pipermail/twisted"
    txt = import_paths(base / "twisted-web_2020-October.txt.gz")
    assert txt["messages_new"] == 1
    html = import_paths(base / "twisted-web-2020-October-html")
    assert html["messages_new"] == 0 and html["duplicates"] == 1
    assert session.exec(select(Message)).one().message_id_generated is False


def test_html_first_then_txt_adopts_the_real_message_id(shared, import_paths, session):
    base = shared / "corpus/pipermail/twisted"
    assert import_paths(base / "twisted-web-2020-October-html")["messages_new"] == 1
    assert import_paths(base / "twisted-web_2020-October.txt.gz")["messages_new"] == 0
    msg = session.exec(select(Message)).one()
    assert msg.message_id == "a198871f-8bd0-38b7-a188-3acca3d171e3@thieprojects.ch"


def test_three_apache_download_flavours_are_stored_once(shared, import_paths):
    base = shared / "corpus/mbox/ponymail"
    first = import_paths(base / "maven-dev-2017-11-mboxvm.mbox")
    again = import_paths(base / "maven-dev-2017-11-mailarchivesao.mbox", base / "maven-dev-2017-11-listsao.mbox")
    assert first["messages_new"] > 300
    assert again["messages_new"] <= 3  # listsao holds three messages the other downloads lack


def test_one_malformed_message_never_loses_the_good_ones(tmp_path, import_paths, session):
    archive = tmp_path / "ops.mbox"
    archive.write_text(
        _msg("a@x", "[ops] Quota drift") + "From x@y Mon Sep  1 10:00:00 2014\nX-Broken: yes\n\n\n"
        + _msg("b@x", "Re: [ops] Quota drift", extra="In-Reply-To: <a@x>\n"),
        encoding="utf-8",
    )
    result = import_paths(archive, list_name="ops")
    assert result["messages_new"] == 2
    [problem] = result["problems"]
    assert problem["file"] == str(archive) and problem["where"] == "line 9 (message 2)"
    assert _count(session, Thread) == 1


def test_gzip_is_found_by_content_not_name(tmp_path, import_paths):
    raw = _msg("g@x", "Gzipped").encode()
    (tmp_path / "month.archive").write_bytes(gzip.compress(raw))
    assert import_paths(tmp_path / "month.archive")["messages_new"] == 1


def test_threading_children_first_ghost_parents_and_subject_fallback(tmp_path, import_paths, session):
    # The reply arrives before its parent; two siblings share a parent that is never archived.
    (tmp_path / "a.mbox").write_text(
        _msg("child@x", "Re: Cells regression", extra="In-Reply-To: <root@x>\nReferences: <root@x>\n")
        + _msg("s1@x", "Re: Ghost", extra="References: <ghost@x>\n")
        + _msg("s2@x", "Re: Ghost", frm="Bob <bob@dev.example>", extra="References: <ghost@x>\n"),
        encoding="utf-8")
    (tmp_path / "b.mbox").write_text(_msg("root@x", "Cells regression", date="Sun, 31 Aug 2014 09:00:00 +0000"),
                                     encoding="utf-8")
    import_paths(tmp_path / "a.mbox", list_name="ops")
    import_paths(tmp_path / "b.mbox", list_name="ops")
    threads = session.exec(select(Thread).order_by(Thread.id)).all()
    assert sorted(t.message_count for t in threads) == [2, 2]
    cells = next(t for t in threads if t.subject == "Cells regression")
    msgs = session.exec(select(Message).where(Message.thread_id == cells.id).order_by(Message.date)).all()
    assert [m.message_id for m in msgs] == ["root@x", "child@x"]
    assert msgs[1].parent_id == msgs[0].id
    # A header-less reply joins by subject within the window.
    (tmp_path / "c.mbox").write_text(
        "From x@y Mon Sep  1 10:00:00 2014\nFrom: Cy <cy@ops.example>\nDate: Tue, 2 Sep 2014 10:00:00 +0000\n"
        "Subject: RE: Cells regression\n\nme too\n", encoding="utf-8")
    import_paths(tmp_path / "c.mbox", list_name="ops")
    session.expire_all()
    assert session.get(Thread, cells.id).message_count == 3


def test_people_merge_by_name_then_address_and_roles_come_from_the_list(tmp_path, import_paths, session, shared):
    import_paths(shared / "seeds/000_8e50db02ec839059.txt")  # names without addresses
    (tmp_path / "m.mbox").write_text(_msg("r@x", "Hello", frm="Remi Bergsma <remi@example.org>"), encoding="utf-8")
    import_paths(tmp_path / "m.mbox", list_name="cloudstack-dev")
    remis = session.exec(select(Person).where(Person.name_key == "remi bergsma")).all()
    assert len(remis) == 1 and remis[0].email == "remi@example.org"
    assert remis[0].role == "developer"
    ml = session.exec(select(MailingList).where(MailingList.name == "cloudstack-dev")).one()
    assert ml.role == "developer"


def test_seeds_import_with_their_history_once(shared, import_paths, session, tmp_path):
    first = import_paths(shared / "seeds")
    assert first["problems"] == []
    assert first["messages_new"] >= 5 + 10
    # Pasting the same page again, under another file name, adds nothing.
    copy = tmp_path / "paste-again.txt"
    shutil.copy(shared / "seeds/000_8e50db02ec839059.txt", copy)
    assert import_paths(copy)["messages_new"] == 0
    thread = session.exec(select(Thread).where(Thread.subject == "Blameless post mortem")).one()
    assert thread.message_count == 11
    redmine = session.exec(select(Message).where(Message.subject.contains("#175518"))).one()
    assert redmine.source_format == "page-redmine"


def test_maildir_with_cur_and_new(tmp_path, import_paths):
    for sub in ("cur", "new", "tmp"):
        (tmp_path / "box" / sub).mkdir(parents=True)
    (tmp_path / "box/cur/1:2,S").write_text(_msg("m1@x", "One").split("\n", 1)[1], encoding="utf-8")
    (tmp_path / "box/new/2").write_text(_msg("m2@x", "Two").split("\n", 1)[1], encoding="utf-8")
    (tmp_path / "box/new/3").write_text("", encoding="utf-8")
    result = import_paths(tmp_path / "box")
    assert result["messages_new"] == 2
    assert [p["file"].endswith("3") for p in result["problems"]] == [True]


def test_missing_path_is_a_problem_not_a_crash(import_paths, tmp_path):
    result = import_paths(tmp_path / "nope.mbox")
    assert result["messages_new"] == 0 and result["problems"][0]["reason"] == "no such file or folder"


def test_unknown_file_is_reported(import_paths, tmp_path):
    (tmp_path / "notes.bin").write_bytes(b"\x00\x01binary junk")
    [problem] = import_paths(tmp_path / "notes.bin")["problems"]
    assert "not a mail archive" in problem["reason"]


def test_nul_bytes_and_odd_charsets_are_stored(tmp_path, import_paths, session):
    raw = (b"From x@y Mon Sep  1 10:00:00 2014\nFrom: =?iso-8859-1?q?G=F6ran?= <g@x.org>\n"
           b"Subject: =?utf-8?b?w4Rwb2NhbHlwc2U=?=\nDate: Mon, 1 Sep 2014 10:00:00 +0000\nMessage-ID: <n@x>\n"
           b"Content-Type: text/plain; charset=x-unknown\n\nnul\x00here \xe9t\xe9\n\n")
    (tmp_path / "odd.mbox").write_bytes(raw)
    assert import_paths(tmp_path / "odd.mbox")["messages_new"] == 1
    msg = session.exec(select(Message)).one()
    assert msg.subject == "Äpocalypse" and "\x00" not in msg.new_text and "été" in msg.new_text
    person = session.get(Person, msg.person_id)
    assert person.name == "Göran"


def test_fedora_month_threads_like_its_own_thread_index(shared, import_paths, session):
    """The archive's own thread.html is an independent count of messages."""
    import re

    base = shared / "corpus/pipermail/fedora-devel"
    index = gzip.open(base / "2010-January_thread.html.gz").read().decode("utf-8", "replace")
    expected = len(set(re.findall(r'href="(msg\d+\.html)"', index, re.I)))
    result = import_paths(base / "2010-January.txt.gz")
    assert result["messages_new"] + result["duplicates"] == expected
    assert _count(session, Thread) < expected / 2  # replies are threaded, not one thread each


def test_empty_folder_imports_nothing(tmp_path, import_paths):
    (tmp_path / "empty").mkdir()
    result = import_paths(tmp_path / "empty")
    assert (result["messages_new"], result["duplicates"], result["problems"]) == (0, 0, [])


def test_page_and_txt_in_one_batch_keep_the_real_id(shared, import_paths, session, tmp_path):
    base = shared / "corpus/pipermail/twisted"
    both = tmp_path / "month"
    shutil.copytree(base / "twisted-web-2020-October-html", both / "a-html")
    shutil.copy(base / "twisted-web_2020-October.txt.gz", both / "b.txt.gz")
    first = import_paths(both)
    assert (first["messages_new"], first["duplicates"]) == (1, 1)
    assert session.exec(select(Message)).one().message_id_generated is False
    again = import_paths(both)
    assert (again["messages_new"], again["threads_touched"]) == (0, 0)


def test_shared_fallback_dates_never_merge_different_messages(tmp_path, import_paths, session):
    """Dates in the future are refused, so these messages fall back to one envelope date; same
    author, same subject, different Message-IDs (and two with none) are still four messages."""
    body = ""
    for i, mid in enumerate(["<f1@x>", "<f2@x>", "", ""]):
        body += ("From demo@x Mon Jan  1 00:00:00 2024\nFrom: Ann <ann@x.org>\nDate: Sun, 1 Feb 2054 14:57:00 +0000\n"
                 f"Subject: Re: quota drift\n{'Message-ID: ' + mid if mid else 'X-No-Id: 1'}\n\nreply {i}\n\n")
    (tmp_path / "future.mbox").write_text(body, encoding="utf-8")
    result = import_paths(tmp_path / "future.mbox")
    assert (result["messages_new"], result["duplicates"]) == (4, 0)
    assert import_paths(tmp_path / "future.mbox")["messages_new"] == 0


def test_demo_generator_dates_stay_in_the_past():
    import email
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    from portal.demo import generate_messages

    last = None
    for raw in generate_messages(20000, 3):
        last = raw
    assert parsedate_to_datetime(email.message_from_bytes(last)["Date"]) < datetime.now(UTC)


def test_list_role_reseeds_people_first_seen_there_but_not_manual_ones(runner, import_paths, tmp_path, session):
    (tmp_path / "a.mbox").write_text(_msg("p1@x", "Hello", frm="Ann <ann@x.org>")
                                     + _msg("p2@x", "Hi", frm="Bob <bob@x.org>"), encoding="utf-8")
    import_paths(tmp_path / "a.mbox", list_name="cloud-talk")
    assert {p.role for p in session.exec(select(Person))} == {"unknown"}
    assert runner.invoke(args=["people", "set-role", "bob@x.org", "developer"]).exit_code == 0
    out = runner.invoke(args=["lists", "set-role", "cloud-talk", "operator"])
    assert "1 people" in out.output
    session.expire_all()
    roles = {p.email: p.role for p in session.exec(select(Person))}
    assert roles == {"ann@x.org": "operator", "bob@x.org": "developer"}


def test_parsing_in_a_second_process_stores_the_same(app, shared, import_paths, session):
    paths = [shared / "corpus/pipermail", shared / "corpus/mbox/ponymail", shared / "seeds"]
    app.config["IMPORT_PARALLEL"] = "1"
    parallel = import_paths(*paths)
    threads_parallel = _count(session, Thread)
    assert parallel["messages_new"] > 1000 and parallel["problems"] == []
    again = import_paths(*paths)
    assert again["messages_new"] == 0
    # The same archives read in-process give the same numbers (a fresh database each).
    from importers.model import ImportProblem
    from importers.sources import iter_path

    serial = [item for p in paths for item in iter_path(p) if not isinstance(item, ImportProblem)]
    assert parallel["messages_seen"] == len(serial)
    assert threads_parallel == parallel["threads_touched"]
    # The parsing process compresses the original bytes it sends: stored, they are the originals.
    import zlib

    originals: dict[str, set[bytes]] = {}
    for m in serial:  # (the same message may be in two archives, each form its own bytes)
        originals.setdefault(m.message_id, set()).add(m.raw)
    stored = session.exec(select(Message.message_id, Message.raw)).all()
    assert len(stored) > 1000 and all(zlib.decompress(raw) in originals[mid] for mid, raw in stored)


def test_the_parsing_process_judges_mentions_and_pain_as_the_storing_one_while_it_is_ahead(shared, app):
    """While chunks wait for the storing process, the parsing process also judges each message's
    ticket mentions and pain (Prejudge); what it sends equals the storing process's own judgment,
    and messages it did not judge come without one (the storing process judges those)."""
    import time

    from importers.parallel import iter_paths_parallel
    from importers.sources import iter_path
    from portal.enrich import Enricher, Prejudge

    enricher = Enricher.from_config(app.config)
    paths = [shared / "corpus/pipermail", shared / "corpus/mbox/ponymail"]
    serial = {m.message_id: m for p in paths for m in iter_path(p) if hasattr(m, "message_id")}
    judged = plain = 0
    for i, item in enumerate(iter_paths_parallel(paths, prepare=Prejudge.of(enricher))):
        if i == 0:
            time.sleep(1.5)  # a slow storing process: the parsing one gets ahead
        if not hasattr(item, "message_id"):
            continue
        if item.prepared is None:
            plain += 1
            continue
        judged += 1
        m = serial[item.message_id]
        assert item.prepared == (enricher.mentions(m), enricher.pain(m))
    assert judged > 500 and plain > 0  # (the first chunks go out before any wait in the queue)


class _FailsOnSome:
    """A `prepare` that fails on every third message (module level: the parsing process unpickles it)."""

    def __call__(self, msg):
        if sum(map(ord, msg.message_id)) % 3 == 0:
            raise ValueError("a judgment that fails on this message")
        return "judged"


def test_a_message_the_parsing_process_cannot_judge_still_comes_through_unjudged(shared):
    """A failure of `prepare` on one message never stops parsing: the message comes without a
    judgment, and the storing process judges it (and reports it, if it fails there too)."""
    import time

    from importers.parallel import iter_paths_parallel
    from importers.sources import iter_path

    path = shared / "corpus/pipermail"
    expected = [m.message_id for m in iter_path(path) if hasattr(m, "message_id")]
    got, failed = [], 0
    for i, item in enumerate(iter_paths_parallel([path], prepare=_FailsOnSome())):
        if i == 0:
            time.sleep(1.0)  # the parsing process gets ahead, and judges
        if hasattr(item, "message_id"):
            got.append(item.message_id)
            bad = sum(map(ord, item.message_id)) % 3 == 0
            assert item.prepared in ((None,) if bad else (None, "judged"))
            failed += bad
    assert got == expected and failed > 100


def test_a_failing_parser_process_is_reported(shared):
    import pytest

    from importers.parallel import iter_paths_parallel

    # A clock that is not a datetime makes the Redmine page's relative date fail inside the child.
    with pytest.raises(RuntimeError, match="parsing process failed"):
        list(iter_paths_parallel([shared / "seeds/003_4d933905ee238ada.txt"], now="not a datetime"))


def test_bulk_work_collects_cycles_less_often_and_gives_the_settings_back():
    """Imports and rebuilds run with fewer cycle collections (a sixth of a 20k import's time went
    there); the process's own settings come back after, also when the work fails."""
    import gc

    from portal.bulk import THRESHOLDS, fewer_collections

    before = gc.get_threshold()
    assert before != THRESHOLDS
    with fewer_collections():
        assert gc.get_threshold() == THRESHOLDS
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("an import that fails")
    assert gc.get_threshold() == before


def test_bulk_commands_leave_their_heap_to_the_system_at_exit():
    """`flask import` and `flask index rebuild` skip Python's last collection at exit (it walked
    the whole heap the import built): what is left then is not collected, in any process that asks."""
    import subprocess
    import sys

    script = ("import gc, sys\nsys.path.insert(0, '.')\nfrom portal.bulk import skip_last_collection\n"
              "class Held:\n    def __del__(self):\n        print('collected at exit', flush=True)\n"
              "gc.collect()\nheld = Held()\nheld.cycle = held\ndel held\ngc.disable()\n"
              "if sys.argv[1] == 'skip':\n    skip_last_collection()\n    skip_last_collection()\n")
    plain = subprocess.run([sys.executable, "-c", script, "keep"], capture_output=True, text=True, check=True)
    skipped = subprocess.run([sys.executable, "-c", script, "skip"], capture_output=True, text=True, check=True)
    assert "collected at exit" in plain.stdout
    assert "collected at exit" not in skipped.stdout


def test_free_heap_pages_go_back_to_the_operating_system():
    """After a large structure is built (grouping's similarity index), the pages its temporary
    objects were in are handed back instead of staying in the process while it works on."""
    import platform

    from portal.bulk import release_free_memory

    if platform.libc_ver()[0] != "glibc":  # (Debian, here and in CI, is glibc: this branch is for others)
        assert release_free_memory() is False  # no malloc_trim: a documented no-op, never an error
        return

    def anonymous_mb() -> float:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("RssAnon")) / 1024

    blocks = [bytearray(2000) for _ in range(60_000)]  # (past pymalloc's sizes: glibc's heap)
    keep = bytearray(2000)  # the top of the heap stays in use, so nothing is returned on its own
    del blocks
    held = anonymous_mb()
    assert release_free_memory() is True
    assert held - anonymous_mb() > 60, "the freed 120 MB stayed in the process"
    del keep
