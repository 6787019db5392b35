"""The whole benchmark in one run, beside the tools a list admin would otherwise use.

    python bench/run.py [--messages 20000] [--runs 3] [--import-runs 3] [--web-seconds 10] [--json]

Generates N messages with the project's own generator (an mbox and a Maildir of the same
messages), then measures, in this order and on this machine:

- import: `flask import` of the mbox (parse, thread, classify, link, group, store, index) in a
  child process with its peak RSS, beside `notmuch new` and `mu index` on the Maildir, each
  `--import-runs` times from scratch, taking turns, compared by their medians;
- search: p50/p95 of a fixed query mix (rare, common, two and three words; top 20 with facets)
  beside `notmuch search --limit=20` of the same words;
- similar: `/api/v1/similar` through the app (no network), index build and p50/p95;
- digest: building the last week's digest and 100 recipients' cuts, beside listing every pain point;
- web: gunicorn with two workers on loopback under 8 concurrent clients for the thread and search
  pages, beside the trivial /healthz in the same run.

Progress goes to stderr; the last line of stdout is one JSON object (see bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from import_bench import import_with_earshot, notmuch_env, scratch  # noqa: E402
from search_bench import QUERIES, notmuch_search, pct, time_mix  # noqa: E402

from portal.demo import write_maildir, write_mbox  # noqa: E402


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _timed_run(cmd: list[str], env: dict[str, str]) -> float | None:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        say(f"  {' '.join(cmd[:2])} failed: {proc.stderr.strip()[-300:]}")
        return None
    return time.perf_counter() - start


def mu_index(maildir: Path, work: Path) -> float | None:
    """`mu index` (Debian's maildir-utils) on the Maildir, from a fresh mu database."""
    if shutil.which("mu") is None:
        say("  mu is not installed (apt-get install maildir-utils): no mu figure")
        return None
    home = work / "mu-home"
    env = dict(os.environ)
    if subprocess.run(["mu", "init", f"--muhome={home}", f"--maildir={maildir}"], env=env,
                      capture_output=True).returncode != 0:
        return None
    return _timed_run(["mu", "index", f"--muhome={home}", "--quiet"], env)


def measure_import(n: int, mbox: Path, maildir: Path, work: Path, runs: int = 1) -> dict[str, object]:
    """Each tool `runs` times from a fresh database, taking turns (the machine's speed drifts),
    compared by their median times; every run's seconds are reported too."""
    ours: list[dict[str, Any]] = []
    nm: list[float] = []
    mu: list[float] = []
    nenv = notmuch_env(maildir, work)
    for i in range(runs):
        say(f"import {i + 1}/{runs}: earshot on {n} messages")
        shutil.rmtree(work / "data", ignore_errors=True)
        ours.append(import_with_earshot(mbox, work / "data"))
        if nenv:
            say(f"import {i + 1}/{runs}: notmuch new")
            shutil.rmtree(maildir / ".notmuch", ignore_errors=True)
            nm += [t for t in [_timed_run(["notmuch", "new", "--quiet"], nenv)] if t]
        say(f"import {i + 1}/{runs}: mu index")
        shutil.rmtree(work / "mu-home", ignore_errors=True)
        mu += [t for t in [mu_index(maildir, work)] if t]
    seconds = statistics.median(r["seconds"] for r in ours)
    nm_s = statistics.median(nm) if nm else None
    mu_s = statistics.median(mu) if mu else None
    out: dict[str, object] = {
        "messages": n, "messages_stored": ours[-1]["messages_new"], "runs": runs,
        "earshot_msgs_per_s": round(n / seconds, 1),
        "notmuch_msgs_per_s": round(n / nm_s, 1) if nm_s else None,
        "mu_msgs_per_s": round(n / mu_s, 1) if mu_s else None,
        # Above 1.0: Earshot is faster than the other tool.
        "ratio_vs_notmuch": round(nm_s / seconds, 3) if nm_s else None,
        "ratio_vs_mu": round(mu_s / seconds, 3) if mu_s else None,
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in ours), 1),
        "earshot_s": [round(r["seconds"], 2) for r in ours], "notmuch_s": [round(t, 2) for t in nm],
        "mu_s": [round(t, 2) for t in mu],
    }
    return out


def measure_search(app, maildir: Path, work: Path, runs: int) -> dict[str, object]:
    from portal.search import index_for, parse

    say("search: query mix")
    with app.app_context():
        index = index_for(app.config)
        ours = [t for times in time_mix(lambda q: index.search(parse(q), per_page=20), runs).values() for t in times]
    nenv = notmuch_env(maildir, work)
    theirs = [t for times in time_mix(notmuch_search(nenv), runs).values() for t in times] if nenv else []
    return {"queries": len(ours), "p50_ms": pct(ours, 50), "p95_ms": pct(ours, 95),
            "notmuch_p50_ms": pct(theirs, 50) if theirs else None,
            "notmuch_p95_ms": pct(theirs, 95) if theirs else None}


def measure_similar(app, runs: int) -> dict[str, object]:
    from portal import db as dbmod
    from portal.similar import thread_docs

    say("similar: /api/v1/similar")
    with app.app_context(), dbmod.session_scope() as s:
        docs = list(thread_docs(s))
    rng = random.Random(5)
    drafts = [(d.title, d.text[:400]) for d in rng.sample(docs, min(50, len(docs)))]
    client = app.test_client()
    start = time.perf_counter()
    client.get("/api/v1/similar", query_string={"text": "warm up the index", "k": 10})
    build = time.perf_counter() - start
    times = []
    for _ in range(runs):
        for title, text in drafts:
            t = time.perf_counter()
            r = client.get("/api/v1/similar", query_string={"title": title, "text": text, "k": 10})
            times.append(time.perf_counter() - t)
            assert r.status_code == 200
    return {"threads": len(docs), "first_call_s": round(build, 2), "p50_ms": pct(times, 50), "p95_ms": pct(times, 95)}


def measure_digest(app) -> dict[str, object]:
    from sqlalchemy import func, select

    from portal import db as dbmod
    from portal.classify import load_taxonomy
    from portal.cycles import CycleSpan
    from portal.digest import build, for_recipient, week_of
    from portal.models import Message, PainPoint
    from portal.painpoints import list_painpoints

    say("digest: build")
    with app.app_context(), dbmod.session_scope() as s:
        points = s.execute(select(func.count(PainPoint.id)).where(PainPoint.merged_into_id.is_(None))).scalar_one()
        first, last = s.execute(select(func.min(Message.date), func.max(Message.date))).one()
        cycle = CycleSpan("bench", first - timedelta(days=1), last + timedelta(days=8))
        names = list(load_taxonomy().components)
        start = time.perf_counter()
        list_painpoints(s, limit=10**7)
        reference = time.perf_counter() - start
        start = time.perf_counter()
        data = build(s, cycle, week_of(last), base_url="https://earshot.example.org")
        for r in range(100):
            for_recipient(data, None if r % 10 == 0 else frozenset({names[r % len(names)]}))
        built = time.perf_counter() - start
    return {"pain_points": points, "recipients": 100, "build_s": round(built, 2),
            "reference_list_s": round(reference, 2), "ratio_vs_reference": round(built / reference, 2)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load(base: str, paths: list[str], seconds: float, clients: int = 8) -> dict[str, object]:
    import httpx

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        rng = random.Random(i)
        with httpx.Client(base_url=base, timeout=30) as http:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                r = http.get(rng.choice(paths))
                elapsed = time.perf_counter() - t
                with lock:
                    latencies.append(elapsed)
                    if r.status_code != 200:
                        errors[0] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"requests": len(latencies), "req_per_s": round(len(latencies) / wall, 1), "p50_ms": pct(latencies, 50),
            "p95_ms": pct(latencies, 95), "errors": errors[0]}


def measure_web(data_dir: Path, seconds: float) -> dict[str, object]:
    from sqlalchemy import create_engine, text

    if shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None and shutil.which("gunicorn") is None:
        say("  gunicorn is not installed: no web figure")
        return {}
    say("web: gunicorn, 2 workers, 8 clients")
    engine = create_engine(f"sqlite:///{data_dir / 'earshot.sqlite3'}")
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM thread ORDER BY id"))]
    engine.dispose()
    rng = random.Random(3)
    port = _free_port()
    env = {**os.environ, "EARSHOT_DATA_DIR": str(data_dir), "EARSHOT_SECRET_KEY": "bench", "EARSHOT_ENV": "production",
           "EARSHOT_RATELIMIT_ENABLED": "0"}
    env.pop("EARSHOT_DATABASE_URL", None)
    gunicorn = str(Path(sys.executable).parent / "gunicorn") if (Path(sys.executable).parent / "gunicorn").exists() \
        else "gunicorn"
    proc = subprocess.Popen([gunicorn, "-w", "2", "-b", f"127.0.0.1:{port}", "--log-level", "warning", "app:app"],
                            cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(100):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        words = [q for qs in QUERIES.values() for q in qs]
        thread_paths = [f"/threads/{i}" for i in rng.sample(ids, min(200, len(ids)))]
        search_paths = [f"/search?q={w.replace(' ', '+')}" for w in words]
        return {"workers": 2, "clients": 8, "healthz": _load(base, ["/healthz"], seconds / 2),
                "thread_page": _load(base, thread_paths, seconds), "search_page": _load(base, search_paths, seconds)}
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--import-runs", type=int, default=3, help="imports by each tool, compared by medians")
    parser.add_argument("--web-seconds", type=float, default=10.0)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="print only the JSON object (progress still on stderr)")
    args = parser.parse_args()
    with scratch(args.workdir, "earshot-run-") as work:
        say(f"generating {args.messages} messages in {work}")
        mbox = write_mbox(work / "bench.mbox", args.messages, 13)
        maildir = write_maildir(work / "Maildir", args.messages, 13)
        result: dict[str, object] = {"messages": args.messages, "cores": os.cpu_count()}
        result["import"] = measure_import(args.messages, mbox, maildir, work, max(1, args.import_runs))

        from portal import create_app

        app = create_app({"DATA_DIR": str(work / "data"), "DATABASE_URL": "", "SECRET_KEY": "bench",
                          "SEARCH_BACKEND": "whoosh"})
        result["search"] = measure_search(app, maildir, work, args.runs)
        result["similar"] = measure_similar(app, args.runs)
        result["digest"] = measure_digest(app)
        result["web"] = measure_web(work / "data", args.web_seconds)
        if not args.json:
            say(json.dumps(result, indent=2))
        print(json.dumps(result))

if __name__ == "__main__":
    main()
