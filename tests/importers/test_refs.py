import json
from pathlib import Path

import pytest

from importers.refs import extract_refs, tracker_of

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize("row", [json.loads(x) for x in (DATA / "refs-decoys.jsonl").read_text().splitlines()])
def test_refs_and_decoys(row):
    assert extract_refs(row["text"]) == row["ticket_refs"]


def test_bare_numbers_only_for_lists_mapped_to_a_repo():
    text = "Fixed by #61, see also pull request #62."
    assert extract_refs(text) == []
    assert extract_refs(text, repo="openSUSE/Mojo-IOLoop-ReadWriteProcess") == [
        "gh:openSUSE/Mojo-IOLoop-ReadWriteProcess#61", "gh:openSUSE/Mojo-IOLoop-ReadWriteProcess#62"]


def test_jira_keys_need_a_known_project():
    assert extract_refs("CLOUDSTACK-8697 and FOO-12") == ["jira:CLOUDSTACK-8697"]
    assert extract_refs("FOO-12", jira_projects={"FOO"}) == ["jira:FOO-12"]


def test_redmine_hosts_and_poo():
    text = "see https://progress.opensuse.org/issues/170209#note-30 and poo#18006, not https://example.org/issues/5"
    assert extract_refs(text) == ["redmine:170209", "redmine:18006"]
    assert tracker_of("redmine:1") == "redmine" and tracker_of("lp:1") == "launchpad"


def test_order_of_first_appearance_without_duplicates():
    text = "LP: #1500000 then https://bugs.launchpad.net/nova/+bug/1500000 then gerrit https://review.openstack.org/#/c/65113/"
    assert extract_refs(text) == ["lp:1500000", "gerrit:65113"]
