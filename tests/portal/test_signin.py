"""Signing in on the pages, CSRF on every form, rate limits, and the correction form."""

import re

import pytest


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture
def dev_token(runner):
    runner.invoke(args=["users", "create", "--email", "dev@x.org", "--role", "developer"])
    return runner.invoke(args=["tokens", "create", "--email", "dev@x.org"]).output.strip().splitlines()[-1]


@pytest.fixture
def csrf_app(app):
    app.config["WTF_CSRF_ENABLED"] = True
    return app


def test_signin_needs_a_csrf_token_and_a_valid_token(csrf_app, client, dev_token):
    assert client.post("/signin", data={"token": dev_token}).status_code == 400  # no CSRF token
    page = client.get("/signin").get_data(as_text=True)
    bad = client.post("/signin", data={"token": "esk_nope", "csrf_token": _csrf(page)})
    assert bad.status_code == 422 and 'id="token-error"' in bad.get_data(as_text=True)
    empty = client.post("/signin", data={"token": "", "csrf_token": _csrf(page)})
    assert "Paste the token" in empty.get_data(as_text=True)
    ok = client.post("/signin", data={"token": dev_token, "csrf_token": _csrf(page), "next": "//evil.example/x"})
    assert ok.status_code == 302 and ok.headers["Location"] == "/"  # never off-site
    assert "Sign out" in client.get("/").get_data(as_text=True)
    cookie = client.get_cookie("session")
    assert cookie.http_only and cookie.same_site == "Lax"


def test_signin_is_rate_limited(app, client):
    app.config.update(WTF_CSRF_ENABLED=False, SIGNIN_RATE_LIMIT="10 per minute")
    codes = [client.post("/signin", data={"token": "esk_guess"}).status_code for _ in range(12)]
    assert codes[:10] == [422] * 10 and codes[-1] == 429


def test_developer_corrects_components_on_the_thread_page(csrf_app, client, dev_token, import_paths, shared):
    import_paths(shared / "seeds/004_73bcfa887d0a9a86.txt")
    [thread] = client.get("/api/v1/threads").get_json()["items"]
    url = f"/threads/{thread['id']}"
    assert "Correct this thread" not in client.get(url).get_data(as_text=True)  # anonymous
    assert client.post(f"{url}/components", data={}).status_code == 400  # no CSRF token
    page = client.get("/signin").get_data(as_text=True)
    client.post("/signin", data={"token": dev_token, "csrf_token": _csrf(page)})
    html = client.get(url).get_data(as_text=True)
    assert "Correct this thread" in html
    bad = client.post(f"{url}/components", data={"confirm": "nope", "csrf_token": _csrf(html)})
    assert bad.status_code == 422 and 'id="confirm-error"' in bad.get_data(as_text=True)
    done = client.post(f"{url}/components", data={"confirm": "quotas", "reject": ["compute"],
                                                  "csrf_token": _csrf(html)})
    assert done.status_code == 302
    names = [c["name"] for c in client.get(f"/api/v1/threads/{thread['id']}").get_json()["components"]]
    assert names[0] == "quotas" and "compute" not in names


def test_operators_cannot_correct(app, client, runner, import_paths, shared):
    app.config["WTF_CSRF_ENABLED"] = False
    import_paths(shared / "seeds/004_73bcfa887d0a9a86.txt")
    runner.invoke(args=["users", "create", "--email", "op@x.org", "--role", "operator"])
    token = runner.invoke(args=["tokens", "create", "--email", "op@x.org"]).output.strip().splitlines()[-1]
    client.post("/signin", data={"token": token})
    [thread] = client.get("/api/v1/threads").get_json()["items"]
    assert client.post(f"/threads/{thread['id']}/components", data={"confirm": "quotas"}).status_code == 403
    client.post("/signout")
    anonymous = client.post(f"/threads/{thread['id']}/components", data={"confirm": "quotas"})
    assert anonymous.status_code == 302 and "/signin" in anonymous.headers["Location"]
