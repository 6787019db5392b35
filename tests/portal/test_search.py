"""Search: the query language, facets, snippets, did-you-mean, the page, the API and the CLI, over
real archives imported into a real Whoosh index."""

import json
import re

import pytest

from portal.search import SearchError, parse


@pytest.fixture
def seeded(import_paths, shared, tmp_path):
    (tmp_path / "hostile.mbox").write_text(
        "From x@y Mon Sep  1 10:00:00 2014\nFrom: Mallory <m@evil.example>\nDate: Mon, 1 Sep 2014 10:00:00 +0000\n"
        "Subject: quota <script>alert(1)</script> drift\nMessage-ID: <h@x>\nList-Id: <ops.lists.example.org>\n\n"
        "Our quota usage is broken after resize <img src=x onerror=alert(2)> in production.\n\n", encoding="utf-8")
    summary = import_paths(shared / "seeds", tmp_path / "hostile.mbox")
    assert summary["indexed"] > 0 and "index_problem" not in summary
    return summary


def search(client, **params):
    response = client.get("/api/v1/search", query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_the_query_language_is_parsed_into_words_and_filters():
    q = parse('routers "default route" -vote component:networking list:ops from:operator status:untracked '
              'ref:lp:1234567 -kind:ticket after:2014-05 before:2015')
    assert q.words == 'routers "default route" -vote'
    assert q.filters == {"component": ["networking"], "list": ["ops"], "from": ["operator"], "status": ["untracked"],
                         "ref": ["lp:1234567"]}
    assert q.excluded == {"kind": ["ticket"]}
    assert (q.after.isoformat(), q.before.isoformat()) == ("2014-05-01T00:00:00", "2015-01-01T00:00:00")
    with pytest.raises(SearchError):
        parse("after:2014-13")


def test_the_obvious_query_finds_the_obvious_thread_first(seeded, client):
    result = search(client, q="VPC default route virtual router", kind="thread")
    assert result["hits"][0]["title"] == "Blameless post mortem"
    assert "<mark>" in result["hits"][0]["snippet"]
    openqa = search(client, q="isotovideo", kind="thread")
    assert openqa["hits"][0]["title"].startswith("Action #175518")
    code = search(client, q="CLOUDSTACK-8697")
    assert any(h["title"] == "Blameless post mortem" for h in code["hits"])
    assert search(client, q="ref:jira:CLOUDSTACK-8697")["total"] >= 1


def test_facets_count_and_filters_narrow(seeded, client):
    everything = search(client, q="router")
    assert everything["total"] > 1
    kinds = everything["facets"]["kind"]
    assert sum(kinds.values()) == everything["total"]
    narrowed = search(client, q="router", kind="painpoint")
    assert narrowed["total"] == kinds.get("painpoint", 0) < everything["total"]
    lists = everything["facets"]["list"]
    name, count = next(iter(lists.items()))
    assert search(client, q=f"router list:{name}")["total"] == count
    assert search(client, q="router -kind:thread")["total"] == everything["total"] - kinds["thread"]
    assert search(client, q="router after:2030")["total"] == 0
    years = everything["facets"]["year"]
    assert all(re.fullmatch(r"\d{4}", y) for y in years)


def test_typos_get_a_suggestion_and_markup_never_runs(seeded, client):
    typo = search(client, q="isotovido")
    assert typo["total"] == 0 and typo["suggestion"] == "isotovideo"
    hostile = search(client, q="quota drift")
    hit = next(h for h in hostile["hits"] if h["kind"] == "thread")
    assert "<" not in re.sub(r"</?mark>", "", hit["snippet"])  # everything but the marks is escaped
    assert "&lt;script&gt;" in hit["title"] or "<script>" in hit["title"]  # titles are data; pages escape them
    page = client.get("/search", query_string={"q": "quota drift"}).get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page and "<img src=x" not in page and "<mark>" in page


def test_the_page_shows_facets_paging_help_and_errors(seeded, client):
    page = client.get("/search", query_string={"q": "router"}).get_data(as_text=True)
    assert 'class="facets"' in page and "How to search" in page and "more like this" in page
    bad = client.get("/search", query_string={"q": "router after:2014-13"})
    assert bad.status_code == 422 and 'id="q-error"' in bad.get_data(as_text=True)
    assert "Ask what operators said" in client.get("/search").get_data(as_text=True)
    key = "thread:" + str(search(client, q="Blameless", kind="thread")["hits"][0]["id"])
    like = client.get("/search", query_string={"like": key}).get_data(as_text=True)
    assert "More like this" in like


def test_api_and_cli_check_their_parameters(seeded, client, runner, app):
    assert client.get("/api/v1/search?q=x&sort=random").status_code == 400
    assert client.get("/api/v1/search?q=x&page=0").status_code == 400
    assert client.get("/api/v1/search?q=after:20x").get_json()["errors"]["q"].startswith("dates are")
    out = runner.invoke(args=["search", "--json", "VPC", "default", "route"])
    data = json.loads(out.output)
    assert set(data) >= {"total", "facets", "hits"} and data["hits"][0]["title"] == "Blameless post mortem"
    text = runner.invoke(args=["search", "isotovido"]).output
    assert "did you mean: isotovideo" in text
    app.config["PRIVATE"] = True
    assert client.get("/api/v1/search?q=x").status_code == 401


def test_rebuild_swaps_in_a_fresh_index_and_imports_update_it(seeded, client, runner, import_paths, tmp_path):
    before = json.loads(runner.invoke(args=["index", "stats"]).output)
    assert runner.invoke(args=["index", "rebuild"]).exit_code == 0
    after = json.loads(runner.invoke(args=["index", "stats"]).output)
    assert after["documents"] == before["documents"]
    if after["generation"] != "postgresql":  # Whoosh writes a new generation and swaps it in
        assert after["generation"] != before["generation"]
    assert search(client, q="isotovideo")["total"] >= 1
    (tmp_path / "new.mbox").write_text(
        "From x@y Mon Sep  1 10:00:00 2014\nFrom: Ana <ana@telco.example>\nDate: Mon, 1 Sep 2014 10:00:00 +0000\n"
        "Subject: zanzibar cluster outage\nMessage-ID: <z@x>\n\nThe zanzibar cells are broken, an outage.\n\n",
        encoding="utf-8")
    import_paths(tmp_path / "new.mbox")
    found = search(client, q="zanzibar")
    assert {h["kind"] for h in found["hits"]} == {"thread", "painpoint"}


def test_saved_searches_are_followed_as_atom_feeds(seeded, client, runner, app):
    from xml.etree import ElementTree

    runner.invoke(args=["users", "create", "--email", "dev@x.org", "--role", "developer"])
    token = runner.invoke(args=["tokens", "create", "--email", "dev@x.org"]).output.strip().splitlines()[-1]
    assert client.get("/saved").status_code == 302
    app.config["WTF_CSRF_ENABLED"] = True
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/signin").get_data(as_text=True)).group(1)
    client.post("/signin", data={"token": token, "csrf_token": csrf})
    page = client.get("/search", query_string={"q": "router", "kind": "painpoint"}).get_data(as_text=True)
    assert "Save this search" in page
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    bad = client.post("/saved", data={"name": "", "q": "router", "csrf_token": csrf})
    assert bad.status_code == 422 and 'id="save-error"' in bad.get_data(as_text=True)
    saved = client.post("/saved", data={"name": "router pain", "q": "router", "kind": "painpoint", "csrf_token": csrf},
                        follow_redirects=True).get_data(as_text=True)
    feed_url = re.search(r"Feed: <code>(http[^<]+)</code>", saved).group(1)
    assert "router pain" in saved
    assert "Feed:" not in client.get("/saved").get_data(as_text=True)  # the secret is shown once
    client.post("/signout", data={"csrf_token": csrf})
    app.config["PRIVATE"] = True  # a feed reader has no session: the secret in the URL is enough
    feed = client.get(feed_url.replace("http://localhost", ""))
    assert feed.status_code == 200 and feed.headers["Content-Type"].startswith("application/atom+xml")
    entries = ElementTree.fromstring(feed.data).findall("{http://www.w3.org/2005/Atom}entry")
    assert entries and all("/painpoints/" in e.find("{http://www.w3.org/2005/Atom}link").get("href")
                           for e in entries)
    assert client.get("/saved/not-a-secret.atom").status_code == 404


def test_developers_changes_to_pain_points_reach_the_index(seeded, client, runner):
    runner.invoke(args=["users", "create", "--email", "dev@x.org", "--role", "developer"])
    token = runner.invoke(args=["tokens", "create", "--email", "dev@x.org"]).output.strip().splitlines()[-1]
    auth = {"Authorization": f"Bearer {token}"}
    hit = search(client, q="isotovideo", kind="painpoint")["hits"][0]
    client.post(f"/api/v1/painpoints/{hit['id']}/tickets", json={"link": "lp:1999999"}, headers=auth)
    assert search(client, q="ref:lp:1999999", kind="painpoint")["hits"][0]["id"] == hit["id"]
    other = search(client, q="Blameless", kind="painpoint")["hits"][0]["id"]
    client.post(f"/api/v1/painpoints/{other}/merge", json={"into": hit["id"]}, headers=auth)
    assert [h["id"] for h in search(client, q="Blameless", kind="painpoint")["hits"]] == [hit["id"]]


def _docs(n, word="quota"):
    from datetime import datetime

    topics = ["quota usage drifts after resize", "l3-agent restarts drop floating IPs",
              "volumes stuck detaching with ceph", "scheduler ignores host aggregates"]
    for i in range(n):
        yield {"key": f"thread:{i}", "kind": "thread", "id": str(i), "title": f"{topics[i % 4]} {i}",
               "text": f"{topics[i % 4]} on cluster {i % 37}; {word} seen by operator {i % 11}",
               "author": f"op{i % 11}@example.org", "role": ["operator"], "list": f"list-{i % 3}",
               "components": ["nova"] if i % 2 else ["neutron"], "refs": [], "status": "",
               "date": datetime(2014 + i % 5, 1 + i % 12, 1), "impact": (i % 7) * 1.5}


def test_bulk_index_writes_in_several_processes_equal_one_and_a_lost_batch_is_an_error(tmp_path):
    """Rebuilds and large imports write the index in several processes; the index they leave
    answers like one written by a single process, and documents a writer process lost make the
    write fail (the live index stays) instead of quietly missing from search."""
    from datetime import date

    from portal.search import BULK_FROM, IndexWriteError, WhooshIndex

    n = BULK_FROM + 200
    one, several = WhooshIndex(tmp_path / "one", procs=1), WhooshIndex(tmp_path / "two", procs=2)
    assert one.rebuild(_docs(n)) == several.rebuild(_docs(n)) == n
    for q in ("quota", "l3-agent", "ceph component:neutron", "floating list:list-1 after:2016"):
        a, b = one.search(parse(q)), several.search(parse(q))
        assert a["total"] == b["total"] > 0 and a["facets"] == b["facets"]
        # The same scores (synthetic documents tie a lot, and ties may come in another order).
        assert [h["score"] for h in a["hits"]] == [h["score"] for h in b["hits"]]
    # The ranking reads field lengths from its own per-segment lists: the same scores as Whoosh's BM25F.
    from whoosh.qparser import MultifieldParser, OrGroup

    from portal.postings import _Ranking

    for index in (one, several):
        ix = index.open()
        query = MultifieldParser(["title", "text"], ix.schema, group=OrGroup).parse("quota l3-agent ceph")
        with ix.searcher() as plain, ix.searcher(weighting=_Ranking()) as ours:
            expected = [(h.docnum, round(h.score, 9)) for h in plain.search(query, limit=50)]
            assert [(h.docnum, round(h.score, 9)) for h in ours.search(query, limit=50)] == expected
            assert len(expected) == 50
    for index in (one, several):  # sorting by impact and by date reads the columns across segments
        hits = index.search(parse("quota"), sort="impact", per_page=200)["hits"]
        by_impact = [(int(h["id"]) % 7) * 1.5 for h in hits]
        assert by_impact == sorted(by_impact, reverse=True) and by_impact[0] == 9.0 and by_impact[-1] < 9.0
        by_date = [h["date"] for h in index.search(parse("quota"), sort="date", per_page=50)["hits"]]
        assert by_date == sorted(by_date, reverse=True) and by_date[0].startswith("2018-")
    # A bulk update replaces documents in place (no duplicates) across the writer processes.
    assert several.update(_docs(n, word="grenade"), expected=n) == n
    assert several.search(parse("grenade"))["total"] == n and several.search(parse("quota"))["total"] == n // 4
    assert several.searcher().doc_count() == n
    live = several.current()
    broken = list(_docs(n))
    broken[500]["date"] = date(2016, 1, 1)  # not a datetime: the writer process given this batch dies on it
    with pytest.raises(IndexWriteError, match=r"1 of 2 index writer processes failed") as failure:
        several.rebuild(broken)
    assert str(tmp_path / "two") in str(failure.value) and "exit code 1" in str(failure.value)
    assert several.current() == live and several.search(parse("grenade"))["total"] == n
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["CURRENT", live.name]


def test_a_large_import_indexes_settled_threads_while_grouping_and_leaves_the_index_a_rebuild_would(
        app, import_paths, session, tmp_path):
    """An import large enough for the bulk writer hands it the threads grouping leaves alone (not
    pain, in no pain point) before grouping, and the rest after: every thread and pain point is
    in the index once, with what a rebuild from the database writes (pain threads carry the
    status of the pain point grouping put them in)."""
    from sqlmodel import select

    from portal.cli import PARALLEL_FROM_BYTES
    from portal.demo import write_mbox
    from portal.models import PainPoint, PainPointMember, Thread
    from portal.painpoints import settled_threads
    from portal.search import WhooshIndex, index_for

    app.config.update(INDEX_PROCS=2, SEARCH_BACKEND="whoosh")  # (the PostgreSQL leg too: its database, Whoosh)
    mbox = write_mbox(tmp_path / "big.mbox", 3200, seed=11)
    assert mbox.stat().st_size > PARALLEL_FROM_BYTES
    summary = import_paths(mbox)
    assert "index_problem" not in summary and "index_settled" in summary["seconds"]
    threads = session.exec(select(Thread.id).order_by(Thread.id)).all()
    points = session.exec(select(PainPoint.id).where(PainPoint.merged_into_id.is_(None), PainPoint.reports > 0)).all()
    members = set(session.exec(select(PainPointMember.thread_id)).all())
    assert summary["indexed"] == len(threads) + len(points) and len(members) > 100

    def stored(index):
        with index.open().searcher() as searcher:
            docs = [dict(d) for d in searcher.all_stored_fields()]
        assert len(docs) == len({d["key"] for d in docs})
        return {d["key"]: d for d in docs}

    with app.app_context():
        imported = stored(index_for(app.config))
        again = WhooshIndex(tmp_path / "rebuilt", procs=1)
        from portal.search import painpoint_documents, thread_documents

        again.rebuild([*thread_documents(session), *painpoint_documents(session)])
    assert imported == stored(again)
    assert {imported[f"thread:{t}"]["status"] for t in members} - {""}  # pain threads: their point's status
    # The settled threads' writer processes wrote their segments while grouping ran; new ones wrote the rest.
    with app.app_context():
        assert len(index_for(app.config).open()._segments()) > 2
    # A thread a developer put in a pain point is not settled, though not judged pain.
    calm = [t for t in threads if t not in members][:3]
    assert settled_threads(session, calm) == calm
    session.add(PainPointMember(pain_point_id=points[0], thread_id=calm[0], how="manual", by="dev@example.org"))
    session.commit()
    assert settled_threads(session, calm) == calm[1:]


def test_match_sets_from_posting_lists_are_exact_and_hold_the_ranking_to_them(tmp_path):
    """Totals and facets come from whole posting lists combined as sets. On an index of several
    segments with deleted documents they must be exactly the documents the query means: Whoosh's
    own walk for queries without exclusions, and its walk of the included part minus its walk of
    the excluded part otherwise (Whoosh's walk of an exclusion lets excluded documents through
    once a segment has deletions, so the ranking is held to the exact set). Queries the sets do not
    know (phrases, prefixes, dates) are left to Whoosh."""
    from portal.postings import match_set, scored_matches
    from portal.search import BULK_FROM, WhooshIndex, whoosh_query

    n = BULK_FROM + 200
    index = WhooshIndex(tmp_path / "ix", procs=2)
    index.rebuild(_docs(n))
    index.update(_docs(300, word="grenade"), expected=300)  # replaces 300: deletions in older segments
    index.update([], ["thread:7", "thread:1100"])
    rare = list(_docs(3, word="zircon basalt"))
    rare[2]["text"] = rare[2]["text"].replace("basalt", "")
    rare[0]["components"] = ["nova", "neutron"]  # facets with several values per document count apart
    index.update(rare)
    searcher = index.searcher()
    assert len(searcher._ix._segments()) > 1 and searcher.doc_count() < searcher.doc_count_all()

    def walk(text):
        return set(searcher.docs_for_query(whoosh_query(searcher.schema, parse(text))))

    cases = {"quota": walk("quota"), "quota usage": walk("quota usage"), "l3-agent restarts": walk("l3-agent restarts"),
             "component:nova": walk("component:nova"), "kind:thread": walk("kind:thread"), "": walk(""),
             "ceph component:neutron list:list-2": walk("ceph component:neutron list:list-2"),
             "nosuchword": set(), "-quota": set(), "zircon basalt": walk("zircon basalt"), "1* ceph": walk("1* ceph"),
             "zircon OR basalt": walk("zircon OR basalt"),
             "quota -grenade": walk("quota") - walk("grenade"),
             "floating -cluster": set(), "floating -operator": set(),  # every document has these words
             "floating -ceph": walk("floating"),
             "-component:nova quota": walk("quota") - walk("component:nova"),
             "quota -list:list-0 -list:list-1": walk("quota") - walk("list:list-0") - walk("list:list-1"),
             "quota after:2016": walk("quota after:2016"), "ceph after:2016-03 before:2017": walk(
                 "ceph after:2016-03 before:2017"), "floating after:2014-02-01 before:2014-03-01": walk(
                 "floating after:2014-02-01 before:2014-03-01"), "quota before:2015-06": walk("quota before:2015-06")}
    for text, expected in cases.items():
        found = match_set(searcher, whoosh_query(searcher.schema, parse(text)))
        assert found is not None and found.tolist() == sorted(expected), text
        result = index.search(parse(text), per_page=2000)
        assert result["total"] == len(expected) == len(result["hits"]), text
        assert sum(result["facets"]["kind"].values()) == len(expected)
        stored = [searcher.stored_fields(d) for d in expected]  # facets counted the slow way
        for facet, of in (("list", lambda f: [f["list"]]), ("component", lambda f: f["components"].split(",")),
                          ("year", lambda f: [str(f["date"].year)]), ("kind", lambda f: [f["kind"]])):
            counts: dict[str, int] = {}
            for f in stored:
                for value in of(f):
                    counts[value] = counts.get(value, 0) + 1
            assert result["facets"][facet] == counts, (text, facet)
    assert 0 < len(cases["quota -grenade"]) < len(cases["quota"]) < n
    # Short lists combine by sorting, long ones over arrays as long as the segment: both are here.
    assert [len(cases["zircon basalt"]), len(cases["zircon OR basalt"])] == [2, 3]
    assert walk("floating -cluster"), "Whoosh's walk of an exclusion no longer lets documents through: simplify"
    # Ranking over whole posting lists gives Whoosh's own ranking: the same documents in the same
    # order with the same scores (held to the exact set where Whoosh's walk lets excluded ones in).
    from portal.postings import ranked

    for text in ("quota", "quota usage", "l3-agent restarts", "floating ceph volumes", "grenade component:nova",
                 "quota -grenade", "cluster list:list-1 kind:thread", "operator", "nosuchword quota",
                 "quota after:2016", "ceph after:2016-03 before:2017", "quota -grenade after:2017",
                 "zircon basalt", "zircon OR basalt", "zircon OR basalt OR volumes",
                 "quota -component:nova", "-component:nova", "component:nova list:list-1", "", "kind:thread",
                 "quot*", "zirc*", "cl*ster ceph", "volume* -quota", "1*", "2* quota", "op* -3*"):
        query = whoosh_query(searcher.schema, parse(text))
        allowed = set(match_set(searcher, query).tolist())
        theirs = [(round(h.score, 9), h.docnum) for h in searcher.search(query, limit=40, filter=allowed or None)]
        ours = ranked(searcher, query, 40)
        assert ours is not None and [(round(score, 9), d) for score, d in ours] == theirs, text
        assert [h["id"] for h in index.search(parse(text), per_page=40)["hits"]] == \
            [int(searcher.stored_fields(d)["id"]) for _, d in ours], text
    # Sorted by date or impact, from the sort columns: Whoosh's order (newest or highest first,
    # lower document numbers first among equals), held to the exact set.
    import numpy as np
    from whoosh.sorting import FieldFacet

    from portal.postings import top_by_column

    for text in ("quota", "quota -grenade", "-component:nova quota", "zircon OR basalt", "", "floating after:2016"):
        query = whoosh_query(searcher.schema, parse(text))
        found = match_set(searcher, query)
        allowed = set(found.tolist())
        for column in ("date", "impact"):
            theirs = [h.docnum for h in searcher.search(query, limit=40, filter=allowed,
                                                         sortedby=FieldFacet(column, reverse=True))]
            ours = [d for _, d in top_by_column(searcher, column, found, np.zeros(len(found)), 40)]
            assert ours == theirs and len(ours) == min(40, len(found)), (text, column)
    for text in ('"quota usage"', '"quota usage" grenade'):
        assert ranked(searcher, whoosh_query(searcher.schema, parse(text)), 20) is None, text
    assert 0 < len(cases["floating after:2014-02-01 before:2014-03-01"]) < len(cases["quota before:2015-06"])
    for text in ('"quota usage"',):
        assert match_set(searcher, whoosh_query(searcher.schema, parse(text))) is None, text
        assert index.search(parse(text))["total"] == len(walk(text)) > 0
    # A phrase's documents come from Whoosh's walk, ranked by its words' BM25F from the arrays: the
    # same documents, best words first. Inside an exclusion the words would exclude too much, so
    # Whoosh ranks it, and the set is still exact.
    from portal.search import _phrases_ranked

    phrase = whoosh_query(searcher.schema, parse('"quota usage" grenade'))
    ids, scores = _phrases_ranked(searcher, phrase, list(searcher.docs_for_query(phrase)))
    assert sorted(ids.tolist()) == sorted(walk('"quota usage" grenade')) and len(ids) > 0
    words = dict(zip(*scored_matches(searcher, whoosh_query(searcher.schema, parse("quota usage grenade")))))
    assert [round(words[d], 9) for d in ids.tolist()] == [round(x, 9) for x in scores.tolist()]
    hits = index.search(parse('"quota usage" grenade'), per_page=2000)["hits"]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    # No document says "usage quota", but its words are in every document with "drifts".
    relaxing = whoosh_query(searcher.schema, parse('drifts -"usage quota"'))
    assert _phrases_ranked(searcher, relaxing, list(searcher.docs_for_query(relaxing))) is None
    assert index.search(parse('drifts -"usage quota"'))["total"] == len(walk("drifts")) > 0
    # A phrase with an exclusion is Whoosh's to walk: the hits still leave out every excluded one.
    expected = walk('"quota usage"') - walk("grenade")
    hits = index.search(parse('"quota usage" -grenade'), per_page=2000)["hits"]
    assert 0 < len(hits) < len(walk('"quota usage"'))
    assert sorted(int(searcher.document_number(key=f"thread:{h['id']}")) for h in hits) == sorted(expected)


def test_index_processes_and_memory_are_checked_when_the_app_starts(tmp_path):
    from portal import create_app

    base = {"DATA_DIR": str(tmp_path), "DATABASE_URL": "", "SECRET_KEY": "x"}
    assert create_app({**base, "INDEX_PROCS": "3"}).config["INDEX_PROCS"] == 3
    assert create_app({**base, "INDEX_PROCS": "auto"}).config["INDEX_PROCS"] >= 1
    for bad in ("many", "0", "-2", "2.5", "²"):  # (a digit to isdigit(), not to int())
        with pytest.raises(RuntimeError, match="EARSHOT_INDEX_PROCS is 'auto' or a number"):
            create_app({**base, "INDEX_PROCS": bad})
    # The writers' postings memory likewise, and the index is made with it.
    from portal.search import index_for

    app = create_app({**base, "INDEX_MEMORY_MB": "96"})
    assert app.config["INDEX_MEMORY_MB"] == 96 and index_for(app.config).limitmb == 96
    assert index_for(create_app(base).config).limitmb == 48
    for bad in ("lots", "4", "-1", "64.5", "", "⁹⁶"):
        with pytest.raises(RuntimeError, match="EARSHOT_INDEX_MEMORY_MB is a number of megabytes"):
            create_app({**base, "INDEX_MEMORY_MB": bad})


def test_posting_arrays_beside_each_segment_equal_whooshs_blocks(tmp_path):
    """Queries read a term's postings from arrays written beside each segment (new segments and
    merges alike): for every term of every field they hold what Whoosh's own blocks hold.
    Segments written without them (an index from an earlier Earshot) are still read through the
    blocks, and the caches let go of segments that are gone."""
    from whoosh import index as whoosh_index

    from portal import postings as p
    from portal import search as s

    index = s.WhooshIndex(tmp_path / "ix", procs=2)
    index.rebuild(_docs(s.BULK_FROM + 200))
    index.update(_docs(300, word="grenade"), expected=300)
    index.update(_docs(40, word="ceilometer"))  # single-process writer; merges the small segments
    searcher = index.searcher()
    readers = [sub.reader() for sub, _ in searcher.leaf_searchers()]
    assert len(readers) > 1 and all(p._side_postings(r) is not None for r in readers)
    checked = 0
    for reader in readers:
        assert "text" in p._side_postings(reader).directory and "key" not in p._side_postings(reader).directory
        for fieldname in ("title", "text", "components", "list", "kind", "date", "role", "spell", "key"):
            for btext in reader.lexicon(fieldname):
                ours = p._postings(reader, fieldname, btext, weights=True)
                theirs = p._block_postings(reader, fieldname, btext, weights=True)
                assert ours[0].tolist() == theirs[0].tolist() and ours[1].tolist() == theirs[1].tolist()
                checked += 1
    assert checked > 500
    for reader in readers:  # field lengths read in one piece: what Whoosh gives document by document
        for fieldname in ("title", "text"):
            whole = p._read_lengths(reader, fieldname)
            assert len(whole) == reader.doc_count_all()
            assert all(whole[i] == (reader.doc_field_length(i, fieldname) or 1) for i in range(len(whole)))
    weighted = [r for r in readers if any(w for table in p._side_postings(r).tables.values()
                                          for _, _, w in table.values())]
    assert weighted, "no term with a weight other than 1: the weights were never compared"
    # An index written by Whoosh's own codec into one compound file per segment: no arrays.
    (tmp_path / "plain").mkdir()
    plain = whoosh_index.create_in(str(tmp_path / "plain"), s.schema())
    with plain.writer() as writer:
        for doc in _docs(50):
            writer.add_document(**s._fields(doc))
    with plain.searcher() as old:
        reader = old.reader()
        assert p._side_postings(reader) is None
        assert p._postings(reader, "text", "ceph", weights=False)[0].tolist() == list(range(2, 50, 4))
    # A rebuild replaces every segment: the next searcher drops the old ones from the caches.
    old_keys = [k for k in p._per_segment if k[0].startswith(str(tmp_path / "ix"))]
    assert old_keys
    index.rebuild(_docs(60))
    index.search(parse("quota"))
    assert not set(old_keys) & set(p._per_segment)
    assert index.search(parse("ceph"))["total"] == 15


def test_sorting_by_date_puts_undated_documents_last(tmp_path, client, seeded):
    """Pain points and tickets may have no date: sorted newest first they come last (the date
    column stores a missing date as the largest number, which once overflowed the sort)."""
    from portal.search import WhooshIndex

    index = WhooshIndex(tmp_path / "ix")
    docs = list(_docs(30))
    for doc in docs[:3]:
        del doc["date"]
    index.rebuild(docs)
    hits = index.search(parse("quota"), sort="date", per_page=30)["hits"]
    assert [h["date"] for h in hits[-3:]] == [None, None, None] and all(h["date"] for h in hits[:-3])
    assert [h["date"] for h in hits[:-3]] == sorted((h["date"] for h in hits[:-3]), reverse=True)
    assert index.search(parse("quota"), sort="impact")["total"] == 30
    # Through the API, on the demo-like seeded archive with pain points and tickets.
    for sort in ("date", "impact", "relevance"):
        response = client.get("/api/v1/search", query_string={"q": "quota", "sort": sort})
        assert response.status_code == 200 and response.get_json()["total"] > 0, sort


def test_unreadable_posting_arrays_are_reported_and_search_still_answers(tmp_path, caplog):
    """A damaged arrays file (a disk error, a half-copied index) never breaks search: the segment
    is read through Whoosh's blocks, with the same answers, and the log names the file and says
    how to mend it."""
    import logging

    from portal import postings as p
    from portal import search as s

    index = s.WhooshIndex(tmp_path / "ix")
    index.rebuild(_docs(60))
    expected = index.search(parse("ceph"))
    reader = index.searcher().reader()
    storage, segment = reader.storage(), reader.segment()
    base, length = storage.a.range(segment.make_filename(p.SIDE_EXT))
    path = index.current() / segment.make_filename(segment.COMPOUND_EXT)
    p.forget_segments(index.folder, index.current(), set())  # as after a rebuild: nothing cached
    data = bytearray(path.read_bytes())
    data[base + length - 5:base + length] = b"XXXXX"  # the trailer's mark
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="portal.postings"):
        again = s.WhooshIndex(tmp_path / "ix").search(parse("ceph"))
    assert p._side_postings(reader) is None
    assert again["total"] == expected["total"] == 15 and again["facets"] == expected["facets"]
    assert [h["id"] for h in again["hits"]] == [h["id"] for h in expected["hits"]]
    assert str(path) in caplog.text and "flask index rebuild" in caplog.text


TRICKY_TEXTS = [
    "nova-compute and the l3-agent restart; CLOUDSTACK-8697 x.y.z:w/v a-b the-of -- .. //",
    "a-b-c-d the a.b I/O 10.0.0.1:8774/v2.1 http://example.org/a/b?c=d", "a an the of", "", "   ",
    "Ünïcödé-wörds İstanbul ǅemal STRASSE straße ÆSIR ½-half 3.14 ３２ 中文-文字 日本語",
    "Running runs ran runner; quotas QUOTA quota's drifted drifting", "x " * 50 + "y",
    "_under_score__ __init__ self.pool.add(item) foo::bar re-re-re-resize",
]


def _fast_and_plain_fields():
    from whoosh.fields import TEXT

    from portal.search import _analyzer, _fast_text, _spelling_analyzer

    return [(_fast_text("words", stored=True), TEXT(analyzer=_analyzer(), stored=True)),
            (_fast_text("words", stored=True, field_boost=3.0),
             TEXT(analyzer=_analyzer(), stored=True, field_boost=3.0)),
            (_fast_text("spell"), TEXT(analyzer=_spelling_analyzer(), phrase=False))]


def test_fast_text_fields_index_exactly_what_their_analyzers_make():
    """Titles, texts and spelling words are indexed without Whoosh's token stream: the same
    terms, frequencies, weights and positions (phrases depend on them) as the field's analyzer."""
    for fast, plain in _fast_and_plain_fields():
        for text in TRICKY_TEXTS:
            assert list(fast.index(text)) == list(plain.index(text)), text
        # Anything it does not know (a list of words, options) goes to Whoosh's own way.
        assert list(fast.index(["quota", "drift"])) == list(plain.index(["quota", "drift"]))
    fast, plain = _fast_and_plain_fields()[0]
    positions = {t: fast.format.decode_positions(v) for t, _, _, v in fast.index(TRICKY_TEXTS[0])}
    assert positions[b"nova-comput"] == [0] and positions[b"nova"] == [1] and positions[b"comput"] == [2]


def test_fast_text_fields_match_their_analyzers_on_real_list_messages(shared):
    texts = [p.read_text(errors="replace") for p in sorted((shared / "corpus/labeled-ops/msgs").glob("*.txt"))]
    assert len(texts) > 20
    for fast, plain in _fast_and_plain_fields():
        for text in texts:
            assert list(fast.index(text)) == list(plain.index(text))


def _all_postings(ix):
    """Every term of every field with its postings, term statistics and stored documents."""
    out = {}
    with ix.searcher() as searcher:
        reader = searcher.reader()
        for fieldname, btext in reader.all_terms():
            matcher = reader.postings(fieldname, btext)
            postings = []
            while matcher.is_active():
                # (a posting without a value reads as None from a block, "" when inlined)
                postings.append((matcher.id(), matcher.weight(), matcher.value() or None))
                matcher.next()
            info = reader.term_info(fieldname, btext)
            out[(fieldname, btext)] = (postings, info.weight(), info.doc_frequency(), info.max_weight())
        stored = [dict(d) for d in reader.all_stored_fields()]
        lengths = [(reader.doc_field_length(i, "text"), reader.doc_field_length(i, "title"))
                   for i in range(reader.doc_count_all())]
    return out, stored, lengths


def test_the_term_pool_writes_the_same_index_as_whooshs_posting_pool(tmp_path):
    """Segment writers gather postings by term (TermPool) instead of Whoosh's pickled runs of
    postings: with runs spilled to disk, deletions and merges, the index holds exactly the
    terms, postings, statistics and documents Whoosh's own pool writes."""
    from whoosh import index as whoosh_index

    from portal import search as s
    from portal.postings import INLINE_LIMIT, TermPool

    docs = list(_docs(400)) + list(_docs(60, word="grenade"))
    for doc in docs[400:]:
        doc["key"] = f"thread:{int(doc['id']) + 1000}"
    written = {}
    for name in ("whoosh", "terms"):
        (tmp_path / name).mkdir()
        ix = whoosh_index.create_in(str(tmp_path / name), s.schema())
        # Whoosh's own pool cannot merge segments with inlined postings (its value of an inlined
        # posting without one is "", which it refuses): its segments keep every posting in blocks.
        codec = s._SideCodec() if name == "terms" else s._SideCodec(inlinelimit=1)
        for part in (docs[:300], docs[300:]):  # two segments, merged by the second commit
            writer = ix.writer(codec=codec, limitmb=0.05)
            if name == "terms":
                TermPool.install(writer)
                assert isinstance(writer.pool, TermPool)
            for doc in part:
                writer.update_document(**s._fields(doc))
            if name == "terms":
                assert len(writer.pool.runs) > 2  # spilled: the runs are merged by term
            writer.commit()
        writer = ix.writer(codec=codec)
        if name == "terms":
            TermPool.install(writer)
        writer.delete_by_term("key", "thread:7")
        writer.commit(optimize=True)  # one segment: every posting re-added through the pool
        written[name] = _all_postings(ix)
    assert written["terms"] == written["whoosh"]
    postings = written["terms"][0]
    assert len(postings) > 300 and any(len(p[0]) > 128 for p in postings.values())  # several blocks
    # Rare terms' postings (fewer than INLINE_LIMIT) live in their term's entry: read back alike.
    with ix.searcher() as searcher:
        reader = searcher.reader()
        inlined = [t for t in reader.all_terms() if reader.term_info(*t).is_inlined()]
        assert inlined and all(len(postings[t][0]) < INLINE_LIMIT for t in inlined)
    assert any(w != 1.0 for p in postings.values() for _, w, _ in p[0])


def test_the_term_pool_puts_documents_added_out_of_order_in_order(tmp_path):
    from whoosh.filedb.filestore import FileStorage

    from portal.postings import TermPool

    pool = TermPool(FileStorage(str(tmp_path)), limitmb=0.0001)
    for docnum in (5, 2, 9, 1):
        pool.add(("text", b"quota", docnum, float(docnum), b"v%d" % docnum))
        pool.add(("kind", b"thread", docnum, 1.0, None))
    terms = [(f, t, list(d), list(w), v) for f, t, d, w, v in pool.iter_terms()]
    assert terms == [("kind", b"thread", [1, 2, 5, 9], [1.0] * 4, [b""] * 4),  # (no value: as Whoosh writes it)
                     ("text", b"quota", [1, 2, 5, 9], [1.0, 2.0, 5.0, 9.0], [b"v1", b"v2", b"v5", b"v9"])]
    assert len(pool.runs) == 8 and len(list(tmp_path.iterdir())) == 8  # one run per posting
    pool.cleanup()
    assert not list(tmp_path.iterdir())


def test_the_term_pool_lets_go_of_each_term_it_read_back_from_a_run(tmp_path):
    """Merging spilled runs holds only the terms being merged: a term read back and handed on is
    freed once its reader lets it go (an unpickler's memo kept every one: memory grew with the
    archive instead of staying within the pool's limit)."""
    import gc
    import weakref

    from whoosh.filedb.filestore import FileStorage

    from portal.postings import TermPool

    pool = TermPool(FileStorage(str(tmp_path)), limitmb=0.02)
    for docnum in range(200):
        for word in range(20):
            pool.add(("text", b"w%03d" % word, docnum, 1.0, b"v"))
    assert len(pool.runs) > 2
    run = pool._read_run(pool.runs[0])
    read = [weakref.ref(next(run)[1]) for _ in range(19)]  # (20 terms in it: the reader is still open)
    gc.collect()
    assert not [r for r in read if r() is not None]
    assert next(run)[0] == ("text", b"w019") and next(run, None) is None
    merged = [(t, len(d)) for _f, t, d, _w, _v in pool.iter_terms()]
    assert merged == [(b"w%03d" % w, 200) for w in range(20)]
    pool.cleanup()


def test_writer_processes_that_spill_postings_to_disk_write_the_whole_index(tmp_path):
    """Past their memory limit writer processes spill postings to run files in the index's
    temporary folder, which they share (their names carry the process and a random part): the
    index they write holds every term and document a single process writes."""
    from portal.search import BULK_FROM, WhooshIndex

    n = BULK_FROM + 300
    docs = list(_docs(n))
    one, spilling = WhooshIndex(tmp_path / "one", procs=1), WhooshIndex(tmp_path / "two", procs=2, limitmb=0.02)
    assert one.rebuild(docs) == spilling.rebuild(docs) == n  # (a writer process that failed raises)
    stats = []
    for index in (one, spilling):
        searcher = index.searcher()
        reader = searcher.reader()
        stats.append({t: (reader.doc_frequency(*t), reader.frequency(*t)) for t in reader.all_terms()})
        assert searcher.doc_count() == n
    assert stats[0] == stats[1] and len(stats[0]) > 500
    for q in ("quota", "l3-agent", "floating component:nova", '"quota usage"'):
        assert one.search(parse(q))["total"] == spilling.search(parse(q))["total"] > 0


def test_pain_point_documents_read_their_pain_points_a_chunk_at_a_time(app, tmp_path):
    """The index step writes every pain point an import touched: they are read 500 at a time, so
    no more than a chunk of them is ever loaded (all at once, a large import's 11,700 pain points
    were 20 MB held while their documents were written); asked ids come back in order, merged
    and unknown ones left out."""
    from sqlalchemy import insert, update

    from portal import db as dbmod
    from portal.models import PainPoint
    from portal.search import painpoint_documents

    with app.app_context(), dbmod.session_scope() as s:
        s.execute(insert(PainPoint.__table__), [{"title": f"Quota drift {i}", "reports": 1} for i in range(1200)])
        s.execute(update(PainPoint.__table__).where(PainPoint.__table__.c.id == 7).values(merged_into_id=8))
    with app.app_context(), dbmod.session_scope() as s:
        loaded = []
        keys = []
        for doc in painpoint_documents(s):
            loaded.append(sum(isinstance(o, PainPoint) for o in s.identity_map.values()))
            keys.append(doc["key"])
        assert len(keys) == 1199 and keys[:3] == ["painpoint:1", "painpoint:2", "painpoint:3"]
        assert "painpoint:7" not in keys and max(loaded) <= 500
        asked = [doc["key"] for doc in painpoint_documents(s, [900, 7, 3, 10**6, 1100])]
        assert asked == ["painpoint:3", "painpoint:900", "painpoint:1100"]
