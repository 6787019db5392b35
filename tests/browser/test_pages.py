"""The pages as a person sees them: Debian's Chromium driven by Playwright against a real server
on loopback. Skipped locally when Chromium or Playwright is absent; CI installs both."""

from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server

from .conftest import ARTIFACTS

HOSTILE = ("From x@y Mon Sep  1 10:00:00 2014\nFrom: Mallory <m@evil.example>\nDate: Mon, 1 Sep 2014 10:00:00 +0000\n"
           "Subject: <img src=x onerror=alert(1)> quota drift\nMessage-ID: <h@x>\n\n<script>alert(2)</script> body\n\n")


@pytest.fixture
def server(app, import_paths, shared, tmp_path):
    (tmp_path / "hostile.mbox").write_text(HOSTILE, encoding="utf-8")
    import_paths(tmp_path / "hostile.mbox", list_name="openstack-operators")
    import_paths(shared / "seeds")
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(5)


def _fits_phone(pg) -> bool:
    return pg.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth + 1")


def test_thread_list_and_thread_page_on_a_phone(server, page):
    page.goto(server + "/")
    assert page.locator("h1").inner_text().startswith("Threads")
    assert _fits_phone(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "threads-phone.png"), full_page=True)
    page.get_by_role("link", name="Blameless post mortem").click()
    page.wait_for_url("**/threads/*")
    page.wait_for_load_state("load")
    assert page.locator("article.message").count() == 11
    quoted = page.locator("details.quoted").first
    assert quoted.get_attribute("open") is None  # quoted text is folded away
    assert not quoted.locator(".text").is_visible()
    quoted.locator("summary").click()
    assert quoted.locator(".text").is_visible()
    assert _fits_phone(page)
    page.screenshot(path=str(ARTIFACTS / "thread-phone.png"), full_page=True)


def test_filters_show_the_error_beside_the_field(server, page):
    page.goto(server + "/")
    from playwright.sync_api import expect

    page.fill("input[name=since]", "someday")
    page.click("button[type=submit]")
    page.wait_for_url("**since=someday**")
    error = page.locator("#since-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("date")
    page.select_option("select[name=list]", "openstack-operators")
    page.fill("input[name=since]", "")
    page.click("button[type=submit]")
    page.wait_for_url("**list=openstack-operators**")
    expect(page.locator("ol.threads li")).to_have_count(2)


def test_markup_from_archives_never_runs(server, page):
    page.goto(server + "/?list=openstack-operators")
    page.get_by_role("link", name="quota drift").click()
    page.wait_for_url("**/threads/*")
    page.wait_for_load_state("load")
    assert page.dialogs == []  # type: ignore[attr-defined]
    assert "<script>alert(2)</script>" in page.locator("article .text").first.inner_text()


def test_developer_signs_in_and_confirms_a_component(server, page, runner):
    runner.invoke(args=["users", "create", "--email", "dev@x.org", "--role", "developer"])
    token = runner.invoke(args=["tokens", "create", "--email", "dev@x.org"]).output.strip().splitlines()[-1]
    from playwright.sync_api import expect

    page.goto(server + "/")
    page.get_by_role("link", name="Sign in").click()
    page.fill("input[name=token]", token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".flash")).to_contain_text("Signed in as dev@x.org")
    page.get_by_role("link", name="Blameless post mortem").click()
    page.wait_for_url("**/threads/*")
    page.select_option("select[name=confirm]", "ci-testing")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash")).to_contain_text("Components updated")
    expect(page.locator(".facts .badge.comp").first).to_contain_text("ci-testing")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "thread-corrected-phone.png"), full_page=False)


def test_developer_triages_a_pain_point_on_a_phone(server, page, runner):
    runner.invoke(args=["users", "create", "--email", "dev@x.org", "--role", "developer"])
    token = runner.invoke(args=["tokens", "create", "--email", "dev@x.org"]).output.strip().splitlines()[-1]
    from playwright.sync_api import expect

    page.goto(server + "/signin")
    page.fill("input[name=token]", token)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Triage").click()
    page.wait_for_url("**/triage**")
    expect(page.locator(".coverage .rate")).to_contain_text("linked to a ticket")
    assert _fits_phone(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "triage-phone.png"), full_page=True)
    page.get_by_role("link", name="Blameless post mortem").click()
    page.wait_for_url("**/painpoints/*")
    page.fill("input[name=ref]", "not a ticket")
    page.get_by_role("button", name="Link", exact=True).click()
    expect(page.locator("#ref-error")).to_contain_text("ticket reference")
    page.fill("input[name=ref]", "https://progress.opensuse.org/issues/170209")
    page.get_by_role("button", name="Link", exact=True).click()
    expect(page.locator(".flash")).to_contain_text("redmine:170209 linked")
    expect(page.locator(".badge.status-tracked").first).to_be_visible()
    page.get_by_role("button", name="Affects me too").click()
    expect(page.get_by_role("button", name="✓ Affects me too")).to_be_visible()
    assert _fits_phone(page)
    assert page.dialogs == []  # type: ignore[attr-defined]
    page.screenshot(path=str(ARTIFACTS / "painpoint-phone.png"), full_page=True)


def test_search_page_on_a_phone(server, page):
    from playwright.sync_api import expect

    page.goto(server + "/search")
    page.fill("input[name=q]", "blameless post mortem")
    page.keyboard.press("Enter")
    page.wait_for_url("**/search?**")
    expect(page.locator("ol.hits li").first).to_contain_text("Blameless post mortem")
    expect(page.locator("ol.hits mark").first).to_be_visible()
    page.get_by_text("How to search").click()
    expect(page.locator("details.help code").first).to_be_visible()
    page.locator(".facets a", has_text="painpoint").click()
    page.wait_for_url("**kind=painpoint**")
    expect(page.locator("ol.hits .badge").first).to_have_text("painpoint")
    assert _fits_phone(page)
    page.fill("input[name=q]", "isotovido")
    page.keyboard.press("Enter")
    page.get_by_role("link", name="isotovideo").click()
    expect(page.locator("ol.hits li").first).to_contain_text("Action #175518")
    assert page.dialogs == []  # type: ignore[attr-defined]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "search-phone.png"), full_page=True)
