from datetime import UTC, datetime

from importers.text import (
    deobfuscate,
    is_reply_subject,
    list_name_from_id,
    message_ids,
    name_key,
    normalize_subject,
    parse_author,
    parse_date,
    repair_message_id,
)


def test_subject_prefixes_and_tags_are_stripped_for_threading():
    assert normalize_subject("Re: AW: [openstack-dev] [nova] Quota drift") == "Quota drift"
    assert normalize_subject("Fwd: RE[2]: [Openstack-operators]  A   Hypervisor") == "A Hypervisor"
    assert normalize_subject("SV: Ventilation") == "Ventilation"
    assert is_reply_subject("[list] Re: x") and not is_reply_subject("Regression in cells")


def test_pipermail_obfuscation_and_author_shapes():
    assert deobfuscate("luke at tail-f.com") == "luke@tail-f.com"
    assert parse_author("werner at thieprojects.ch (Werner Thie)") == ("Werner Thie", "werner@thieprojects.ch")
    assert parse_author("Glyph Lefkowitz glyph@divunal.com") == ("Glyph Lefkowitz", "glyph@divunal.com")
    assert parse_author('"Bergsma, Remi" <Remi@Example.org>') == ("Bergsma, Remi", "remi@example.org")
    assert name_key("Collins, Sean") == name_key("Sean Collins")


def test_dates_with_zone_abbreviations_and_junk():
    assert parse_date("Mon Oct 19 17:19:19 MDT 2020") == datetime(2020, 10, 19, 23, 19, 19, tzinfo=UTC)
    assert parse_date("Sat, 31 Jul 1999 23:34:47 -0400 (EDT)") == datetime(1999, 8, 1, 3, 34, 47, tzinfo=UTC)
    assert parse_date("") is None and parse_date("not a date") is None
    assert parse_date("Thu, 01 Jan 2999 00:00:00 +0000") is None  # far future is a broken clock


def test_message_ids_repaired():
    assert repair_message_id("  <abc@x.org> (added by postmaster)") == "abc@x.org"
    assert repair_message_id("abc@x.org") == "abc@x.org"
    assert repair_message_id("") is None and repair_message_id("<>") is None
    assert message_ids("<a@x> <b@y>\n <c@z>") == ["a@x", "b@y", "c@z"]
    assert list_name_from_id("OpenStack-dev <openstack-dev.lists.openstack.org>") == "openstack-dev"
