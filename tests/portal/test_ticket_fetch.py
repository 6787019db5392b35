"""Fetching tickets from tracker APIs: a real HTTP server on loopback serves recorded responses."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

T = "corpus/tickets"


@pytest.fixture
def tracker_server(shared):
    routes = {
        "/lp/bugs/1": shared / T / "launchpad/perceval/launchpad_issue_1.json",
        "/lp/bugs/1/bug_tasks": shared / T / "launchpad/perceval/launchpad_issues_page_1.json",
        "/jira/rest/api/2/issue/TOOLS-102": shared / T / "jira/eucalyptus-tools/issues/TOOLS-102.json",
        "/jira/rest/dev-status/1.0/issue/detail": shared / T / "jira/eucalyptus-tools/commits/commits_14407.json",
        "/gh/repos/zhquan_example/repo/issues/1": shared / T / "github/perceval/github_issue_1.json",
        "/redmine/issues/9772.json": shared / T / "redmine/progress.opensuse.org/"
                                                  "progress.opensuse.org_issues_9772_include_journals.json",
    }
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            path = self.path.split("?", 1)[0]
            seen.append((path, self.headers.get("User-Agent", "")))
            if path not in routes:
                self.send_response(404)
                self.end_headers()
                return
            body = routes[path].read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_fetch_fills_tickets_that_threads_mention(app, runner, client, import_paths, tmp_path, tracker_server):
    base, seen = tracker_server
    app.config.update(LAUNCHPAD_API_URL=f"{base}/lp", JIRA_URL=f"{base}/jira", GITHUB_API_URL=f"{base}/gh",
                      REDMINE_URL=f"{base}/redmine", JIRA_PROJECTS="TOOLS")
    (tmp_path / "t.mbox").write_text(
        "From a@b Mon Sep  1 10:00:00 2014\nFrom: Op <op@x.org>\nDate: Mon, 1 Sep 2014 10:00:00 +0000\n"
        "Subject: tools broke\nMessage-ID: <t1@x>\n\nSee https://bugs.launchpad.net/bugs/1, TOOLS-102,\n"
        "https://github.com/zhquan_example/repo/issues/1, https://progress.opensuse.org/issues/9772 and\n"
        "https://bugs.launchpad.net/bugs/999999 which the tracker does not know.\n\n", encoding="utf-8")
    import_paths(tmp_path / "t.mbox")
    out = runner.invoke(args=["tickets", "fetch", "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    assert summary["tickets_new"] == 4 and summary["evidence_new"] >= 1
    [problem] = summary["problems"]
    assert "999999" in problem["file"] and "404" in problem["reason"]
    assert all(ua.startswith("Earshot/") for _path, ua in seen)
    [thread] = client.get("/api/v1/threads").get_json()["items"]
    tickets = {t["ref"]: t for t in client.get(f"/api/v1/threads/{thread['id']}").get_json()["tickets"]}
    assert tickets["jira:TOOLS-102"]["fix_state"] == "released" and tickets["jira:TOOLS-102"]["title"]
    assert tickets["lp:1"]["status"] == "Triaged"
    assert tickets["redmine:9772"]["title"]
    again = json.loads(runner.invoke(args=["tickets", "fetch", "--json"]).output)
    assert again["tickets_new"] == 0 and again["evidence_new"] == 0


def test_fetch_needs_a_configured_tracker(runner):
    out = runner.invoke(args=["tickets", "fetch"])
    assert out.exit_code != 0 and "no tracker URL configured" in out.output


def test_only_http_and_https_are_fetched():
    from portal.fetch import FetchError, get

    with pytest.raises(FetchError, match="only http and https"):
        get("file:///etc/passwd")
