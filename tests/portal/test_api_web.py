"""The JSON API and the pages, against a real database filled by a real import."""

import json

import pytest
from sqlmodel import select

from portal.models import ApiToken

HOSTILE = ("From x@y Mon Sep  1 10:00:00 2014\nFrom: Mallory <m@evil.example>\nDate: Mon, 1 Sep 2014 10:00:00 +0000\n"
           "Subject: <script>alert(1)</script> quota\nMessage-ID: <h@x>\n\n<img src=x onerror=alert(2)> body\n"
           "> <script>alert(3)</script>\n\n")


@pytest.fixture
def filled(tmp_path, import_paths, shared):
    (tmp_path / "hostile.mbox").write_text(HOSTILE, encoding="utf-8")
    import_paths(tmp_path / "hostile.mbox", list_name="openstack-operators")
    import_paths(shared / "seeds")


def test_thread_list_shape_filters_and_paging(client, filled):
    data = client.get("/api/v1/threads").get_json()
    assert data["total"] == 6
    item = data["items"][0]
    assert set(item) >= {"id", "subject", "list", "first_date", "last_date", "message_count", "participants"}
    assert item["first_date"].endswith("Z")
    assert {"name", "email", "role"} <= set(item["participants"][0])
    ops = client.get("/api/v1/threads?list=openstack-operators").get_json()
    assert ops["total"] == 2 and {t["list"] for t in ops["items"]} == {"openstack-operators"}
    window = client.get("/api/v1/threads?since=2015-09-01&until=2015-10-01").get_json()
    assert [t["subject"] for t in window["items"]] == ["Blameless post mortem"]
    page = client.get("/api/v1/threads?limit=2&offset=2").get_json()
    assert len(page["items"]) == 2 and page["total"] == 6


def test_thread_detail_carries_new_text(client, filled):
    items = client.get("/api/v1/threads?list=cloudstack-dev").get_json()["items"]
    detail = client.get(f"/api/v1/threads/{items[0]['id']}").get_json()
    assert detail["message_count"] == len(detail["messages"]) == 11
    m = detail["messages"][-1]
    assert set(m) >= {"id", "message_id", "author", "date", "subject", "text"}
    assert m["text"].startswith("There are two VR related issues left:")
    assert detail["messages"][0]["text"].startswith("Hi all,")


@pytest.mark.parametrize("query", ["limit=0", "limit=abc", "offset=-1", "since=yesterday", "limit=100000"])
def test_bad_parameters_name_the_field(client, query):
    response = client.get(f"/api/v1/threads?{query}")
    assert response.status_code == 400
    field = query.split("=")[0]
    assert field in response.get_json()["errors"]


def test_unknown_thread_is_404_json(client):
    response = client.get("/api/v1/threads/999")
    assert response.status_code == 404 and response.get_json() == {"error": "not found"}


def test_pages_escape_archive_text_and_send_a_strict_csp(client, filled):
    listing = client.get("/")
    assert listing.status_code == 200
    assert b"<script>alert(1)" not in listing.data and b"&lt;script&gt;alert(1)" in listing.data
    assert "script-src 'self'" in listing.headers["Content-Security-Policy"]
    tid = client.get("/api/v1/threads?list=openstack-operators").get_json()["items"]
    hostile = next(t for t in tid if "quota" in t["subject"])
    page = client.get(f"/threads/{hostile['id']}")
    assert b"<img src=x" not in page.data and b"<script>alert(3)" not in page.data
    assert b"&lt;img src=x onerror=alert(2)&gt;" in page.data
    assert b"<details class=\"quoted\">" in page.data  # quoted text folded away


def test_thread_page_and_filters_show_errors_beside_the_field(client, filled):
    response = client.get("/?since=soon")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'id="since-error"' in html and 'aria-invalid="true"' in html
    assert client.get("/threads/424242").status_code == 404
    assert client.get("/?list=cloudstack-dev").get_data(as_text=True).count('class="subject"') == 1


def test_private_mode_needs_a_token_and_tokens_are_hashed(app, runner, client, filled):
    app.config["PRIVATE"] = True
    assert client.get("/api/v1/threads").status_code == 401
    assert client.get("/").status_code == 401
    assert client.get("/healthz").status_code == 200
    assert runner.invoke(args=["users", "create", "--email", "Dev@Example.org", "--role", "developer"]).exit_code == 0
    out = runner.invoke(args=["tokens", "create", "--email", "dev@example.org"])
    token = out.output.strip().splitlines()[-1]
    assert token.startswith("esk_")
    ok = client.get("/api/v1/threads", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and ok.get_json()["total"] == 6
    assert client.get("/api/v1/threads", headers={"Authorization": "Bearer esk_wrong"}).status_code == 401
    with app.app_context():
        from portal.db import session_scope

        with session_scope() as s:
            stored = s.exec(select(ApiToken)).one()
            assert token not in (stored.token_hash, stored.prefix) and len(stored.token_hash) == 64


def test_cli_import_json(runner, shared):
    result = runner.invoke(args=["import", "--json", str(shared / "seeds")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) >= {"messages_new", "duplicates", "threads_touched", "problems"}
    assert data["messages_new"] > 5 and data["problems"] == []
    again = json.loads(runner.invoke(args=["import", "--json", str(shared / "seeds")]).output)
    assert again["messages_new"] == 0


def test_cli_import_reports_problems_with_file_and_position(runner, tmp_path):
    (tmp_path / "bad.mbox").write_text("From a@b Mon Sep  1 10:00:00 2014\nX-Nothing: 1\n\n", encoding="utf-8")
    result = runner.invoke(args=["import", str(tmp_path / "bad.mbox")])
    assert result.exit_code == 0
    assert "0 new" in result.output and "bad.mbox: line 1 (message 1)" in result.output


def test_demo_load_is_deterministic_and_idempotent(runner, client):
    first = runner.invoke(args=["demo", "load", "--messages", "120"])
    assert first.exit_code == 0, first.output
    assert "120 new messages" in first.output and "12 field reports filed" in first.output
    again = runner.invoke(args=["demo", "load", "--messages", "120"])
    assert "0 new messages, 120 already there" in again.output and "0 field reports filed" in again.output
    reports = client.get("/api/v1/reports?limit=50").get_json()
    assert reports["total"] == 12 and all(r["status"] != "unreviewed" for r in reports["items"])
    data = client.get("/api/v1/threads?list=openstack-operators").get_json()
    assert data["total"] > 0
    from portal.demo import OPERATORS

    operators = {address for _name, address in OPERATORS}
    people = [p for t in data["items"] for p in t["participants"]]
    assert people and all(p["role"] == "operator" for p in people if p["email"] in operators)


def test_runs_are_recorded_with_their_problems(runner, tmp_path):
    (tmp_path / "bad.mbox").write_text("From a@b Mon Sep  1 10:00:00 2014\nX-Nothing: 1\n\n", encoding="utf-8")
    runner.invoke(args=["import", str(tmp_path / "bad.mbox")])
    listing = json.loads(runner.invoke(args=["runs", "show", "--json"]).output)
    assert listing[0]["problem_count"] == 1 and listing[0]["status"] == "done"
    one = json.loads(runner.invoke(args=["runs", "show", str(listing[0]["id"]), "--json"]).output)
    assert one["problems"][0]["where"] == "line 1 (message 1)"
    assert runner.invoke(args=["runs", "show", "999"]).exit_code != 0
