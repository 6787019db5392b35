"""Authorization of every route. The tables below must name every route that writes: a new route
fails this test until someone decides who may call it."""

from __future__ import annotations

import re

import pytest

PUBLIC, ANY, DEV, ADMIN, AUTHOR = "public", "signed-in", "developer", "admin", "author"

# Who may write, for every (endpoint, method) that changes something.
WRITES = {
    ("web.signin", "POST"): PUBLIC, ("web.signin_demo", "POST"): PUBLIC, ("web.signout", "POST"): PUBLIC,
    ("web.unsubscribe_view", "POST"): PUBLIC,  # the signed token in the URL is the authority
    ("web.settings", "POST"): ANY, ("web.settings_tokens", "POST"): ANY, ("web.saved_searches", "POST"): ANY,
    ("web.painpoint_vote", "POST"): ANY,
    ("reports.new", "POST"): ANY,
    ("reports.edit", "POST"): AUTHOR, ("reports.delete", "POST"): AUTHOR,
    ("reports.triage", "POST"): DEV, ("web.painpoint_triage", "POST"): DEV, ("web.correct_components", "POST"): DEV,
    ("web.admin_sources", "POST"): ADMIN, ("web.admin_users", "POST"): ADMIN,
    ("api.field_report_create", "POST"): ANY, ("api.painpoint_vote", "POST"): ANY,
    ("api.painpoint_vote", "DELETE"): ANY,
    ("api.field_report_update", "PATCH"): AUTHOR, ("api.field_report_delete", "DELETE"): AUTHOR,
    ("api.painpoint_components", "PATCH"): DEV, ("api.painpoint_merge", "POST"): DEV,
    ("api.painpoint_split", "POST"): DEV, ("api.painpoint_tested", "POST"): DEV,
    ("api.painpoint_tickets", "POST"): DEV, ("api.painpoint_undo", "POST"): DEV,
    ("api.correct_components", "PATCH"): DEV, ("api.correct_pain", "PATCH"): DEV,
}
# Reads that stay open when EARSHOT_PRIVATE=1 (each guarded otherwise: a secret, or nothing to show).
PUBLIC_READS = {"web.healthz", "web.signin", "web.signin_start", "web.signin_callback", "web.saved_feed",
                "web.unsubscribe_view", "static"}


@pytest.fixture
def world(app, client, runner, import_paths, shared):
    """A thread, its pain point, a report by one operator, and people of every role."""
    app.config["WTF_CSRF_ENABLED"] = False
    import_paths(shared / "seeds/004_73bcfa887d0a9a86.txt")
    tokens = {}
    for email, role in (("author@ops.example", "operator"), ("other@ops.example", "operator"),
                        ("dev@project.example", "developer"), ("admin@project.example", "admin")):
        runner.invoke(args=["users", "create", "--email", email, "--role", role])
        tokens[email] = runner.invoke(args=["tokens", "create", "--email", email]).output.strip().splitlines()[-1]
    report = client.post("/api/v1/field-reports", headers={"Authorization": f"Bearer {tokens['author@ops.example']}"},
                         json={"title": "Quota drift after resize", "component": "quotas",
                               "what_happened": "usage never comes down"}).get_json()
    thread = client.get("/api/v1/threads").get_json()["items"][0]["id"]
    point = client.get("/api/v1/painpoints").get_json()["items"][0]["id"]
    ids = {"report_id": report["id"], "thread_id": thread, "pp_id": point, "event_id": 1, "provider": "oidc",
           "token": "not-a-token", "secret": "not-a-secret", "cycle_name": "kilo", "week_name": "2015-W10",
           "filename": "earshot.css", "ticket_id": 1, "user": 1}
    return {"tokens": tokens, "ids": ids}


def _url(rule, ids):
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(ids[m.group(1)]), rule.rule)


def _writes(app):
    return {(r.endpoint, m): r for r in app.url_map.iter_rules() for m in r.methods - {"GET", "HEAD", "OPTIONS"}}


def _call(client, method, url, headers=None):
    return client.open(url, method=method, headers=headers or {}, json={} if "/api/" in url else None,
                       data=None if "/api/" in url else {})


def test_every_write_route_is_classified(app):
    assert set(_writes(app)) == set(WRITES), "classify the new route in WRITES"


def test_anonymous_callers_cannot_write(app, client, world):
    for (endpoint, method), rule in _writes(app).items():
        if WRITES[(endpoint, method)] == PUBLIC:
            continue
        r = _call(client, method, _url(rule, world["ids"]))
        if rule.rule.startswith("/api/"):
            assert r.status_code == 401, (endpoint, method, r.status_code)
        else:
            assert r.status_code == 302 and "/signin" in r.headers["Location"], (endpoint, method, r.status_code)


@pytest.mark.parametrize("who, refused", [
    ("other@ops.example", {AUTHOR, DEV, ADMIN}),
    ("dev@project.example", {AUTHOR, ADMIN}),
])
def test_signed_in_callers_get_403_beyond_their_role(app, client, world, who, refused):
    token = world["tokens"][who]
    client.post("/signin", data={"token": token})
    for (endpoint, method), rule in _writes(app).items():
        need = WRITES[(endpoint, method)]
        if need not in refused:
            continue
        if who.startswith("dev") and endpoint == "api.field_report_update":
            continue  # developers may triage (tested in test_reports); their words-change is 403 there
        url = _url(rule, world["ids"])
        headers = {"Authorization": f"Bearer {token}"} if url.startswith("/api/") else None
        r = _call(client, method, url, headers)
        assert r.status_code == 403, (who, endpoint, method, r.status_code)


def test_web_forms_need_a_csrf_token(app, client, world):
    app.config["WTF_CSRF_ENABLED"] = True
    # CSRF is checked before anything else, signed in or not.
    for (endpoint, method), rule in _writes(app).items():
        if rule.rule.startswith("/api/") or endpoint == "web.unsubscribe_view":
            continue
        r = _call(client, method, _url(rule, world["ids"]))
        assert r.status_code == 400, (endpoint, method, r.status_code)


def test_private_deployments_hide_every_read(app, client, world):
    app.config["PRIVATE"] = True
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint in PUBLIC_READS:
            continue
        r = client.get(_url(rule, world["ids"]))
        assert r.status_code == 401, (rule.endpoint, r.status_code)
    read_only = world["tokens"]["other@ops.example"]
    assert client.get("/api/v1/reports", headers={"Authorization": f"Bearer {read_only}"}).status_code == 200
