"""Followed sources against a real HTTP server on loopback serving files from ../shared/corpus:
the first poll stores every message, the second stores none and is answered 304 Not Modified."""

import gzip
import json
import mailbox
import shutil
import threading
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest


class Archive:
    """Files under `root`, served with ETag and Last-Modified, answering conditional requests with
    304; a query string is part of the file name (`path__query`). Every answer is logged."""

    def __init__(self, root: Path, *, honour_conditional: bool = True):
        self.root = root
        self.log: list[tuple[str, int]] = []
        self.honour_conditional = honour_conditional
        archive = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                parts = urlsplit(self.path)
                name = parts.path.lstrip("/") + (f"__{parts.query}" if parts.query else "")
                path = archive.root / name
                if path.is_dir():
                    path = path / "index.html"
                if ".." in name or not path.is_file():
                    archive.log.append((self.path, 404))
                    self.send_error(404)
                    return
                stat = path.stat()
                etag = f'"{stat.st_size}-{stat.st_mtime_ns}"'
                modified = formatdate(stat.st_mtime, usegmt=True)
                since = self.headers.get("If-Modified-Since")
                fresh = self.headers.get("If-None-Match") == etag or (
                    since and not self.headers.get("If-None-Match")
                    and parsedate_to_datetime(since).timestamp() >= int(stat.st_mtime))
                if fresh and archive.honour_conditional:
                    archive.log.append((self.path, 304))
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                body = path.read_bytes()
                archive.log.append((self.path, 200))
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", modified)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def archive(shared, tmp_path, app):
    root = tmp_path / "www"
    (root / "feeds").mkdir(parents=True)
    shutil.copy(shared / "corpus/feeds/feedjira/AmazonWebServicesBlog.xml", root / "feeds/aws.xml")
    shutil.copy(shared / "corpus/feeds/feedjira/json_feed.json", root / "feeds/inessential.json")
    (root / "feeds/broken.xml").write_text("<html><body>moved</body>", encoding="utf-8")
    lists = root / "pipermail/example"
    lists.mkdir(parents=True)
    perceval = shared / "corpus/pipermail/perceval"
    shutil.copy(perceval / "pipermail_index.html", lists / "index.html")
    shutil.copy(perceval / "pipermail_2016_april.mbox", lists / "2016-April.txt")
    shutil.copy(perceval / "pipermail_2016_march.mbox", lists / "2016-March.txt")
    november = (perceval / "pipermail_2015_november.mbox").read_bytes()
    (lists / "2015-November.txt.gz").write_bytes(gzip.compress(november))
    server = Archive(root)
    app.config["FETCH_HOST_INTERVAL"] = 0.0
    yield server
    server.close()


def _count(path: Path) -> int:
    """Messages in an mbox, as Python's own mailbox module counts them."""
    box = mailbox.mbox(path, create=False)
    try:
        return len(box)
    finally:
        box.close()


def _poll(runner, *args):
    out = runner.invoke(args=["sources", "poll", "--json", *args])
    assert out.exit_code == 0, out.output
    return json.loads(out.output.strip().splitlines()[-1])


def test_second_poll_stores_nothing_and_is_answered_not_modified(runner, archive, shared, client):
    assert runner.invoke(args=["sources", "add", "--kind", "feed", "--url", f"{archive.url}/feeds/aws.xml",
                               "--list", "aws-blog", "--every", "30m"]).exit_code == 0
    assert runner.invoke(args=["sources", "add", "--kind", "feed", "--url", f"{archive.url}/feeds/inessential.json",
                               "--list", "inessential"]).exit_code == 0
    assert runner.invoke(args=["sources", "add", "--kind", "pipermail", "--url", f"{archive.url}/pipermail/example/",
                               "--list", "example", "--role", "operator"]).exit_code == 0
    perceval = shared / "corpus/pipermail/perceval"
    in_archive = sum(_count(perceval / f) for f in ("pipermail_2015_november.mbox", "pipermail_2016_april.mbox",
                                                    "pipermail_2016_march.mbox"))
    first = _poll(runner)
    by_source = {r["source"]: r for r in first["sources"]}
    assert by_source["aws-blog"]["messages_new"] == 10
    assert by_source["inessential"]["messages_new"] == 20  # JSON Feed
    assert by_source["example"]["messages_new"] == in_archive and by_source["example"]["fetched"] == 4
    assert first["problems"] == [] and all(not r["unchanged"] for r in first["sources"])
    assert {code for _path, code in archive.log} == {200}

    archive.log.clear()
    second = _poll(runner)
    assert second["messages_new"] == 0 and second["problems"] == []
    assert all(r["unchanged"] for r in second["sources"])
    assert archive.log and {code for _path, code in archive.log} == {304}  # every request: Not Modified
    lists = {t["list"] for t in client.get("/api/v1/threads?limit=200").get_json()["items"]}
    assert {"aws-blog", "inessential", "example"} <= lists
    assert "example" in runner.invoke(args=["lists", "show"]).output


def test_a_server_that_ignores_conditional_requests_still_stores_nothing_twice(runner, archive):
    runner.invoke(args=["sources", "add", "--kind", "feed", "--url", f"{archive.url}/feeds/aws.xml", "--list", "aws"])
    assert _poll(runner)["messages_new"] == 10
    archive.honour_conditional = False
    again = _poll(runner)
    assert again["messages_new"] == 0 and again["sources"][0]["unchanged"] is True
    assert {code for _path, code in archive.log[-1:]} == {200}


def test_broken_and_missing_sources_are_problems_not_crashes(runner, archive):
    runner.invoke(args=["sources", "add", "--kind", "feed", "--url", f"{archive.url}/feeds/broken.xml",
                        "--list", "broken"])
    runner.invoke(args=["sources", "add", "--kind", "feed", "--url", f"{archive.url}/feeds/gone.xml", "--list", "gone"])
    runner.invoke(args=["sources", "add", "--kind", "feed", "--url", f"{archive.url}/feeds/aws.xml", "--list", "aws"])
    result = _poll(runner)
    by_source = {r["source"]: r for r in result["sources"]}
    assert by_source["broken"]["status"] == "problems"
    assert "not a feed Earshot can read" in by_source["broken"]["problems"][0]["reason"]
    assert by_source["gone"]["status"] == "failed" and "HTTP 404" in by_source["gone"]["problems"][0]["reason"]
    assert by_source["aws"]["messages_new"] == 10  # the others still ran
    listed = json.loads(runner.invoke(args=["sources", "list", "--json"]).output)
    assert {s["name"]: s["last_status"] for s in listed} == {"broken": "problems", "gone": "failed", "aws": "new"}


def test_month_archives_and_tracker_feeds(runner, archive, app, client):
    # A Pony Mail host: one mbox per month; a missing month is a problem, the others are stored.
    api = archive.root / "api"
    api.mkdir()
    perceval = Path(archive.root / "pipermail/example")
    (api / "mbox.lua__list=dev%40example.org&date=2016-03").write_bytes((perceval / "2016-March.txt").read_bytes())
    (api / "mbox.lua__list=dev%40example.org&date=2016-04").write_bytes((perceval / "2016-April.txt").read_bytes())
    assert runner.invoke(args=["sources", "add", "--kind", "ponymail", "--url", archive.url, "--list",
                               "dev@example.org", "--since", "2016-03"]).exit_code == 0
    result = _poll(runner, "dev@example.org")["sources"][0]
    assert result["messages_new"] == 4
    assert all(p["reason"].endswith("HTTP 404") for p in result["problems"])  # months after April 2016
    # A tracker feed updates tickets.
    (archive.root / "feeds/bugs.xml").write_text(
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Bugs</title>'
        '<item><title>Bug #1400001: routers lose their gateway</title>'
        '<link>https://bugs.launchpad.net/neutron/+bug/1400001</link>'
        '<pubDate>Mon, 02 Jun 2014 10:00:00 +0000</pubDate></item></channel></rss>', encoding="utf-8")
    runner.invoke(args=["sources", "add", "--kind", "tracker", "--url", f"{archive.url}/feeds/bugs.xml",
                        "--name", "neutron-bugs"])
    assert _poll(runner, "neutron-bugs")["sources"][0]["tickets_updated"] == 1
    (ticket,) = client.get("/api/v1/tickets").get_json()["items"]
    assert ticket["ref"] == "lp:1400001" and ticket["title"] == "routers lose their gateway"


def test_source_definitions_are_checked(runner, app):
    for args, message in ((["--kind", "feed", "--url", "ftp://x/feed", "--list", "l"], "--url"),
                          (["--kind", "feed", "--url", "http://x/feed"], "--list"),
                          (["--kind", "ponymail", "--url", "http://x", "--list", "dev"], "list@domain"),
                          (["--kind", "feed", "--url", "http://x/f", "--list", "l", "--every", "1m"], "at least 5m"),
                          (["--kind", "hyperkitty", "--url", "http://x/", "--list", "l", "--since", "2016-13"],
                           "YYYY-MM")):
        out = runner.invoke(args=["sources", "add", *args])
        assert out.exit_code != 0 and message in out.output, (args, out.output)
    app.config["FETCH_ALLOW_HOSTS"] = "lists.example.org"
    runner.invoke(args=["sources", "add", "--kind", "feed", "--url", "http://127.0.0.1:9/feed", "--list", "l"])
    result = _poll(runner)["sources"][0]
    assert result["status"] == "failed" and "not in EARSHOT_FETCH_ALLOW_HOSTS" in result["problems"][0]["reason"]


def test_admins_manage_sources_on_a_page(app, client, runner, archive):
    import re

    for email, role in (("admin@x.org", "admin"), ("dev@x.org", "developer")):
        runner.invoke(args=["users", "create", "--email", email, "--role", role])
    tokens = {e: runner.invoke(args=["tokens", "create", "--email", e]).output.strip().splitlines()[-1]
              for e in ("admin@x.org", "dev@x.org")}
    app.config["WTF_CSRF_ENABLED"] = True

    def sign_in(email):
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/signin").get_data(as_text=True)).group(1)
        client.post("/signin", data={"token": tokens[email], "csrf_token": csrf})
        return re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)

    assert client.get("/admin/sources").status_code == 302
    sign_in("dev@x.org")
    assert client.get("/admin/sources").status_code == 403
    csrf = sign_in("admin@x.org")
    bad = client.post("/admin/sources", data={"kind": "feed", "url": "gopher://x", "list": "aws", "csrf_token": csrf})
    assert bad.status_code == 422 and 'id="url-error"' in bad.get_data(as_text=True)
    ok = client.post("/admin/sources", data={"kind": "feed", "url": f"{archive.url}/feeds/aws.xml", "list": "aws",
                                             "every": "2h", "csrf_token": csrf})
    assert ok.status_code == 302
    page = client.get("/admin/sources").get_data(as_text=True)
    assert "every 120 min" in page and "last run never" in page
    sid = re.search(r'name="source" value="(\d+)"', page).group(1)
    client.post("/admin/sources", data={"action": "poll", "source": sid, "csrf_token": csrf})
    assert "10 messages" in client.get("/admin/sources").get_data(as_text=True)
    client.post("/admin/sources", data={"action": "disable", "source": sid, "csrf_token": csrf})
    assert json.loads(runner.invoke(args=["sources", "list", "--json"]).output)[0]["enabled"] is False
    bad = client.post("/admin/sources", data={"action": "every", "source": sid, "every": "1m", "csrf_token": csrf})
    assert bad.status_code == 422 and f'id="every-{sid}-error"' in bad.get_data(as_text=True)


def test_the_scheduler_polls_sources_when_they_are_due(app, runner, archive):
    from datetime import datetime

    from portal.scheduler import poll_sources

    runner.invoke(args=["sources", "add", "--kind", "feed", "--url", f"{archive.url}/feeds/aws.xml", "--list", "aws",
                        "--every", "30m"])
    runner.invoke(args=["sources", "add", "--kind", "feed", "--url", f"{archive.url}/feeds/gone.xml", "--list", "gone",
                        "--every", "30m"])
    first = poll_sources(app, now=datetime(2026, 1, 1, 12, 0))
    assert {r["source"]: r["status"] for r in first} == {"aws": "new", "gone": "failed"}
    assert poll_sources(app, now=datetime(2026, 1, 1, 12, 10)) == []  # not due yet
    again = poll_sources(app, now=datetime(2026, 1, 1, 12, 31))
    assert {r["source"]: r["status"] for r in again} == {"aws": "unchanged", "gone": "failed"}
