from importers.quotes import recover_history, split_new_text


def test_new_text_drops_quotes_signature_and_list_footer():
    body = (
        "We hit this on Juno too.\n\nOn Mon, Aug 11, 2014 at 9:58 AM, Bob <bob@x.org> wrote:\n"
        "> quota usage drifts\n> after resize\n\n-- \nAlice, ACME cloud\n"
        "_______________________________________________\nOpenStack-operators mailing list\n"
    )
    split = split_new_text(body)
    assert split.new_text == "We hit this on Juno too."
    assert "quota usage drifts" in split.quoted_text and "wrote:" in split.quoted_text
    assert "ACME" not in split.new_text and "mailing list" not in split.new_text


def test_pipermail_next_part_is_not_new_text():
    split = split_new_text("Fixed in master.\n-------------- next part --------------\nAn HTML attachment was scrubbed")
    assert split.new_text == "Fixed in master."


def test_outlook_block_is_quoted_history():
    body = ("Agreed.\n________________________________\nFrom: Sridar K [sk at cisco.com]\n"
            "Sent: Thursday, August 14, 2014 3:07 PM\nTo: dev list\nSubject: Re: x\nHi Aaron, older words\n")
    assert split_new_text(body).new_text == "Agreed."
    [seg] = recover_history(body)
    assert seg.author_name == "Sridar K" and "older words" in seg.text


def test_nested_attributions_become_a_chain():
    body = ("top\nOn 1 May 2014 10:00, Ann <ann@x.org> wrote:\n> ann says\n"
            ">> On 30 Apr 2014 09:00, Ben <ben@x.org> wrote:\n>>> ben says\n")
    segs = recover_history(body)
    assert [(s.author_email, s.text) for s in segs] == [("ann@x.org", "ann says"), ("ben@x.org", "ben says")]


def test_attributions_in_every_language_it_knows_open_quoted_history():
    """Lines are checked for an attribution only when they begin like one: every opening word
    the patterns know still opens quoted history, however it is capitalised or wrapped."""
    from importers.quotes import recover_history, split_new_text

    openings = ["On Mon, Aug 11, 2014 at 9:58 AM, Robert Kukura <rk@example.org> wrote:",
                "Am 11.08.2014, Robert Kukura <rk@example.org> schrieb:",
                "Le 11/08/2014 09:58, Robert Kukura a écrit :", "El 11/08/2014 09:58, Robert Kukura escribió:",
                "Il 11/08/2014 09:58, Robert Kukura ha scritto:", "Op 11-08-2014 09:58, Robert Kukura schreef:",
                "Den 11 aug 2014 09:58, Robert Kukura skrev:", "W dniu 11.08.2014 09:58, Robert Kukura napisał:",
                "ON MON, AUG 11, 2014 AT 9:58 AM, ROBERT KUKURA <rk@example.org> WROTE:",
                "<mailto:rk@example.org>On Mon, Aug 11, 2014, Robert Kukura <rk@example.org> wrote:",
                "On Mon, Aug 11, 2014 at 9:58 AM, Robert Kukura\n<rk@example.org> wrote:",
                "On 11-Aug-2014, at 9:58 am, Robert Kukura <rk@example.org>",
                "ıl 11/08/2014 09:58, Robert Kukura ha scritto:"]  # (a dotless i is an I to re.I)
    for opening in openings:
        body = f"My own words.\n\n{opening}\nquoted words without a marker, once wrapped\n> and quoted ones"
        split = split_new_text(body)
        assert split.new_text == "My own words.", opening
        assert opening.splitlines()[0] in split.quoted_text, opening
        assert [s.author_name.title() for s in recover_history(body)] == ["Robert Kukura"], opening
    body = "Mine.\n\n-----Original Message-----\nFrom: Robert <rk@example.org>\nSent: Monday\nTo: list\n\nquoted"
    assert split_new_text(body).new_text == "Mine." and recover_history(body)[0].author_name == "Robert"
