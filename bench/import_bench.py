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
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from portal.demo import write_maildir, write_mbox  # noqa: E402


def _descendants(pid: int) -> list[int]:
    """Every process below this one (Linux /proc), however it was started."""
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            found += kids
            stack += kids
    return found


def _high_water_kb(pid: int) -> int:
    """A process's peak RSS so far (VmHWM), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0


def run_with_peak(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run a command; its result and the peak RSS in MB of the largest process of its tree.

    `ru_maxrss` of children misses processes that a fork server started (Earshot's index writers:
    the fork server is never waited for, so their usage never reaches this process), so the tree
    is also walked every 50 ms and each process's own high-water mark read while it lives."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, int] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in [proc.pid, *_descendants(proc.pid)]:
                peaks[pid] = max(peaks.get(pid, 0), _high_water_kb(pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss is the largest child so far: it counts here only when this run raised it.
    waited = after if after > before else 0
    peak_kb = max([waited, *peaks.values()])
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), peak_kb / 1024


def import_with_earshot(path: Path, data_dir: Path) -> dict[str, Any]:
    env = {**os.environ, "EARSHOT_DATA_DIR": str(data_dir), "FLASK_APP": "app.py"}
    env.pop("EARSHOT_DATABASE_URL", None)
    flask = [sys.executable, "-m", "flask"]
    subprocess.run([*flask, "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True)
    start = time.perf_counter()
    proc, peak_mb = run_with_peak([*flask, "import", "--json", str(path)], env, ROOT)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"earshot import failed: {proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout)
    if summary.get("index_problem"):  # stored, but not searchable: not a run to report figures of
        raise SystemExit(f"earshot import did not write its search index: {summary['index_problem']}")
    return {"seconds": elapsed, "messages_new": summary["messages_new"], "peak_rss_mb": peak_mb,
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


def kept_corpus(work: Path, n: int, *, maildir: bool = False) -> Path:
    """The generated archive of n messages kept in `work` (seed 13) as an mbox (messages-N.mbox)
    or a Maildir (maildir-N), generated unless a whole one is there. It is written under a
    temporary name and renamed once complete, so an interrupted run leaves nothing that a later
    run would take for the archive. (import_phases.py and memory_curve.py share these.)"""
    final = work / (f"maildir-{n}" if maildir else f"messages-{n}.mbox")
    if final.exists():
        return final
    partial = final.with_name(final.name + ".partial")
    if partial.is_dir():
        shutil.rmtree(partial)
    partial.unlink(missing_ok=True)
    print(f"generating {n} messages as {'a Maildir' if maildir else 'an mbox'}", file=sys.stderr)
    (write_maildir if maildir else write_mbox)(partial, n, seed=13)
    partial.rename(final)
    return final


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
