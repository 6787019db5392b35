"""The report pages: the form with errors beside each field, filing, editing, triage, deleting."""

from __future__ import annotations

import json
import re


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _sign_in(client, runner, email, role="operator"):
    runner.invoke(args=["users", "create", "--email", email, "--role", role, "--name", email.split("@")[0]])
    token = runner.invoke(args=["tokens", "create", "--email", email]).output.strip().splitlines()[-1]
    page = client.get("/signin").get_data(as_text=True)
    assert client.post("/signin", data={"token": token, "csrf_token": _csrf(page)}).status_code == 302


def test_form_needs_sign_in_and_shows_errors_beside_fields(app, client, runner):
    app.config["WTF_CSRF_ENABLED"] = True
    assert client.get("/reports/new").headers["Location"].startswith("/signin?next=/reports/new")
    _sign_in(client, runner, "op@ops.example")
    form = client.get("/reports/new").get_data(as_text=True)
    assert 'id="similar"' in form and "report-form.js" in form
    assert client.post("/reports/new", data={"title": "No token here"}).status_code == 400  # CSRF
    bad = client.post("/reports/new", data={"csrf_token": _csrf(form), "title": "", "nodes": "many",
                                            "severity": "normal", "what_happened": "It broke <b>badly</b>"})
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422
    assert 'id="title-error"' in html and 'id="nodes-error"' in html and 'aria-describedby="title-error"' in html
    assert "It broke &lt;b&gt;badly&lt;/b&gt;</textarea>" in html  # what was typed is kept, escaped
    good = client.post("/reports/new", data={
        "csrf_token": _csrf(form), "title": "Cells v2 list fails after upgrade", "component": "cells",
        "severity": "critical", "release": "Pike", "nodes": "1,200", "what_happened": "`nova list` **fails**",
        "refs": "lp:1700000", "links": "https://etherpad.example.org/p/cells"})
    assert good.status_code == 302
    page = client.get(good.headers["Location"]).get_data(as_text=True)
    assert "<code>nova list</code> <strong>fails</strong>" in page and "1,200 nodes" in page
    assert "lp:1700000" in page and 'rel="noopener noreferrer nofollow"' in page
    listing = client.get("/reports").get_data(as_text=True)
    assert "Cells v2 list fails after upgrade" in listing


def test_author_edits_developer_triages_author_deletes(app, client, runner):
    app.config["WTF_CSRF_ENABLED"] = False

    def _sign_in_plain(email, role="operator"):
        runner.invoke(args=["users", "create", "--email", email, "--role", role])
        token = runner.invoke(args=["tokens", "create", "--email", email]).output.strip().splitlines()[-1]
        client.post("/signin", data={"token": token})

    _sign_in_plain("op@ops.example")
    url = client.post("/reports/new", data={"title": "Default route lost after router upgrade",
                                            "component": "networking", "severity": "high",
                                            "what_happened": "VMs lose their default route"}).headers["Location"]
    rid = int(url.rsplit("/", 1)[1])
    edit = client.get(f"{url}/edit").get_data(as_text=True)
    assert "Default route lost after router upgrade" in edit and "VMs lose their default route" in edit
    assert client.post(f"{url}/edit", data={"title": "x", "severity": "high", "what_happened": "y"}).status_code == 422
    done = client.post(f"{url}/edit", data={"title": "Default route lost after virtual router upgrade",
                                            "component": "networking", "severity": "high",
                                            "what_happened": "VMs lose their default route", "release": "4.11"})
    assert done.status_code == 302
    assert "4.11" in client.get(url).get_data(as_text=True)
    client.post("/signout")
    _sign_in_plain("dev@project.example", "developer")
    page = client.get(url).get_data(as_text=True)
    assert "Save triage" in page and f"/reports/{rid}/edit" not in page
    assert client.get(f"{url}/edit").status_code == 403
    assert client.post(f"{url}/triage", data={"severity": "bogus", "component": "networking"}).status_code == 422
    assert client.post(f"{url}/triage", data={"severity": "critical", "component": "networking",
                                              "refs": "CLOUDSTACK-8697"}).status_code == 302
    data = client.get(f"/api/v1/field-reports/{rid}").get_json()
    assert data["severity"] == "critical" and data["refs"] == ["jira:CLOUDSTACK-8697"]
    assert "History" in client.get(url).get_data(as_text=True)
    assert client.post(f"{url}/delete", data={"confirm": "yes"}).status_code == 403
    client.post("/signout")
    _sign_in_plain("op2@ops.example")
    assert client.post(f"{url}/delete", data={"confirm": "yes"}).status_code == 403
    client.post("/signout")
    client.post("/signin", data={"token": runner.invoke(args=["tokens", "create", "--email", "op@ops.example"])
                                 .output.strip().splitlines()[-1]})
    assert client.post(f"{url}/delete", data={}).status_code == 302  # not confirmed: nothing happens
    assert client.get(url).status_code == 200
    assert client.post(f"{url}/delete", data={"confirm": "yes"}).status_code == 302
    assert client.get(url).status_code == 404


def test_people_make_and_revoke_their_own_tokens(app, client, runner):
    app.config["WTF_CSRF_ENABLED"] = False
    _sign_in(client, runner, "op@ops.example")
    made = client.post("/settings/tokens", data={"action": "create", "scopes": "read,write"})
    assert made.status_code == 200 and made.headers["Cache-Control"] == "no-store"
    token = re.search(r'<code class="token">(esk_[^<]+)</code>', made.get_data(as_text=True)).group(1)
    assert token not in client.get("/settings").get_data(as_text=True)  # shown once
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/v1/field-reports", headers=headers, json={
        "title": "Made with my own token", "what_happened": "scripted"}).status_code == 201
    assert client.post("/settings/tokens", data={"action": "create", "scopes": "sudo"}).status_code == 422
    listing = runner.invoke(args=["tokens", "list", "--email", "op@ops.example"]).output.splitlines()
    own = [line.split()[0] for line in listing if token[:12] in line][0]
    runner.invoke(args=["users", "create", "--email", "x@ops.example"])
    other = runner.invoke(args=["tokens", "create", "--email", "x@ops.example"]).output.strip().splitlines()[-1]
    other_id = [line.split()[0] for line in runner.invoke(args=["tokens", "list", "--email", "x@ops.example"])
                .output.splitlines()][0]
    assert client.post("/settings/tokens", data={"action": "revoke", "token_id": other_id}).status_code == 404
    assert client.get("/api/v1/reports", headers={"Authorization": f"Bearer {other}"}).status_code == 200
    assert client.post("/settings/tokens", data={"action": "revoke", "token_id": own}).status_code == 302
    assert client.post("/api/v1/field-reports", headers=headers, json={
        "title": "After revoking", "what_happened": "refused"}).status_code == 401


def test_admins_give_roles_and_the_last_admin_stays(app, client, runner):
    app.config["WTF_CSRF_ENABLED"] = False
    runner.invoke(args=["users", "create", "--email", "op@ops.example"])
    _sign_in(client, runner, "boss@ops.example", "admin")
    page = client.get("/admin/users").get_data(as_text=True)
    assert "op@ops.example" in page and "boss@ops.example" in page
    users = {u["email"]: u for u in json.loads(runner.invoke(args=["users", "list", "--json"]).output)}
    assert client.post("/admin/users", data={"user": users["op@ops.example"]["id"],
                                             "role": "developer"}).status_code == 302
    refused = client.post("/admin/users", data={"user": users["boss@ops.example"]["id"], "role": "operator"})
    assert refused.status_code == 422 and f'id="role-{users["boss@ops.example"]["id"]}-error"' in \
        refused.get_data(as_text=True)
    assert client.post("/admin/users", data={"user": users["boss@ops.example"]["id"], "role": "admin",
                                             "disabled": "1"}).status_code == 422
    roles = {u["email"]: u["role"] for u in json.loads(runner.invoke(args=["users", "list", "--json"]).output)}
    assert roles == {"op@ops.example": "developer", "boss@ops.example": "admin"}
    assert "last active admin" in runner.invoke(args=["users", "set", "--email", "boss@ops.example",
                                                      "--role", "operator"]).output
    client.post("/signout")
    _sign_in(client, runner, "dev@ops.example", "developer")
    assert client.get("/admin/users").status_code == 403
