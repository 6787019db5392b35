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
