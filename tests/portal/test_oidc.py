"""Sign-in end to end: a real OpenID Connect provider (oidc-provider-mock: Authlib's server,
signed ID tokens) and a GitHub-shaped OAuth2 server, both on loopback. Earshot's client is not
patched: it reads discovery, redirects, exchanges the code over HTTP and checks the ID token."""

from __future__ import annotations

import json
import threading
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from flask import Flask, jsonify, redirect, request
from werkzeug.serving import make_server

from portal import create_app


@pytest.fixture
def app_overrides(oidc_provider):
    return {"OIDC_DISCOVERY_URL": f"{oidc_provider}/.well-known/openid-configuration", "OIDC_CLIENT_ID": "earshot",
            "OIDC_CLIENT_SECRET": "s3cret", "OIDC_NAME": "Ops ID", "ADMIN_EMAILS": "boss@ops.example"}


def _sign_in(client, sub: str, next_url: str = "/reports/new"):
    start = client.get(f"/signin/oidc?next={next_url}")
    assert start.status_code == 302
    authorize = start.headers["Location"]
    params = parse_qs(urlsplit(authorize).query)
    assert params["code_challenge_method"] == ["S256"] and params["nonce"] and params["state"]
    # The person picks who they are at the provider, which redirects back with a code.
    answer = httpx.post(authorize, data={"sub": sub}, follow_redirects=False)
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["Location"])
    assert back.path == "/signin/oidc/callback"
    return client.get(f"{back.path}?{back.query}")


def test_sign_in_with_openid_connect_creates_an_operator(client, runner):
    page = client.get("/signin").get_data(as_text=True)
    assert "Sign in with Ops ID" in page
    done = _sign_in(client, "alice")
    assert done.status_code == 302 and done.headers["Location"] == "/reports/new"
    assert "File a field report" in client.get("/reports/new").get_data(as_text=True)
    users = {u["email"]: u for u in json.loads(runner.invoke(args=["users", "list", "--json"]).output)}
    alice = users["alice@ops.example"]
    assert alice["role"] == "operator" and alice["name"] == "Alice Ops"
    assert alice["identity"].startswith("oidc:http://localhost:") and alice["identity"].endswith("|alice")
    # Signing in again finds the same account by the provider's subject.
    client.post("/signout")
    _sign_in(client, "alice")
    assert len(json.loads(runner.invoke(args=["users", "list", "--json"]).output)) == 1


def test_first_admin_comes_from_configuration(client, runner):
    _sign_in(client, "boss")
    users = {u["email"]: u["role"] for u in json.loads(
        runner.invoke(args=["users", "list", "--json"]).output)}
    assert users["boss@ops.example"] == "admin"
    assert client.get("/admin/sources").status_code == 200


def test_an_unverified_address_cannot_take_over_an_account(client, runner):
    runner.invoke(args=["users", "create", "--email", "dev@project.example", "--role", "developer"])
    refused = _sign_in(client, "mallory")
    assert refused.status_code == 403
    assert "not verified" in refused.get_data(as_text=True)
    assert client.get("/reports/new").status_code == 302  # still anonymous


def test_denied_or_forged_answers_sign_nobody_in(client):
    start = client.get("/signin/oidc")
    denied = httpx.post(start.headers["Location"], data={"action": "deny"}, follow_redirects=False)
    back = urlsplit(denied.headers["Location"])
    page = client.get(f"{back.path}?{back.query}")
    assert page.status_code == 400 and "not completed" in page.get_data(as_text=True)
    forged = client.get("/signin/oidc/callback?code=stolen&state=guessed")
    assert forged.status_code == 400
    assert client.get("/reports/new").status_code == 302


def test_a_disabled_account_cannot_sign_in(client, runner):
    _sign_in(client, "alice")
    client.post("/signout")
    runner.invoke(args=["users", "set", "--email", "alice@ops.example", "--disable"])
    assert _sign_in(client, "alice").status_code == 403


# --- GitHub ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def github():
    """A server shaped like GitHub's OAuth app endpoints and REST API, on loopback."""
    gh = Flask("fake-github")
    codes: dict[str, str] = {}

    @gh.get("/login/oauth/authorize")
    def authorize():
        codes["c0de"] = request.args["client_id"]
        return redirect(f"{request.args['redirect_uri']}?code=c0de&state={request.args['state']}")

    @gh.post("/login/oauth/access_token")
    def token():
        if request.form.get("code") not in codes or request.form.get("client_secret", "gh-secret") != "gh-secret":
            return jsonify({"error": "bad_verification_code"}), 400
        return jsonify({"access_token": "gho_test", "token_type": "bearer", "scope": "read:user,user:email"})

    @gh.get("/user")
    def user():
        if request.headers.get("Authorization") != "Bearer gho_test":
            return jsonify({"message": "Bad credentials"}), 401
        return jsonify({"id": 4242, "login": "octo", "name": "Octo Cat", "email": None})

    @gh.get("/user/emails")
    def emails():
        return jsonify([{"email": "octo@ops.example", "primary": True, "verified": True}])

    server = make_server("127.0.0.1", 0, gh, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_sign_in_with_github(tmp_path, github):
    from portal import db as dbmod

    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "gh"), "SECRET_KEY": "t",
                      "DATABASE_URL": "", "GITHUB_CLIENT_ID": "gh-client", "GITHUB_CLIENT_SECRET": "gh-secret",
                      "GITHUB_OAUTH_URL": github, "GITHUB_USER_API_URL": github})
    dbmod.upgrade(app.config["SQLALCHEMY_URL"])
    client = app.test_client()
    assert "Sign in with GitHub" in client.get("/signin").get_data(as_text=True)
    start = client.get("/signin/github?next=/reports")
    answer = httpx.get(start.headers["Location"], follow_redirects=False)
    back = urlsplit(answer.headers["Location"])
    done = client.get(f"{back.path}?{back.query}")
    assert done.status_code == 302 and done.headers["Location"] == "/reports"
    with app.app_context():
        from sqlmodel import Session, select

        from portal.models import User

        with Session(dbmod.engine()) as s:
            [user] = s.exec(select(User)).all()
            assert (user.email, user.identity, user.role) == ("octo@ops.example", "github:4242", "operator")
    dbmod._engines.pop(app.config["SQLALCHEMY_URL"]).dispose()


def test_demo_sign_in_is_marked_and_refused_in_production(tmp_path):
    from portal import db as dbmod

    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "demo"), "SECRET_KEY": "t", "DATABASE_URL": "",
                      "DEMO_SIGNIN": "1", "WTF_CSRF_ENABLED": False})
    dbmod.upgrade(app.config["SQLALCHEMY_URL"])
    client = app.test_client()
    page = client.get("/signin").get_data(as_text=True)
    assert "Demo mode" in page and "Demo developer" in page
    done = client.post("/signin/demo", data={"role": "developer", "next": "/triage"})
    assert done.status_code == 302 and done.headers["Location"] == "/triage"
    assert "demo-developer@earshot.invalid" in client.get("/settings").get_data(as_text=True)
    assert client.post("/signin/demo", data={"role": "root"}).status_code == 422
    dbmod._engines.pop(app.config["SQLALCHEMY_URL"]).dispose()
    with pytest.raises(RuntimeError, match="DEMO_SIGNIN"):
        create_app({"ENV": "production", "SECRET_KEY": "x" * 40, "DEMO_SIGNIN": "1",
                    "DATA_DIR": str(tmp_path / "prod")})


def test_demo_sign_in_is_off_unless_configured(app, client):
    app.config["WTF_CSRF_ENABLED"] = False
    assert client.post("/signin/demo", data={"role": "admin"}).status_code == 404
    assert "Demo" not in client.get("/signin").get_data(as_text=True)
