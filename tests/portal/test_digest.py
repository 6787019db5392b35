"""The weekly digest: sections as of a week, exactly-once delivery over a real SMTP server on
loopback (aiosmtpd), unsubscribe, preview, pages, and the one scheduler."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from tests.portal.test_painpoints import gitlog, mbox

ROOT = Path(__file__).resolve().parents[2]


class Inbox:
    """An aiosmtpd handler that keeps what it receives; refuse() makes it refuse an address once."""

    def __init__(self):
        self.messages = []
        self.refuse_once: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse_once:
            self.refuse_once.discard(address)
            return "550 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos[:], message_from_bytes(envelope.content, policy=policy.default)))
        return "250 Message accepted"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp(app):
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    app.config["SMTP_URL"] = f"smtp://127.0.0.1:{port}"
    app.config["MAIL_FROM"] = "Earshot <earshot@example.org>"
    app.config["BASE_URL"] = "https://earshot.example.org"
    yield inbox
    controller.stop()


def _subscribe(runner, email, components="all", role="developer"):
    runner.invoke(args=["users", "create", "--email", email, "--name", email.split("@")[0], "--role", role])
    out = runner.invoke(args=["subscriptions", "add", "--email", email, "--components", components])
    assert out.exit_code == 0, out.output


def _send(runner, cycle, week):
    out = runner.invoke(args=["digest", "send", "--cycle", cycle, "--week", week, "--json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.output.strip().splitlines()[-1])


def _story(import_paths, runner, tmp_path):
    """One operator pain point in Juno: reported in W19, ticketed in W20, fixed without a test in
    W22, test added in W24; and a second one that nobody ticketed."""
    import_paths(mbox(
        tmp_path / "m.mbox",
        {"id": "a1@x", "date": "Tue, 6 May 2014 10:00:00 +0000", "frm": "Ana <ana@telco.example>",
         "subject": "[Openstack-operators] l3-agent routers broken after upgrade",
         "body": "Routers broken after the upgrade, floating IPs down: an outage in production."},
        {"id": "a2@x", "date": "Wed, 14 May 2014 10:00:00 +0000", "frm": "Tim <tim@cern.example>",
         "subject": "Re: [Openstack-operators] l3-agent routers broken after upgrade", "reply_to": "a1@x",
         "body": "Same here, I filed https://bugs.launchpad.net/neutron/+bug/1410001 for it."},
        {"id": "q1@x", "date": "Thu, 15 May 2014 10:00:00 +0000", "frm": "Lars <lars@isp.example>",
         "subject": "[Openstack-operators] Quota usage drifts after resize",
         "body": "Quota usage is broken after resize, tenants are blocked in production."},
    ))
    log = tmp_path / "git.log"
    log.write_text(gitlog("c" * 40, "Wed, 28 May 2014 10:00:00 +0000", "Resync routers", "Closes-Bug: #1410001",
                          ["neutron/agent/l3/agent.py"]) + "\n" +
                   gitlog("d" * 40, "Tue, 10 Jun 2014 10:00:00 +0000", "Test router resync", "Closes-Bug: #1410001",
                          ["neutron/tests/unit/agent/l3/test_agent.py"]), encoding="utf-8")
    assert runner.invoke(args=["git", "import", str(log)]).exit_code == 0


def test_sections_follow_the_evidence_week_by_week(app, runner, import_paths, tmp_path):
    from portal import db as dbmod
    from portal.cycles import all_cycles, find
    from portal.digest import build, for_recipient, parse_week

    _story(import_paths, runner, tmp_path)

    def sections(week):
        with app.app_context(), dbmod.session_scope() as s:
            d = for_recipient(build(s, find(all_cycles(s), "juno"), parse_week(week), base_url="http://e"), None)
        return {sec["key"]: [i["title"] for i in sec["items"]] for sec in d["sections"]}, d

    routers, quota = "l3-agent routers broken after upgrade", "Quota usage drifts after resize"
    w19, _ = sections("2014-W19")
    assert w19["new"] == [routers] and w19["untracked"] == [routers]
    w20, d20 = sections("2014-W20")  # the bug was filed in a reply, and the quota pain came in
    assert w20["no_fix"] == [routers] and w20["untracked"] == [quota] and set(w20["new"]) == {quota}
    assert d20["counts"]["untracked"] == 1 and d20["change"]["untracked"] == 0 and d20["coverage"]["rate"] == 0.5
    w22, d22 = sections("2014-W22")
    assert w22["no_test"] == [routers] and w22["no_fix"] == [] and d22["change"]["no_test"] == 1
    w24, _ = sections("2014-W24")
    assert w24["fixed_tested"] == [routers] and w24["no_test"] == []
    w25, d25 = sections("2014-W25")
    assert w25["fixed_tested"] == [] and w25["untracked"] == [quota]  # good news is told once
    chart = {c["component"]: c["series"] for c in d25["chart"]["components"]}
    assert chart["networking"][-1] == 0 and max(chart["networking"]) == 1
    # A long section lists the most painful few, counts them all and links to the rest.
    from portal.digest import for_recipient as cut

    short = cut(_week_data(app, "2014-W25"), None, per_section=0)
    untracked = next(sec for sec in short["sections"] if sec["key"] == "untracked")
    assert untracked["items"] == [] and untracked["total"] == 1 and untracked["more_url"].endswith("status=untracked")


def _week_data(app, week):
    from portal import db as dbmod
    from portal.cycles import all_cycles, find
    from portal.digest import build, parse_week

    with app.app_context(), dbmod.session_scope() as s:
        return build(s, find(all_cycles(s), "juno"), parse_week(week), base_url="http://e")


def test_one_multipart_mail_per_week_however_often_send_runs(app, runner, import_paths, shared, smtp):
    """Issue 7's acceptance, on the seeds and a real git history."""
    import_paths(shared / "seeds")
    assert runner.invoke(args=["git", "import", str(shared / "corpus/gitlog/openstack-nova")]).exit_code == 0
    _subscribe(runner, "dev@example.org")
    _subscribe(runner, "net@example.org", components="networking")
    first = _send(runner, "liberty", "2015-W39")
    assert first == {"frozen": 2, "sent": 2, "skipped": 0, "failed": 0, "uncertain": 0}
    for _ in range(2):
        assert _send(runner, "liberty", "2015-W39") == {"frozen": 0, "sent": 0, "skipped": 2, "failed": 0,
                                                        "uncertain": 0}
    assert len(smtp.messages) == 2
    to, mail = next(m for m in smtp.messages if m[0] == ["dev@example.org"])
    assert mail.is_multipart() and mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "liberty" in mail["Subject"] and "2015-W39" in mail["Subject"]
    assert "No fix: nobody has a ticket" in text and "No test: fixed without a test" in text
    assert "Blameless post mortem" in text and "https://earshot.example.org/painpoints/" in text
    unsubscribe = mail["List-Unsubscribe"].strip().strip("<>")
    assert unsubscribe.startswith("https://earshot.example.org/unsubscribe/") and unsubscribe in text
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "<script" not in html and "Blameless post mortem" in html
    # The networking subscriber's digest has only networking pain (the post-mortem is about the VR).
    net = next(m for t, m in smtp.messages if t == ["net@example.org"])
    assert "networking" in net.get_body(("plain",)).get_content()


def test_a_sender_killed_after_freezing_sends_nothing_twice(app, runner, import_paths, tmp_path, smtp):
    _story(import_paths, runner, tmp_path)
    for email in ("a@example.org", "b@example.org"):
        _subscribe(runner, email)
    # A "mail server" that accepts the connection and never answers: the sender freezes the
    # digests, then hangs waiting for the greeting, and is killed there.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    env = {**os.environ, "FLASK_APP": "app.py", "EARSHOT_DATA_DIR": app.config["DATA_DIR"],
           "EARSHOT_DATABASE_URL": app.config["DATABASE_URL"] or "", "EARSHOT_SECRET_KEY": "test-secret",
           "EARSHOT_SMTP_URL": f"smtp://127.0.0.1:{silent.getsockname()[1]}"}
    proc = subprocess.Popen([sys.executable, "-m", "flask", "digest", "send", "--cycle", "juno", "--week", "2014-W22"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    from sqlmodel import Session, select

    from portal import db as dbmod
    from portal.models import Digest

    try:
        for _ in range(600):  # until both digests are frozen (or the sender died)
            with app.app_context(), Session(dbmod.engine()) as s:
                states = [d.status for d in s.exec(select(Digest))]
            if len(states) == 2 or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode()
        assert states == ["frozen", "frozen"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)  # closes its pipes
        silent.close()
    assert _send(runner, "juno", "2014-W22") == {"frozen": 0, "sent": 2, "skipped": 0, "failed": 0, "uncertain": 0}
    assert _send(runner, "juno", "2014-W22")["sent"] == 0
    assert sorted(t[0] for t, _m in smtp.messages) == ["a@example.org", "b@example.org"]


def test_a_refused_mail_is_retried_on_the_next_run_and_reported(app, runner, import_paths, tmp_path, smtp):
    _story(import_paths, runner, tmp_path)
    _subscribe(runner, "a@example.org")
    _subscribe(runner, "b@example.org")
    smtp.refuse_once.add("b@example.org")
    assert _send(runner, "juno", "2014-W22") == {"frozen": 2, "sent": 1, "skipped": 0, "failed": 1, "uncertain": 0}
    from sqlmodel import Session, select

    from portal import db as dbmod
    from portal.models import Digest, User

    with app.app_context(), Session(dbmod.engine()) as s:
        b = s.exec(select(User).where(User.email == "b@example.org")).one()
        row = s.exec(select(Digest).where(Digest.user_id == b.id)).one()
        assert row.status == "failed" and "550" in row.last_error and row.attempts == 1
    assert _send(runner, "juno", "2014-W22") == {"frozen": 0, "sent": 1, "skipped": 1, "failed": 0, "uncertain": 0}
    assert sorted(t[0] for t, _m in smtp.messages) == ["a@example.org", "b@example.org"]


def test_unsubscribe_asks_then_stops_the_digest(app, client, runner, import_paths, tmp_path, smtp):
    _story(import_paths, runner, tmp_path)
    _subscribe(runner, "a@example.org")
    _send(runner, "juno", "2014-W22")
    (_to, mail), = smtp.messages
    path = mail["List-Unsubscribe"].strip().strip("<>").replace("https://earshot.example.org", "")
    app.config["WTF_CSRF_ENABLED"] = True
    assert "Stop the weekly digest" in client.get(path).get_data(as_text=True)  # a GET changes nothing
    assert client.post(path).status_code == 200  # one-click: no form token, the signed link is enough
    assert client.get(path[:-3] + "xyz").status_code == 404
    assert _send(runner, "juno", "2014-W23")["frozen"] == 0
    assert "unsubscribed" in runner.invoke(args=["subscriptions", "list"]).output


def test_preview_prints_each_format_and_checks_its_arguments(app, runner, import_paths, tmp_path):
    _story(import_paths, runner, tmp_path)
    _subscribe(runner, "q@example.org", components="quotas")
    text = runner.invoke(args=["digest", "preview", "--cycle", "juno", "--week", "2014-W22"]).output
    assert "No fix: nobody has a ticket (1)" in text and "No test: fixed without a test (1)" in text
    mine = runner.invoke(args=["digest", "preview", "--cycle", "juno", "--week", "2014-W22", "--to",
                               "q@example.org", "--format", "json"]).output
    data = json.loads(mine)
    assert data["components"] == ["quotas"] and data["counts"]["no_test"] == 0 and data["counts"]["untracked"] == 1
    html = runner.invoke(args=["digest", "preview", "--cycle", "juno", "--week", "2014-W22", "--format", "html"])
    assert html.output.lstrip().startswith("<!doctype html>")
    for args, message in ((["--cycle", "juno", "--week", "2014-22"], "expected an ISO week"),
                          (["--cycle", "juno", "--week", "2015-W30"], "outside cycle juno"),
                          (["--cycle", "nope", "--week", "2014-W22"], "no cycle nope"),
                          (["--cycle", "juno", "--week", "2014-W22", "--to", "x@y.z"], "no user")):
        out = runner.invoke(args=["digest", "preview", *args])
        assert out.exit_code != 0 and message in out.output
    bad = runner.invoke(args=["subscriptions", "add", "--email", "q@example.org", "--components", "quota"])
    assert bad.exit_code != 0 and "unknown component 'quota'" in bad.output


def test_settings_page_and_digest_pages(app, client, runner, import_paths, tmp_path):
    import re

    _story(import_paths, runner, tmp_path)
    runner.invoke(args=["users", "create", "--email", "d@example.org", "--role", "developer"])
    token = runner.invoke(args=["tokens", "create", "--email", "d@example.org"]).output.strip().splitlines()[-1]
    assert client.get("/settings").status_code == 302
    app.config["WTF_CSRF_ENABLED"] = True
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/signin").get_data(as_text=True)).group(1)
    client.post("/signin", data={"token": token, "csrf_token": csrf})
    page = client.get("/settings").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    bad = client.post("/settings", data={"follow": "some", "csrf_token": csrf})
    assert bad.status_code == 422 and 'id="components-error"' in bad.get_data(as_text=True)
    assert client.post("/settings", data={"follow": "some", "components": ["quotas", "networking"],
                                          "csrf_token": csrf}).status_code == 302
    assert "networking,quotas" in runner.invoke(args=["subscriptions", "list"]).output
    mine = client.get("/digests/juno/2014-W22").get_data(as_text=True)
    assert "networking, quotas" in mine and "l3-agent routers broken after upgrade" in mine
    assert client.get("/digests/juno/2015-W30").status_code == 404
    assert client.get("/digests/nope/2014-W22").status_code == 404
    feed = client.get("/digests/juno/feed.atom")
    assert feed.headers["Content-Type"].startswith("application/atom+xml")
    from xml.etree import ElementTree

    entries = ElementTree.fromstring(feed.data).findall("{http://www.w3.org/2005/Atom}entry")
    assert len(entries) == 4 and "juno 2014-W42" in entries[0].find("{http://www.w3.org/2005/Atom}title").text


def test_the_weekly_job_sends_last_weeks_digest(app, runner, import_paths, tmp_path, smtp):
    from portal.scheduler import weekly_digest

    _story(import_paths, runner, tmp_path)
    _subscribe(runner, "a@example.org")
    result = weekly_digest(app, now=datetime(2014, 6, 2, 7, 0))  # a Monday morning: week 22 just ended
    assert result["week"] == "2014-W22" and result["cycle"] == "juno" and result["sent"] == 1
    assert weekly_digest(app, now=datetime(2014, 6, 2, 9, 0))["sent"] == 0  # a second run sends nothing
    assert weekly_digest(app, now=datetime(2030, 1, 7, 7, 0))["cycle"] is None


def test_a_second_scheduler_waits_for_the_first(app):
    env = {**os.environ, "FLASK_APP": "app.py", "EARSHOT_DATA_DIR": app.config["DATA_DIR"],
           "EARSHOT_DATABASE_URL": app.config["DATABASE_URL"] or "", "EARSHOT_SECRET_KEY": "test-secret"}

    def start():
        return subprocess.Popen([sys.executable, "-u", "-m", "flask", "scheduler", "run"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait_for(proc, words):
        for line in proc.stderr:
            if words in line:
                return line
        raise AssertionError(f"the scheduler ended without saying {words!r}")

    first = start()
    second = None
    try:
        assert "weekly-digest" in wait_for(first, "scheduler started")
        second = start()
        wait_for(second, "waiting for the scheduler lock")
        assert second.poll() is None
        first.send_signal(signal.SIGINT)
        first.wait(30)
        wait_for(second, "scheduler started")  # it takes over once the first is gone
    finally:
        for proc in (first, second):
            if proc is not None:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(10)
                proc.stderr.close()


def test_release_tags_in_code_history_become_cycles(runner, tmp_path):
    def commit(sha, date, tags):
        return "\n".join([f"commit {sha} (tag: {tags})" if tags else f"commit {sha}", "Author:     D <d@x.org>",
                          f"AuthorDate: {date}", "Commit:     D <d@x.org>", f"CommitDate: {date}", "",
                          "    Release", "", ""])

    log = tmp_path / "tags.log"  # newest first, as git prints it
    log.write_text("\n".join([commit("c" * 40, "Thu, 16 Oct 2014 12:00:00 +0000", "2014.2.0"),
                              commit("b" * 40, "Thu, 2 Oct 2014 12:00:00 +0000", "2014.2.rc1"),
                              commit("a" * 40, "Thu, 17 Apr 2014 12:00:00 +0000", "2014.1.0")]), encoding="utf-8")
    out = runner.invoke(args=["git", "import", "--json", "--cycles-from-tags", r"^\d{4}\.\d\.0$", str(log)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["cycles"] == ["2014.2.0"]
    listed = {c["name"]: c for c in json.loads(runner.invoke(args=["cycles", "list", "--json"]).output)}
    assert listed["2014.2.0"] == {"name": "2014.2.0", "start": "2014-04-17", "end": "2014-10-16", "source": "git"}
    bad = runner.invoke(args=["git", "import", "--cycles-from-tags", "([", str(log)])
    assert bad.exit_code != 0 and "--cycles-from-tags" in bad.output
