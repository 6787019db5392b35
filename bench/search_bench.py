"""Search: index build rate and query latency beside `notmuch search` on the same messages.

    python bench/search_bench.py [--messages 100000] [--runs 5] [--skip-rebuild] [--workdir DIR]

Generates N messages with the project's demo generator as a Maildir, imports them with
`flask import` (which also writes the index), times `flask index rebuild` (documents per second),
then times a fixed query mix (one, two and three words, rare and very common) through the same
search call the page and the API use (top 20 hits with facets), and `notmuch search --limit=20`
on the same Maildir (after `notmuch new`), in the same run. Prints JSON on its last line.

With --workdir the corpus, database, index and notmuch database are kept there, and a later run
with the same folder and message count measures the queries again without importing anew (a 1M
corpus takes about an hour to import on two cores).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from import_bench import notmuch_env, scratch  # noqa: E402 - the same set-ups as the import benchmark

from portal.demo import write_maildir  # noqa: E402

QUERIES = {
    "one_rare": ["grenade", "ldap", "novalidhost"],
    "one_common": ["instances", "release", "week"],
    "two": ["quota usage", "default routes", "volumes detaching"],
    "three": ["token validation ldap", "routers missing restarts", "instances full hosts"],
}


def pct(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))], 2)


def time_mix(search: Callable[[str], object], runs: int) -> dict[str, list[float]]:
    """Seconds of each query of the mix by kind, over `runs` passes, after one untimed pass (a
    process's first queries read field lengths, facets and arrays once; notmuch's fill the page
    cache): the same for both tools."""
    for q in (q for queries in QUERIES.values() for q in queries):
        search(q)
    times: dict[str, list[float]] = {kind: [] for kind in QUERIES}
    for _ in range(runs):
        for kind, queries in QUERIES.items():
            for q in queries:
                start = time.perf_counter()
                search(q)
                times[kind].append(time.perf_counter() - start)
    return times


def notmuch_search(env: dict[str, str]) -> Callable[[str], object]:
    """`notmuch search` of a query's words, top 20 threads, as a user runs it (a process each)."""
    return lambda q: subprocess.run(["notmuch", "search", "--limit=20", "--output=threads", *q.split()],
                                    env=env, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-rebuild", action="store_true",
                        help="do not time `flask index rebuild` (at 1M messages it takes as long as the import)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep everything here; reuse an import of the same size found there")
    args = parser.parse_args()
    with scratch(args.workdir, "earshot-search-") as work:
        measure(work, args)


def measure(work: Path, args: argparse.Namespace) -> None:
    done = work / f"imported-{args.messages}.json"
    env = {**os.environ, "EARSHOT_DATA_DIR": str(work / "data"), "FLASK_APP": "app.py"}
    env.pop("EARSHOT_DATABASE_URL", None)
    env.pop("EARSHOT_SEARCH_BACKEND", None)
    flask = [sys.executable, "-m", "flask"]
    maildir = work / "Maildir"
    if done.exists():
        import_s = json.loads(done.read_text())["import_s"]
        print(f"reusing the import of {args.messages} messages in {work}", file=sys.stderr)
    else:
        shutil.rmtree(work / "data", ignore_errors=True)
        shutil.rmtree(maildir, ignore_errors=True)
        write_maildir(maildir, args.messages, seed=13)
        subprocess.run([*flask, "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True)
        print(f"importing {args.messages} messages", file=sys.stderr)
        start = time.perf_counter()
        subprocess.run([*flask, "import", str(maildir)], env=env, cwd=ROOT, check=True, capture_output=True)
        import_s = time.perf_counter() - start
        done.write_text(json.dumps({"import_s": import_s}))
    rebuild_s = None
    if args.skip_rebuild:
        out = subprocess.run([*flask, "index", "stats"], env=env, cwd=ROOT, check=True, capture_output=True,
                             text=True).stdout
        documents = int(re.search(r"\d+", out).group(0))
    else:
        start = time.perf_counter()
        out = subprocess.run([*flask, "index", "rebuild"], env=env, cwd=ROOT, check=True, capture_output=True,
                             text=True).stdout
        rebuild_s = time.perf_counter() - start
        documents = int(out.split()[1])

    from portal import create_app
    from portal.search import index_for, parse

    app = create_app({"DATA_DIR": str(work / "data"), "DATABASE_URL": "", "SECRET_KEY": "bench"})
    with app.app_context():
        index = index_for(app.config)
        ours = time_mix(lambda q: index.search(parse(q), per_page=20), args.runs)
    theirs: dict[str, list[float]] = {k: [] for k in QUERIES}
    notmuch_new_s = None
    nenv = notmuch_env(maildir, work)
    if nenv is not None:
        start = time.perf_counter()
        subprocess.run(["notmuch", "new", "--quiet"], env=nenv, check=True, capture_output=True)
        notmuch_new_s = time.perf_counter() - start  # a kept database has nothing new: not a build time
        if done.exists() and json.loads(done.read_text()).get("notmuch_new_s"):
            notmuch_new_s = json.loads(done.read_text())["notmuch_new_s"]
        else:
            done.write_text(json.dumps({**json.loads(done.read_text()), "notmuch_new_s": notmuch_new_s}))
        theirs = time_mix(notmuch_search(nenv), args.runs)
    every_ours = [v for vs in ours.values() for v in vs]
    every_theirs = [v for vs in theirs.values() for v in vs]
    result = {
        "messages": args.messages, "documents": documents,
        "import_s": round(import_s, 1), "import_msgs_per_s": round(args.messages / import_s, 1),
        "rebuild_s": round(rebuild_s, 1) if rebuild_s else None,
        "index_docs_per_s": round(documents / rebuild_s, 1) if rebuild_s else None,
        "notmuch_new_s": round(notmuch_new_s, 1) if notmuch_new_s else None,
        "p50_ms": pct(every_ours, 50), "p95_ms": pct(every_ours, 95),
        "by_kind": {g: {"p50_ms": pct(v, 50), "p95_ms": pct(v, 95)} for g, v in ours.items()},
        "notmuch_p50_ms": pct(every_theirs, 50) if every_theirs else None,
        "notmuch_p95_ms": pct(every_theirs, 95) if every_theirs else None,
        "notmuch_by_kind": {g: {"p50_ms": pct(v, 50), "p95_ms": pct(v, 95)} for g, v in theirs.items() if v},
        "note": "notmuch times include starting the notmuch process, as a user runs it",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
