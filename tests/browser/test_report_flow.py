"""An operator's whole visit in Debian's Chromium: sign in through the OpenID Connect provider,
file a report, see the similar pain point while typing, say "affects me too", find the report in
search, sign out. Screenshots of the form and the report page land in tests/artifacts/."""

from __future__ import annotations

import re
import threading

import pytest
from werkzeug.serving import make_server

from .conftest import ARTIFACTS


@pytest.fixture
def app_overrides(oidc_provider):
    return {"OIDC_DISCOVERY_URL": f"{oidc_provider}/.well-known/openid-configuration", "OIDC_CLIENT_ID": "earshot",
            "OIDC_CLIENT_SECRET": "s3cret", "OIDC_NAME": "Ops ID"}


@pytest.fixture
def portal(app, runner, client):
    """The portal on loopback, with one pain point another operator reported already."""
    runner.invoke(args=["users", "create", "--email", "first@ops.example", "--role", "operator"])
    token = runner.invoke(args=["tokens", "create", "--email", "first@ops.example"]).output.strip().splitlines()[-1]
    first = client.post("/api/v1/field-reports", headers={"Authorization": f"Bearer {token}"}, json={
        "title": "Quota usage drifts after resize", "component": "quotas", "severity": "high",
        "what_happened": "After resizing instances the cores quota usage never comes down; tenants hit "
                         "their quota with nothing running."})
    assert first.status_code == 201
    point = client.get(f"/api/v1/field-reports/{first.get_json()['id']}").get_json()["painpoint"]
    assert client.get(f"/api/v1/painpoints/{point['id']}").get_json()["impact"]["operators"] == 1
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{httpd.server_port}", "painpoint": point["id"]}
    httpd.shutdown()
    thread.join(5)


def test_operator_signs_in_files_a_report_and_finds_it(portal, page, client):
    from playwright.sync_api import expect

    base = portal["url"]
    page.goto(base + "/reports/new")
    assert "/signin" in page.url  # asked to sign in first
    page.get_by_role("link", name="Sign in with Ops ID").click()
    page.locator("input[name=sub]").fill("alice")  # the provider's own page
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(base + "/reports/new")
    expect(page.locator("h1")).to_have_text("File a field report")

    page.get_by_label("Title").fill("Quota usage wrong after resize on Kilo")
    page.get_by_label("Component").select_option("quotas")
    page.get_by_label("What happened").fill(
        "After a resize the quota usage for cores stays at the old flavor. <script>alert('x')</script> "
        "**Every** tenant that resized is stuck.")
    suggestion = page.locator("#similar-list li").first
    expect(suggestion).to_contain_text("Quota usage drifts after resize", timeout=10_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report-form.png"), full_page=True)
    button = suggestion.locator("button.affects")
    expect(button).to_have_text("Affects me too")
    button.click()
    expect(button).to_have_text("✓ Counted: affects you too")
    # An operator who says "me too" counts as one more operator who hurts (3 points of impact).
    assert client.get(f"/api/v1/painpoints/{portal['painpoint']}").get_json()["impact"]["operators"] == 2

    page.get_by_label("Release or version").fill("Kilo")
    page.get_by_label("Nodes").fill("300")
    page.get_by_label("Workaround").fill("Run `nova-manage project quota_usage_refresh` nightly.")
    page.get_by_role("button", name="File report").click()
    page.wait_for_url("**/reports/*")
    expect(page.locator("h1")).to_have_text("Quota usage wrong after resize on Kilo")
    expect(page.locator(".md strong").first).to_have_text("Every")
    assert page.locator("main script").count() == 0 and page.dialogs == []  # type: ignore[attr-defined]
    page.screenshot(path=str(ARTIFACTS / "report-page.png"), full_page=True)
    report_url = page.url

    page.goto(base + "/search?q=quota+resize+kilo")
    # The report is found as a report (its pain point, named after it, is a hit of its own).
    hit = page.locator("ol.hits li", has_text="Quota usage wrong after resize on Kilo").filter(
        has=page.locator("span.badge", has_text=re.compile(r"^report$")))
    expect(hit).to_have_count(1)
    hit.get_by_role("link", name="Quota usage wrong after resize on Kilo").click()
    page.wait_for_url(report_url)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    page.goto(base + "/reports/new")
    assert "/signin" in page.url
