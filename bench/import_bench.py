"""Import throughput and peak memory on a generated archive, beside `notmuch new` in the same run.

    python bench/import_bench.py [--messages 200000] [--workdir DIR]

Generates N messages with the project's demo generator, writes them once as an mbox and once as a
Maildir, imports each into a fresh SQLite database in a child process (so its peak RSS is its own),
runs `notmuch new` on the same Maildir, and prints one JSON object (last line) with messages/s,
peak memory and the ratio earshot/notmuch.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from portal.demo import write_maildir, write_mbox  # noqa: E402


def _child(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a command as a child; wall seconds, its peak RSS in MB, and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest child so far; each measured child runs after smaller ones.
    return elapsed, max(peak, before) / 1024, proc.stdout


def import_with_earshot(path: Path, data_dir: Path) -> dict[str, Any]:
    env = {**os.environ, "EARSHOT_DATA_DIR": str(data_dir), "FLASK_APP": "app.py"}
    env.pop("EARSHOT_DATABASE_URL", None)
    flask = [sys.executable, "-m", "flask"]
    subprocess.run([*flask, "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", (
        "import json,resource,subprocess,sys;"
        "p=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
        "print(json.dumps({'rc':p.returncode,'out':p.stdout,'err':p.stderr[-2000:],"
        "'maxrss_kb':resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))"),
        *flask, "import", "--json", str(path)], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    wrapper = json.loads(proc.stdout)
    if wrapper["rc"] != 0:
        raise SystemExit(f"earshot import failed: {wrapper['err']}")
    summary = json.loads(wrapper["out"])
    if summary.get("index_problem"):  # stored, but not searchable: not a run to report figures of
        raise SystemExit(f"earshot import did not write its search index: {summary['index_problem']}")
    return {"seconds": elapsed, "messages_new": summary["messages_new"], "peak_rss_mb": wrapper["maxrss_kb"] / 1024,
            "steps": summary.get("seconds", {})}


@contextmanager
def scratch(workdir: Path | None, prefix: str) -> Iterator[Path]:
    """The folder a benchmark works in: --workdir (kept), or a temporary one removed afterwards,
    whatever happens."""
    work = workdir or Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    try:
        yield work
    finally:
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def notmuch_env(maildir: Path, workdir: Path) -> dict[str, str] | None:
    """The environment for notmuch commands on this Maildir (None when notmuch is not installed)."""
    if shutil.which("notmuch") is None:
        return None
    config = workdir / "notmuch-config"
    config.write_text(f"[database]\npath={maildir}\n[new]\ntags=unread;inbox;\n[maildir]\nsynchronize_flags=false\n")
    return {**os.environ, "NOTMUCH_CONFIG": str(config)}


def notmuch_new(maildir: Path, workdir: Path) -> dict[str, float] | None:
    env = notmuch_env(maildir, workdir)
    if env is None:
        return None
    start = time.perf_counter()
    subprocess.run(["notmuch", "new", "--quiet"], env=env, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    with scratch(args.workdir, "earshot-bench-") as work:
        print(json.dumps(measure(work, args.messages, args.seed)))


def measure(work: Path, n: int, seed: int) -> dict[str, object]:
    print(f"generating {n} messages in {work}", file=sys.stderr)
    mbox = write_mbox(work / "bench.mbox", n, seed)
    maildir = write_maildir(work / "Maildir", n, seed)
    print("importing the mbox", file=sys.stderr)
    mbox_run = import_with_earshot(mbox, work / "db-mbox")
    print("importing the Maildir", file=sys.stderr)
    maildir_run = import_with_earshot(maildir, work / "db-maildir")
    print("notmuch new on the Maildir", file=sys.stderr)
    nm = notmuch_new(maildir, work)
    result: dict[str, object] = {
        "messages": n,
        "earshot_mbox_msgs_per_s": round(n / mbox_run["seconds"], 1),
        "earshot_maildir_msgs_per_s": round(n / maildir_run["seconds"], 1),
        "earshot_messages_stored": mbox_run["messages_new"],
        "earshot_messages_stored_maildir": maildir_run["messages_new"],
        # Every generated message is distinct: anything not stored is a loss, not a duplicate.
        "all_stored": mbox_run["messages_new"] == n and maildir_run["messages_new"] == n,
        "peak_rss_mb": round(max(mbox_run["peak_rss_mb"], maildir_run["peak_rss_mb"]), 1),
        "peak_rss_mb_mbox": round(mbox_run["peak_rss_mb"], 1),
        "peak_rss_mb_maildir": round(maildir_run["peak_rss_mb"], 1),
        "notmuch_msgs_per_s": round(n / nm["seconds"], 1) if nm else None,
    }
    if nm:
        result["ratio_maildir_vs_notmuch"] = round(nm["seconds"] / maildir_run["seconds"], 3)
        result["ratio_mbox_vs_notmuch"] = round(nm["seconds"] / mbox_run["seconds"], 3)
    return result


if __name__ == "__main__":
    main()
