"""Pain or talk per thread: the rules' judgment, developers' overrides, filters and pages."""

import re

import pytest


@pytest.fixture
def seeded(import_paths, shared, client):
    import_paths(shared / "seeds")
    return {t["subject"]: t for t in client.get("/api/v1/threads").get_json()["items"]}


@pytest.fixture
def dev(runner):
    runner.invoke(args=["users", "create", "--email", "dev@x.org", "--role", "developer"])
    token = runner.invoke(args=["tokens", "create", "--email", "dev@x.org"]).output.strip().splitlines()[-1]
    return {"Authorization": f"Bearer {token}"}


def test_threads_carry_the_rules_judgment(seeded, client):
    post_mortem = seeded["Blameless post mortem"]
    assert post_mortem["pain"]["is_pain"] is True and post_mortem["pain"]["source"] == "rules"
    assert any("broken" in r for r in post_mortem["pain"]["reasons"])
    proposal = seeded["Simple proposal for stabilizing new features in-tree"]
    assert proposal["pain"]["is_pain"] is False
    painful = client.get("/api/v1/threads?pain=yes").get_json()
    calm = client.get("/api/v1/threads?pain=no").get_json()
    assert painful["total"] + calm["total"] == len(seeded)
    assert "Blameless post mortem" in {t["subject"] for t in painful["items"]}
    assert client.get("/api/v1/threads?pain=maybe").status_code == 400


def test_developers_override_and_reclassification_keeps_it(seeded, client, dev, runner):
    tid = seeded["Simple proposal for stabilizing new features in-tree"]["id"]
    url = f"/api/v1/threads/{tid}/pain"
    assert client.patch(url, json={"is_pain": True}).status_code == 401
    assert client.patch(url, json={"is_pain": "yes"}, headers=dev).status_code == 422
    done = client.patch(url, json={"is_pain": True}, headers=dev).get_json()
    assert done["pain"]["is_pain"] is True and done["pain"]["source"] == "manual"
    runner.invoke(args=["classify", "--all"])
    assert client.get(f"/api/v1/threads/{tid}").get_json()["pain"]["source"] == "manual"
    assert tid in [t["id"] for t in client.get("/api/v1/threads?pain=yes").get_json()["items"]]
    back = client.patch(url, json={"is_pain": None}, headers=dev).get_json()
    assert back["pain"] == {**back["pain"], "is_pain": False, "source": "rules"}


def test_pages_show_and_change_the_kind(app, seeded, client, dev):
    tid = seeded["Blameless post mortem"]["id"]
    assert 'class="badge pain"' in client.get("/?pain=yes").get_data(as_text=True)
    assert "production pain" in client.get(f"/threads/{tid}").get_data(as_text=True)
    app.config["WTF_CSRF_ENABLED"] = True
    page = client.get("/signin").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/signin", data={"token": dev["Authorization"][7:], "csrf_token": csrf})
    # Signing in starts a fresh session, so the form token comes from a page served after it.
    thread_page = client.get(f"/threads/{tid}").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', thread_page).group(1)
    bad = client.post(f"/threads/{tid}/components", data={"pain": "sometimes", "confirm": "quotas",
                                                          "csrf_token": csrf})
    assert bad.status_code == 422 and 'id="pain-error"' in bad.get_data(as_text=True)
    assert "quotas" not in [c["name"] for c in client.get(f"/api/v1/threads/{tid}").get_json()["components"]]
    ok = client.post(f"/threads/{tid}/components", data={"pain": "talk", "csrf_token": csrf})
    assert ok.status_code == 302
    assert client.get(f"/api/v1/threads/{tid}").get_json()["pain"]["is_pain"] is False
