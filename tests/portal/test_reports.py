"""Field reports: the API's acceptance (anonymous refused, 422 naming the field, hostile markup
inert, only the author edits or deletes), joining pain points, search, and bulk import."""

from __future__ import annotations

import json

import pytest
from bs4 import BeautifulSoup

HOSTILE = ('<script>alert(1)</script><img src=x onerror="alert(2)"> [click](javascript:alert(3)) '
           '<a href="#" onclick="x()">a</a>')
REPORT = {
    "title": "Quota usage drifts after resize on Kilo",
    "component": "quotas",
    "severity": "high",
    "release": "Kilo",
    "distro": "Ubuntu 14.04",
    "nodes": 120,
    "instances": 4000,
    "what_happened": "After resizing instances the **quota usage** for cores never comes down.",
    "steps": "1. resize an instance\n2. look at `nova quota-show`",
    "expected": "usage follows the flavor",
    "actual": "usage grows by the old flavor",
    "workaround": "nova-manage project quota_usage_refresh",
    "refs": ["https://bugs.launchpad.net/nova/+bug/1296414"],
    "log_excerpt": "ERROR nova.quota [req-1] Quota exceeded for cores",
}


def _user(runner, email, role="operator", scopes=None):
    runner.invoke(args=["users", "create", "--email", email, "--role", role])
    args = ["tokens", "create", "--email", email] + (["--scopes", scopes] if scopes else [])
    out = runner.invoke(args=args)
    assert out.exit_code == 0, out.output
    return {"Authorization": f"Bearer {out.output.strip().splitlines()[-1]}"}


@pytest.fixture
def op(runner):
    return _user(runner, "op@cloud.example")


@pytest.fixture
def other(runner):
    return _user(runner, "other@cloud.example")


@pytest.fixture
def dev(runner):
    return _user(runner, "dev@project.example", "developer")


def test_anonymous_post_is_refused(client):
    r = client.post("/api/v1/field-reports", json=REPORT)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    bad = client.post("/api/v1/field-reports", json=REPORT, headers={"Authorization": "Bearer esk_forged"})
    assert bad.status_code == 401
    assert client.get("/api/v1/reports").get_json()["total"] == 0


def test_a_report_without_title_gets_422_naming_the_field(client, op):
    r = client.post("/api/v1/field-reports", json={**REPORT, "title": ""}, headers=op)
    assert r.status_code == 422
    assert set(r.get_json()["errors"]) == {"title"}
    many = client.post("/api/v1/field-reports", headers=op, json={
        "title": "x" * 400, "component": "no-such", "severity": "apocalyptic", "nodes": "lots",
        "refs": ["not a ticket"], "links": ["javascript:alert(1)"], "colour": "red", "what_happened": ["a list"]})
    assert many.status_code == 422
    assert set(many.get_json()["errors"]) == {"title", "component", "severity", "nodes", "refs", "links", "colour",
                                             "what_happened"}
    assert client.post("/api/v1/field-reports", data="nope", headers=op).status_code == 422
    assert client.get("/api/v1/reports").get_json()["total"] == 0  # nothing half-stored


def test_read_only_token_cannot_file(client, runner):
    headers = _user(runner, "reader@cloud.example", scopes="read")
    r = client.post("/api/v1/field-reports", json=REPORT, headers=headers)
    assert r.status_code == 403 and "read-only" in r.get_json()["error"]


def test_filed_report_is_classified_linked_grouped_and_found(app, client, op):
    r = client.post("/api/v1/field-reports", json=REPORT, headers=op)
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["url"] == f"/reports/{body['id']}" and r.headers["Location"] == body["url"]
    data = client.get(f"/api/v1/field-reports/{body['id']}").get_json()
    assert data["title"] == REPORT["title"] and data["nodes"] == 120 and data["refs"] == ["lp:1296414"]
    assert data["components"][0] == "quotas"
    assert data["painpoint"] is not None and data["status"] == data["painpoint"]["status"] == "tracked"
    point = client.get(f"/api/v1/painpoints/{data['painpoint']['id']}").get_json()
    assert "lp:1296414" in [t["ref"] for t in point["tickets"]]
    assert point["impact"]["severity"] == "high"  # the operator's own word counts
    listing = client.get("/api/v1/reports?limit=5").get_json()
    assert listing["total"] == 1
    assert set(listing["items"][0]) >= {"id", "title", "components", "refs", "status", "created"}
    hits = client.get("/api/v1/search?q=quota+resize&kind=report").get_json()["hits"]
    assert [h["id"] for h in hits] == [body["id"]] and hits[0]["kind"] == "report"
    similar = client.get("/api/v1/similar", query_string={"text": "cores quota usage after resize",
                                                          "kind": "thread"}).get_json()["items"]
    assert {"kind": "report", "id": body["id"]}.items() <= similar[0].items()
    # A second report of the same problem with the same ticket joins the same pain point.
    again = client.post("/api/v1/field-reports", headers=op, json={
        "title": "Cores quota wrong after resize", "component": "quotas", "refs": ["lp:1296414"],
        "what_happened": "Same here: resize leaves usage too high."}).get_json()
    second = client.get(f"/api/v1/field-reports/{again['id']}").get_json()
    assert second["painpoint"]["id"] == data["painpoint"]["id"]


def test_hostile_markup_is_inert_in_the_report_page(client, op):
    hostile = {k: (HOSTILE if isinstance(v, str) and k not in ("component", "severity") else v)
               for k, v in REPORT.items()}
    hostile["title"] = "Hostile " + HOSTILE
    hostile["release"] = hostile["distro"] = HOSTILE[:90]
    hostile["refs"] = []
    r = client.post("/api/v1/field-reports", json=hostile, headers=op)
    assert r.status_code == 201, r.get_json()
    page = client.get(r.get_json()["url"])
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "&lt;script&gt;" in html  # shown as text
    soup = BeautifulSoup(html, "html.parser")
    # The only scripts are the portal's own files; no element carries an event handler; no link runs.
    assert all(s.get("src", "").startswith("/static/") and not s.string for s in soup.find_all("script"))
    assert not [(t.name, a) for t in soup.find_all(True) for a in t.attrs if a.lower().startswith("on")]
    assert not [a for a in soup.find_all(href=True) if a["href"].strip().lower().startswith(("javascript:", "data:"))]
    assert not soup.find_all(["img", "iframe", "object", "embed", "form"], attrs={"id": False, "action": False})
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


def test_only_the_author_edits_and_deletes(client, op, other, dev, runner):
    created = client.post("/api/v1/field-reports", json=REPORT, headers=op).get_json()
    url = f"/api/v1/field-reports/{created['id']}"
    assert client.patch(url, json={"title": "Not yours"}).status_code == 401
    assert client.patch(url, json={"title": "Not yours"}, headers=other).status_code == 403
    assert client.delete(url, headers=other).status_code == 403
    # Developers triage, but do not rewrite the operator's words.
    assert client.patch(url, json={"what_happened": "rewritten"}, headers=dev).status_code == 403
    triaged = client.patch(url, json={"component": "compute", "severity": "critical"}, headers=dev)
    assert triaged.status_code == 200 and triaged.get_json()["severity"] == "critical"
    assert client.patch(url, json={"severity": "meh"}, headers=op).status_code == 422
    edited = client.patch(url, json={"title": "Quota usage drifts after resize (Kilo and Liberty)",
                                     "release": "Liberty"}, headers=op)
    assert edited.status_code == 200 and edited.get_json()["release"] == "Liberty"
    assert client.get(url).get_json()["title"].endswith("(Kilo and Liberty)")
    history = json.loads(runner.invoke(args=["reports", "history", str(created["id"]), "--json"]).output)
    assert [h["action"] for h in history] == ["report_create", "report_update", "report_update"]
    assert history[1]["by"] == "dev@project.example"
    assert client.delete(url, headers=op).status_code == 204
    assert client.get(url).status_code == 404
    assert client.get("/api/v1/reports").get_json()["total"] == 0
    assert client.get("/api/v1/search?q=quota&kind=report").get_json()["total"] == 0
    assert client.get(f"/reports/{created['id']}").status_code == 404


def test_submissions_are_rate_limited(app, client, op):
    app.config["REPORT_RATE_LIMIT"] = "2 per hour"
    codes = [client.post("/api/v1/field-reports", json={**REPORT, "title": f"Report number {i}"},
                         headers=op).status_code for i in range(3)]
    assert codes == [201, 201, 429]


def test_redmine_post_mortem_seed_imports_as_a_structured_report(runner, client, shared):
    seed = shared / "seeds/003_4d933905ee238ada.txt"
    out = runner.invoke(args=["reports", "import", "--json", str(seed)])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output.strip().splitlines()[-1])
    assert summary["reports_new"] == 1 and summary["problems"] == []
    [item] = client.get("/api/v1/reports").get_json()["items"]
    report = client.get(f"/api/v1/field-reports/{item['id']}").get_json()
    assert report["title"].startswith("Post-mortem Action #175518")
    assert "redmine:175518" in report["refs"]
    assert "isotovideo can not be started" in report["what_happened"]
    assert report["five_whys"].startswith("1. Why did we not realize this before the deployments?")
    assert "task force" in report["went_well"]
    assert "Preserve package cache" in report["ideas"]
    assert "Five-Whys" in report["acceptance_criteria"]
    assert report["author"] == "livdywan"
    again = json.loads(runner.invoke(args=["reports", "import", "--json", str(seed)]).output.strip().splitlines()[-1])
    assert again["reports_new"] == 0 and again["already_stored"] == 1
    html = client.get(report["url"]).get_data(as_text=True)
    assert "<h2>Five whys</h2>" in html and "<strong>W1:</strong>" in html


def test_bulk_import_json_csv_yaml_keeps_good_rows_and_reports_bad_ones(runner, client, tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"reports": [
        {"id": "r1", "title": "L3 agent loses default route", "component": "networking",
         "what_happened": "After the virtual router upgrade the default route is gone.", "author": "ann@ops.example"},
        {"title": "", "what_happened": "no title"},
        "not an object",
    ]}))
    (tmp_path / "b.csv").write_text(
        "Title,Component,Severity,Release,What happened,Tickets,Nodes\n"
        "Scheduler puts instances on full hosts,scheduling,critical,Liberty,Hosts over commit,lp:1500000,40\n"
        "Cells v2 regression,cells,bogus,Mitaka,List fails,,\n"
        "\"Broken quote,cells,normal\n")
    (tmp_path / "c.yaml").write_text(
        "- title: Volume attach hangs on Ceph\n  component: storage\n  what_happened: |\n    attach never returns\n"
        "- title: Nodes given as text\n  what_happened: x\n  nodes: many\n")
    (tmp_path / "d.yaml").write_text("- title: [unclosed\n")
    out = runner.invoke(args=["reports", "import", "--json", str(tmp_path)])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output.strip().splitlines()[-1])
    assert summary["reports_new"] == 3
    where = {(p["file"].rsplit("/", 1)[-1], p["where"]) for p in summary["problems"]}
    assert ("a.json", "item 2, field title") in where and ("a.json", "item 3") in where
    assert ("b.csv", "line 3, field severity") in where
    assert any(f == "b.csv" and w.startswith("line 4") for f, w in where)
    assert ("c.yaml", "item 2, field nodes") in where
    assert any(f == "d.yaml" and w.startswith("line ") for f, w in where)
    titles = {i["title"] for i in client.get("/api/v1/reports").get_json()["items"]}
    assert titles == {"L3 agent loses default route", "Scheduler puts instances on full hosts",
                      "Volume attach hangs on Ceph"}
    again = json.loads(runner.invoke(args=["reports", "import", "--json", str(tmp_path)]).output.strip()
                       .splitlines()[-1])
    assert again["reports_new"] == 0 and again["already_stored"] == 3


def test_tokens_are_listed_by_prefix_and_revocable(client, runner, op):
    listing = runner.invoke(args=["tokens", "list", "--email", "op@cloud.example"]).output
    token = op["Authorization"].split()[1]
    assert token[:12] in listing and token not in listing and "read,write" in listing
    token_id = listing.split()[0]
    assert runner.invoke(args=["tokens", "revoke", token_id]).exit_code == 0
    assert client.post("/api/v1/field-reports", json=REPORT, headers=op).status_code == 401
    assert "revoked" in runner.invoke(args=["tokens", "list"]).output
    bad = runner.invoke(args=["tokens", "create", "--email", "op@cloud.example", "--scopes", "root"])
    assert bad.exit_code != 0 and "scopes are read, write" in bad.output


def test_request_bodies_are_capped(app, client, op):
    app.config["MAX_CONTENT_LENGTH"] = 4096
    r = client.post("/api/v1/field-reports", json={**REPORT, "log_excerpt": "x" * 10000}, headers=op)
    assert r.status_code == 413 and "limit" in r.get_json()["error"]
    assert client.get("/api/v1/reports").get_json()["total"] == 0


def test_reports_of_one_problem_join_by_their_words(client, op, other):
    """Without a ticket, a report joins the pain point of one that says the same (the web worker's
    grouping index grows with each report instead of being rebuilt); another problem does not."""
    text = "After resizing instances the cores quota usage never comes down; tenants hit their quota."
    first = client.post("/api/v1/field-reports", headers=op, json={
        "title": "Quota usage drifts after resize", "component": "quotas", "what_happened": text}).get_json()
    second = client.post("/api/v1/field-reports", headers=other, json={
        "title": "Quota usage drifts after resizes", "component": "quotas", "what_happened": text}).get_json()
    third = client.post("/api/v1/field-reports", headers=other, json={
        "title": "Volumes stuck detaching with Ceph", "component": "storage",
        "what_happened": "Volumes stay in detaching when the Ceph cluster is slow."}).get_json()
    points = [client.get(f"/api/v1/field-reports/{r['id']}").get_json()["painpoint"]["id"]
              for r in (first, second, third)]
    assert points[0] == points[1] != points[2]
    detail = client.get(f"/api/v1/painpoints/{points[0]}").get_json()
    assert detail["impact"]["operators"] == 2


def test_a_rolled_back_report_leaves_nothing_behind_in_grouping(app, client, op):
    """SQLite gives a rolled-back row's id to the next row: the grouping index must not keep the
    words of a report that was never stored."""
    from portal import db as dbmod
    from portal.classify import load_taxonomy
    from portal.reports import create, validate

    volumes = {"title": "Volumes stuck detaching with Ceph", "component": "storage",
               "what_happened": "Volumes stay in detaching when the Ceph cluster is slow; we reset them by hand."}
    first = client.post("/api/v1/field-reports", headers=op, json=volumes).get_json()
    with app.app_context(), dbmod.session_scope() as s:
        create(s, app.config, validate({**volumes, "title": "Volumes stuck detaching with Ceph again"},
                                       set(load_taxonomy().components)), author_name="x", author_email="x@ops.example")
        s.rollback()
    # Same component, other words: with the rolled-back words kept under its id, it would join.
    backups = client.post("/api/v1/field-reports", headers=op, json={
        "title": "Image backups to Swift time out", "component": "storage",
        "what_happened": "Backups of large images to Swift fail with a timeout after an hour."}).get_json()
    a, b = (client.get(f"/api/v1/field-reports/{r['id']}").get_json()["painpoint"]["id"] for r in (first, backups))
    assert a != b


def test_an_edited_report_is_found_by_its_new_words(client, op):
    """Reports change in place (no new message): every worker's similarity index notices."""
    a = client.post("/api/v1/field-reports", headers=op, json={
        "title": "Quota usage drifts after resize", "component": "quotas",
        "what_happened": "After resizing instances the cores quota usage never comes down."}).get_json()
    client.post("/api/v1/field-reports", headers=op, json={
        "title": "Volumes stuck detaching with Ceph", "component": "storage",
        "what_happened": "Volumes stay in detaching when the Ceph cluster is slow."})

    def score(text):
        items = client.get("/api/v1/similar", query_string={"text": text, "kind": "thread"}).get_json()["items"]
        return {i["id"]: i["score"] for i in items if i["kind"] == "report"}.get(a["id"], 0.0)

    before = score("volumes detaching ceph cluster slow")  # also builds this worker's index
    assert client.patch(f"/api/v1/field-reports/{a['id']}", headers=op, json={
        "what_happened": "It was the Ceph cluster: volumes stay detaching while it is slow."}).status_code == 200
    assert score("volumes detaching ceph cluster slow") > before + 0.5
