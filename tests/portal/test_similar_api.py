"""GET /api/v1/similar: existing threads most like a draft."""


def test_similar_finds_the_thread_a_draft_is_about(client, import_paths, shared):
    import_paths(shared / "seeds")
    found = client.get("/api/v1/similar", query_string={
        "text": "VPC routers lost their default route after the VR refactor, redundant routers broken", "k": 3})
    items = found.get_json()["items"]
    # The post-mortem is production pain, so its pain point comes first, then the thread itself.
    assert [(i["kind"], i["title"]) for i in items[:2]] == [("painpoint", "Blameless post mortem"),
                                                             ("thread", "Blameless post mortem")]
    assert set(items[0]) == {"kind", "id", "title", "score"} and len(items) <= 3
    # New messages are seen by the next query.
    later = client.get("/api/v1/similar?text=openQA+isotovideo+setup+failure&kind=thread").get_json()["items"]
    assert later[0]["title"].startswith("Action #175518")


def test_similar_validates_its_parameters(client, app):
    assert client.get("/api/v1/similar").status_code == 400
    assert "text" in client.get("/api/v1/similar?text=%20").get_json()["errors"]
    assert client.get("/api/v1/similar?text=x&k=500").status_code == 400
    assert client.get("/api/v1/similar?text=quota").get_json() == {"items": []}
    app.config["PRIVATE"] = True
    assert client.get("/api/v1/similar?text=quota").status_code == 401


def test_similar_takes_a_title_apart_from_the_text(client, import_paths, shared):
    import_paths(shared / "seeds")
    items = client.get("/api/v1/similar", query_string={
        "title": "Request voting for a CI account",
        "text": "our third-party CI should vote on changes"}).get_json()["items"]
    assert "Request voting for Tail-f CI account" in items[0]["title"]
    assert 0 < items[0]["score"] <= 2
    assert client.get("/api/v1/similar", query_string={"text": "x", "title": "t" * 501}).status_code == 400


def test_the_index_takes_new_threads_without_a_rebuild(app, client, tmp_path):
    """A new thread (or a reply) reaches /similar by extending the worker's index in place; the
    older version of a thread that got a reply no longer answers for text it lost."""
    from portal import db as dbmod
    from portal import similar

    def mbox(name, mid, subject, body, reply_to=None):
        head = f"In-Reply-To: <{reply_to}>\n" if reply_to else ""
        (tmp_path / name).write_text(
            f"From x@y Mon Sep  1 10:00:00 2014\nFrom: Op <op@ops.example>\nDate: Mon, 1 Sep 2014 10:00:00 +0000\n"
            f"Subject: {subject}\nMessage-ID: <{mid}>\n{head}\n{body}\n\n")
        return tmp_path / name

    from portal.cli import run_import

    with app.app_context():
        paths = [mbox(f"t{i}.mbox", f"t{i}@x", f"Topic number {i} about {w}", f"Text on {w} and more {w}.")
                 for i, w in enumerate(["ceph volumes", "ldap tokens", "dhcp leases", "rabbitmq queues"] * 6)]
        run_import(paths)
        with dbmod.session_scope() as s:
            first = similar.thread_index(s, app.config["SQLALCHEMY_URL"])
            built = len(first.docs)
        run_import([mbox("new.mbox", "new@x", "Placement allocations leak", "Allocations for deleted servers "
                         "stay in placement forever.")])
        with dbmod.session_scope() as s:
            again = similar.thread_index(s, app.config["SQLALCHEMY_URL"])
        assert again is first and len(again.docs) == built + 1  # extended, not rebuilt
    items = client.get("/api/v1/similar", query_string={"text": "placement allocations deleted servers",
                                                        "kind": "thread"}).get_json()["items"]
    assert items[0]["title"] == "Placement allocations leak"
    # A reply brings words to an old thread: its new version answers, once; the old one is retired.
    # (Words the index never saw do not count until it is built anew, so the reply uses known ones.)
    with app.app_context():
        run_import([mbox("reply.mbox", "reply@x", "Re: Topic number 0 about ceph volumes",
                         "Here the dhcp leases expire as well, right with the ceph trouble.", reply_to="t0@x")])
        with dbmod.session_scope() as s:
            assert len(similar.thread_index(s, app.config["SQLALCHEMY_URL"]).docs) == built + 2
    items = client.get("/api/v1/similar", query_string={"text": "ceph volumes dhcp leases expire",
                                                        "kind": "thread"}).get_json()["items"]
    assert items[0]["title"] == "Topic number 0 about ceph volumes"
    assert [i["id"] for i in items].count(items[0]["id"]) == 1
