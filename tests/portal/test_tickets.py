"""Tickets from trackers and from code history, their derived states, and their API."""

import json
import re
import subprocess

import pytest

NOVA = "corpus/gitlog/openstack-nova"


def _independent_counts(text: str) -> tuple[int, int]:
    """Bugs closed, and bugs closed by a commit touching tests, counted without the project's parser."""
    fixed, tested = set(), set()
    for block in re.split(r"(?m)^commit ", text)[1:]:
        bugs = set()
        for m in re.finditer(r"(?im)^\s+(?:closes|fixes)-bug:\s*(.*)$", block):
            bugs |= set(re.findall(r"\d{4,8}", m.group(1)))
        fixed |= bugs
        if re.search(r"(?m)^\d+\t\d+\t.*(/tests?/|test_)", block):
            tested |= bugs
    return len(fixed), len(tested)


@pytest.mark.parametrize("name", ["openstack-nova_2016-03-01_07_git-log-raw-numstat-perceval-style.txt",
                                  "openstack-nova_2016-03_git-log-fuller.txt"])
def test_nova_fix_and_test_counts_equal_an_independent_count(shared, runner, name):
    path = shared / NOVA / name
    out = runner.invoke(args=["git", "import", "--json", str(path)])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    fixed, tested = _independent_counts(path.read_text())
    assert (summary["bugs_fixed"], summary["bugs_with_test_evidence"]) == (fixed, tested)
    assert summary["problems"] == []
    again = json.loads(runner.invoke(args=["git", "import", "--json", str(path)]).output)
    assert again["evidence_new"] == 0 and again["tickets_new"] == 0


def test_states_follow_the_evidence(shared, runner, client):
    log = shared / NOVA / "openstack-nova_2016-03-01_07_git-log-raw-numstat-perceval-style.txt"
    runner.invoke(args=["git", "import", str(log)])
    tested = client.get("/api/v1/tickets?tracker=launchpad&test=yes&limit=200").get_json()
    untested = client.get("/api/v1/tickets?tracker=launchpad&test=no&limit=200").get_json()
    assert tested["total"] == 13
    assert {t["fix_state"] for t in tested["items"]} <= {"merged", "released"}
    # Partial-Bug and Related-Bug only advance a bug: it stays unfixed unless another commit closes it.
    assert any(t["fix_state"] == "none" for t in untested["items"])
    # Fixes older than the 13.0.0.0b3 tag shipped in it.
    released = client.get("/api/v1/tickets?fix=released&limit=200").get_json()
    assert released["total"] > 0
    detail = client.get(f"/api/v1/tickets/{released['items'][0]['id']}").get_json()
    assert any(e["release"] == "13.0.0.0b3" for e in detail["evidence"])
    assert client.get("/api/v1/tickets?fix=done").status_code == 400
    assert client.get("/api/v1/tickets?test=maybe").status_code == 400


def test_cloudstack_subject_keys_close_jira_tickets(shared, runner, client):
    out = json.loads(runner.invoke(args=["git", "import", "--json", str(shared / "corpus/gitlog/cloudstack")]).output)
    assert out["bugs_fixed"] > 50 and out["commits"] == 1175
    items = client.get("/api/v1/tickets?tracker=jira&limit=5").get_json()["items"]
    assert all(t["ref"].startswith("jira:CLOUDSTACK-") for t in items)


def test_tracker_exports(shared, runner, client):
    out = runner.invoke(args=["tickets", "import", "--json", str(shared / "corpus/tickets/jira/eucalyptus-tools")])
    summary = json.loads(out.output)
    assert summary["tickets_new"] >= 100 and summary["evidence_new"] > 0
    fixed = client.get("/api/v1/tickets?tracker=jira&fix=merged&limit=1").get_json()
    assert fixed["total"] > 0  # resolved "Fixed" in Jira
    for sub in ("launchpad", "github", "redmine"):
        result = json.loads(runner.invoke(args=["tickets", "import", "--json",
                                                str(shared / "corpus/tickets" / sub)]).output)
        assert result["tickets_new"] > 0
        for p in result["problems"]:
            assert p["file"] and p["where"] and p["reason"]
    gh = client.get("/api/v1/tickets?tracker=github&fix=merged").get_json()
    assert gh["total"] >= 1  # a merged pull request
    redmine = client.get("/api/v1/tickets?tracker=redmine&limit=50").get_json()
    assert any(t["ref"] == "redmine:9772" for t in redmine["items"])


def test_malformed_ticket_files_are_problems(tmp_path, runner):
    tmp_path = tmp_path / "export"
    tmp_path.mkdir()
    (tmp_path / "broken.json").write_text('{"key": "X-1", "fields": ')
    (tmp_path / "gerrit.json").write_text(")]}'\n" + json.dumps(
        {"_number": 65113, "change_id": "I1", "project": "openstack/devstack", "status": "NEW",
         "subject": "Add ceph support"}))
    summary = json.loads(runner.invoke(args=["tickets", "import", "--json", str(tmp_path)]).output)
    assert summary["tickets_new"] == 1
    [problem] = summary["problems"]
    assert problem["file"].endswith("broken.json") and problem["where"].startswith("line 1")


def test_thread_shows_its_tickets_and_ticket_shows_its_threads(shared, runner, client, import_paths, tmp_path):
    import_paths(shared / "seeds/000_8e50db02ec839059.txt")
    log = tmp_path / "cs.log"
    log.write_text(
        "commit 1111111111111111111111111111111111111111\nAuthor:     Dev <d@x.org>\n"
        "AuthorDate: Mon Oct 5 10:00:00 2015 +0000\nCommit:     Dev <d@x.org>\n"
        "CommitDate: Mon Oct 5 10:00:00 2015 +0000\n"
        "\n    CLOUDSTACK-8915: restore SSH to redundant VPC routers\n\n"
        "3\t1\tsystemvm/patches/debian/config/opt/cloud/bin/cs/CsRoute.py\n"
        "40\t0\ttest/integration/smoke/test_vpc_redundant.py\n")
    assert runner.invoke(args=["git", "import", str(log)]).exit_code == 0
    [thread] = client.get("/api/v1/threads").get_json()["items"]
    detail = client.get(f"/api/v1/threads/{thread['id']}").get_json()
    by_ref = {t["ref"]: t for t in detail["tickets"]}
    assert by_ref["jira:CLOUDSTACK-8915"]["fix_state"] == "merged"
    assert by_ref["jira:CLOUDSTACK-8915"]["test_state"] == "tested"
    assert by_ref["jira:CLOUDSTACK-8697"]["fix_state"] == "unknown"
    ticket = client.get(f"/api/v1/tickets/{by_ref['jira:CLOUDSTACK-8915']['id']}").get_json()
    assert [t["id"] for t in ticket["threads"]] == [thread["id"]]
    assert ticket["evidence"][0]["touches_tests"] is True


def test_git_import_reads_a_repository_folder(tmp_path, runner):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {"GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@x.org", "GIT_COMMITTER_NAME": "A",
           "GIT_COMMITTER_EMAIL": "a@x.org", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    (repo / "tests").mkdir()
    (repo / "tests" / "test_quota.py").write_text("def test(): pass\n")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "Fix quota drift\n\nCloses-Bug: #1500002"],
                   check=True, env=env)
    summary = json.loads(runner.invoke(args=["git", "import", "--json", str(repo)]).output)
    assert (summary["bugs_fixed"], summary["bugs_with_test_evidence"]) == (1, 1)


def test_change_ids_resolve_once_the_change_is_known(runner, client, import_paths, tmp_path):
    change_id = "I" + "ab12" * 10
    (tmp_path / "m.mbox").write_text(
        "From a@b Mon Sep  1 10:00:00 2014\nFrom: Dev <d@x.org>\nDate: Mon, 1 Sep 2014 10:00:00 +0000\n"
        f"Subject: proposed fix\nMessage-ID: <c1@x>\n\nI pushed the fix:\n\nChange-Id: {change_id}\n\n",
        encoding="utf-8")
    import_paths(tmp_path / "m.mbox")
    [thread] = client.get("/api/v1/threads").get_json()["items"]
    assert thread["refs"] == []
    export = tmp_path / "gerrit"
    export.mkdir()
    (export / "change.json").write_text(")]}'\n" + json.dumps(
        {"_number": 712345, "change_id": change_id, "project": "openstack/nova", "status": "MERGED",
         "subject": "Fix quota drift"}))
    runner.invoke(args=["tickets", "import", str(export)])
    detail = client.get(f"/api/v1/threads/{thread['id']}").get_json()
    assert detail["refs"] == ["gerrit:712345"] and detail["tickets"][0]["fix_state"] == "merged"
    ticket = client.get(f"/api/v1/tickets/{detail['tickets'][0]['id']}").get_json()
    assert [t["id"] for t in ticket["threads"]] == [thread["id"]]


def test_ticket_links_from_imported_data_are_only_http(runner, client, import_paths, tmp_path):
    (tmp_path / "m.mbox").write_text(
        "From a@b Mon Sep  1 10:00:00 2014\nFrom: Op <op@x.org>\nDate: Mon, 1 Sep 2014 10:00:00 +0000\n"
        "Subject: see LP\nMessage-ID: <u1@x>\n\nhttps://bugs.launchpad.net/bugs/1500003\n\n", encoding="utf-8")
    import_paths(tmp_path / "m.mbox")
    export = tmp_path / "lp"
    export.mkdir()
    (export / "bug.json").write_text(json.dumps({"id": 1500003, "title": "x", "web_link":
                                                 "https://bugs.launchpad.net/bugs/1500003"}))
    runner.invoke(args=["tickets", "import", str(export)])
    from sqlmodel import select

    from portal.db import session_scope
    from portal.models import Ticket

    with client.application.app_context(), session_scope() as s:
        ticket = s.exec(select(Ticket)).one()
        ticket.url = "javascript:alert(1)"
    [thread] = client.get("/api/v1/threads").get_json()["items"]
    html = client.get(f"/threads/{thread['id']}").get_data(as_text=True)
    assert "javascript:" not in html and 'href="#"' in html
