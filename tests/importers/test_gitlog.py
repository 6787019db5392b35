from importers.gitlog import Commit, parse_log, ticket_links, touches_tests


def _links(message, **kw):
    commit = Commit(sha="a" * 40, parents=["b" * 40], message=message)
    return [(link.ref, link.kind) for link in ticket_links(commit, jira_projects=kw.get("projects", ["CLOUDSTACK"]),
                                                          repo=kw.get("repo"))]


def test_closing_and_progress_trailers():
    assert _links("Fix drift\n\nCloses-Bug: #1500000\nPartial-Bug: #1500001\nRelated-Bug: 1500002") == [
        ("lp:1500001", "progress"), ("lp:1500002", "progress"), ("lp:1500000", "fix")]
    assert _links("CLOUDSTACK-8799: fixed the default routes") == [("jira:CLOUDSTACK-8799", "fix")]
    assert _links("Handle retries\n\nCloses #61", repo="openSUSE/Mojo-IOLoop-ReadWriteProcess") == [
        ("gh:openSUSE/Mojo-IOLoop-ReadWriteProcess#61", "fix")]
    # A kernel-style Fixes: names a commit, not a ticket.
    assert _links("net: fix leak\n\nFixes: 1234567890ab (\"net: add thing\")") == []
    assert _links("Implements: blueprint cells-v2\nRelated-Blueprint: cells-mapping") == [
        ("bp:cells-v2", "progress"), ("bp:cells-mapping", "progress")]


def test_merges_carry_no_evidence():
    merge = Commit(sha="a" * 40, parents=["b" * 40, "c" * 40], message="Merge \"Fix\"\n\nCloses-Bug: #1")
    assert ticket_links(merge, jira_projects=[]) == []


def test_numstat_raw_renames_and_test_globs():
    text = """commit 1111111111111111111111111111111111111111 (tag: refs/tags/13.0.0)
Author:     A <a@x>
AuthorDate: Mon Mar 7 09:48:52 2016 +0000
Commit:     A <a@x>
CommitDate: Mon Mar 7 09:48:52 2016 +0000

    Reset progress

    Closes-Bug: #1552446

:100644 100644 1c4c211489 6241e8d5a2 M\tnova/compute/manager.py
2\t0\tnova/compute/manager.py
1\t0\t{nova/tests/old => nova/tests/unit}/test_compute.py
"""
    [commit] = list(parse_log(text.splitlines(), "x"))
    assert commit.tags == ["13.0.0"]
    assert commit.files == ["nova/compute/manager.py", "nova/tests/unit/test_compute.py"]
    assert touches_tests(commit)
    assert not touches_tests(Commit(sha="b", parents=[], files=["nova/compute/manager.py"]))


def test_text_that_is_not_git_log_is_one_problem():
    from importers.model import ImportProblem

    items = list(parse_log(["# README", "", "some text", "more text"], "README.md"))
    assert items == [ImportProblem("README.md", "line 1", "not git log output: no `commit <sha>` line before it")]
