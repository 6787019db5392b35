"""Where an import's time goes: the steps of `flask import` timed one by one in one process.

    python bench/import_phases.py [--messages 20000] [--workdir DIR] [--profile store|group|index]

Generates an mbox of N messages with the project's demo generator (kept in --workdir and reused),
then runs what `flask import` runs on it against a fresh SQLite database: store (parsing in a
second process, threading, classification, links), reclassify, pain point grouping and the search
index, each timed; `notmuch new` on the same messages as a Maildir is timed beside them when
notmuch is installed. With --profile, that step's profile is printed first. Prints JSON on its
last line.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from import_bench import notmuch_new  # noqa: E402 - the same notmuch set-up as the import benchmark

from portal.demo import write_maildir, write_mbox  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--profile", choices=["store", "reclassify", "group", "index"], default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="earshot-phases-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        mbox = work / f"messages-{args.messages}.mbox"
        if not mbox.exists():
            write_mbox(mbox, args.messages, seed=13)
        shutil.rmtree(work / "data", ignore_errors=True)
        env = {**os.environ, "EARSHOT_DATA_DIR": str(work / "data"), "FLASK_APP": "app.py"}
        env.pop("EARSHOT_DATABASE_URL", None)
        subprocess.run([sys.executable, "-m", "flask", "db", "upgrade"], env=env, cwd=ROOT, check=True,
                       capture_output=True)

        from portal import create_app
        from portal import db as dbmod
        from portal.cli import _reindex
        from portal.enrich import Enricher
        from portal.ingest import Ingest, reclassify
        from portal.painpoints import group

        app = create_app({"DATA_DIR": str(work / "data"), "DATABASE_URL": "", "SECRET_KEY": "bench"})
        times: dict[str, float] = {}

        def step(name: str, run: Any) -> Any:
            profile = cProfile.Profile() if args.profile == name else None
            start = time.perf_counter()
            if profile:
                profile.enable()
            out = run()
            if profile:
                profile.disable()
                pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(30)
            times[name] = round(time.perf_counter() - start, 2)
            return out

        with app.app_context():
            def store() -> Any:
                with dbmod.session_scope() as session:
                    ingest = Ingest(session, enricher=Enricher.from_config(app.config), parse_in_parallel=True,
                                    batch_size=int(app.config["IMPORT_BATCH"]))
                    return ingest.run([mbox]), ingest

            result, ingest = step("store", store)

            def rejudge() -> Any:
                with dbmod.session_scope() as session:
                    return reclassify(session, ingest.enricher)

            step("reclassify", rejudge)

            def grouping() -> Any:
                with dbmod.session_scope() as session:
                    return group(session)

            grouped = step("group", grouping)
            step("index", lambda: _reindex(thread_ids=result.threads, painpoint_ids=grouped.touched))
        out: dict[str, Any] = {"messages": args.messages, "stored": result.messages_new, **times,
                               "total": round(sum(times.values()), 2)}
        maildir = work / f"maildir-{args.messages}"
        if shutil.which("notmuch"):
            if not maildir.exists():
                write_maildir(maildir, args.messages, seed=13)
            shutil.rmtree(maildir / ".notmuch", ignore_errors=True)
            timed = notmuch_new(maildir, work)
            out["notmuch_new_s"] = round(timed["seconds"], 2) if timed else None
        print(json.dumps(out))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
