"""The five seeds, exactly as operators paste them."""

from datetime import UTC, datetime

import pytest

from importers.sources import iter_path

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _read(shared, name):
    return list(iter_path(shared / "seeds" / name, now=NOW))


def test_mod_mbox_message_view_with_its_quoted_history(shared):
    msgs = _read(shared, "000_8e50db02ec839059.txt")
    top = msgs[0]
    assert top.subject == "Re: Blameless post mortem"
    assert top.author_name == "Remi Bergsma"
    assert top.date == datetime(2015, 9, 28, 11, 49, 36, tzinfo=UTC)
    assert top.list_name == "cloudstack-dev"
    assert top.new_text.startswith("There are two VR related issues left:")
    assert "Sebastien Goasguen" not in top.new_text  # the attribution belongs to the quote
    earlier = msgs[1:]
    assert all(m.recovered for m in earlier)
    assert earlier[0].author_name == "Sebastien Goasguen"
    assert earlier[0].new_text.startswith("Also we need to move forward.")
    # The original post-mortem, at the bottom of the quotes, is recovered as the thread's root.
    root = earlier[-1]
    assert root.author_name == "Remi Bergsma"
    assert root.date == datetime(2015, 9, 25, 21, 51, tzinfo=UTC)
    assert root.new_text.startswith("Hi all,\nThis mail is intended to be blameless.")
    assert {m.author_name for m in earlier} >= {"Bharat Kumar", "Sanjeev N", "sebgoa"}
    # Each message answers the one quoted below it.
    for newer, older in zip(msgs, msgs[1:], strict=False):
        assert newer.in_reply_to == older.message_id


@pytest.mark.parametrize(
    ("name", "subject", "author", "email", "date", "list_name"),
    [
        ("001_faecf11778e9ac6e.txt", "[openstack-dev] [Infra][Neutron] Request voting for Tail-f CI account",
         "Luke Gorrie", "luke@tail-f.com", datetime(2014, 7, 22, 9, 6, 14, tzinfo=UTC), "openstack-dev"),
        ("002_6367a2813ae24c50.txt", "[openstack-dev] [Neutron] Simple proposal for stabilizing new features in-tree",
         "Wuhongning", "wuhongning@huawei.com", datetime(2014, 8, 14, 8, 5, 21, tzinfo=UTC), "openstack-dev"),
        ("004_73bcfa887d0a9a86.txt", "[Openstack-operators] A Hypervisor supporting containers",
         "Sean Dague", "sean@dague.net", datetime(2014, 5, 2, 21, 15, 21, tzinfo=UTC), "openstack-operators"),
    ],
)
def test_pipermail_pages(shared, name, subject, author, email, date, list_name):
    top, *earlier = _read(shared, name)
    assert (top.subject, top.author_name, top.author_email, top.date, top.list_name) == (
        subject, author, email, date, list_name)
    assert "More information about" not in top.new_text and "next part" not in top.new_text
    assert earlier, "the quoted history names at least one earlier message"


def test_pipermail_quoted_history_details(shared):
    _top, sean = _read(shared, "001_faecf11778e9ac6e.txt")
    assert (sean.author_name, sean.author_email) == ("Collins, Sean", "sean_collins2@cable.comcast.com")
    assert sean.date == datetime(2014, 7, 21, 22, 53, tzinfo=UTC)
    _top, narayan = _read(shared, "004_73bcfa887d0a9a86.txt")
    # 05/02/2014 read as May 2nd: the reading that falls just before the reply.
    assert narayan.author_name == "Narayan Desai" and narayan.date == datetime(2014, 5, 2, 8, 47, tzinfo=UTC)
    authors = [m.author_name for m in _read(shared, "002_6367a2813ae24c50.txt")[1:]]
    assert authors[:2] == ["Sridar Kandaswamy (skandasw)", "Aaron Rosen"]
    assert "Robert Kukura" in authors and "Salvatore Orlando" in authors


def test_redmine_post_mortem_page(shared):
    [msg] = _read(shared, "003_4d933905ee238ada.txt")
    assert "#175518" in msg.subject
    assert msg.author_name == "livdywan"
    assert msg.list_name == "progress.opensuse.org"
    assert msg.date == datetime(2026, 10, 28, 12, 0, tzinfo=UTC)  # "about 1 month ago" from the clock
    assert "## Five Whys" in msg.new_text and msg.new_text.rstrip().endswith("Use containers to ensure we know "
                                                                             "exactly what is deployed everywhere?")
    # Re-pasting later gives the same identity.
    [again] = list(iter_path(shared / "seeds" / "003_4d933905ee238ada.txt", now=datetime(2027, 1, 1, tzinfo=UTC)))
    assert again.message_id == msg.message_id


def test_pony_mail_message_view_paste():
    """Pony Mail's message view as pasted: the list above From/Subject/Date/List, addresses shortened."""
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "data" / "ponymail-message-view.txt"
    top, earlier = list(iter_path(page, now=NOW))
    assert top.subject == "Re: [DISCUSS] VR default route lost after upgrade to 4.6"
    assert (top.author_name, top.author_email) == ("Rohit Yadav", "rohit.yadav@shapeblue.com")
    assert top.date == datetime(2015, 10, 2, 9, 14, 55, tzinfo=UTC)
    assert top.list_name == "cloudstack-dev"
    assert top.new_text.endswith("CLOUDSTACK-8915 tracks it.")
    assert (earlier.author_name, earlier.author_email, earlier.recovered) == ("Remi Bergsma", "", True)
    assert earlier.new_text.startswith("VPC routers lose their default route")
