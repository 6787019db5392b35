"""Peak memory of an import as the archive grows, beside `notmuch new` on the same messages.

    python bench/memory_curve.py [--sizes 20000,50000,100000,200000] [--workdir DIR] [--no-notmuch]

For each size, generates the messages with the project's demo generator (as an mbox, and as a
Maildir for notmuch; both kept in --workdir and reused, as `import_phases.py` keeps them),
imports the mbox with `flask import --json` into a fresh SQLite database in a child process, and
records the peak RSS of its largest process (the importing one, the parser or an index writer:
each process's high-water mark, `import_bench.run_with_peak`), then runs `notmuch new` on the
Maildir from scratch, measured the same way.
`growth` is the peak at the largest size divided by the peak at the smallest (1.0 is flat), for
each tool. Prints one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from import_bench import import_with_earshot, kept_corpus, notmuch_env, run_with_peak, scratch  # noqa: E402


def notmuch_peak(maildir: Path, work: Path) -> float | None:
    """Peak RSS in MB of `notmuch new` on this Maildir from scratch (None without notmuch)."""
    env = notmuch_env(maildir, work)
    if env is None:
        return None
    shutil.rmtree(maildir / ".notmuch", ignore_errors=True)
    proc, peak_mb = run_with_peak(["notmuch", "new", "--quiet"], env, work)
    if proc.returncode != 0:
        raise SystemExit(f"notmuch new failed: {proc.stderr[-2000:]}")
    return peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,50000,100000,200000",
                        help="numbers of messages, comma-separated, smallest first")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--no-notmuch", action="store_true", help="measure Earshot only")
    args = parser.parse_args()
    try:
        sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    except ValueError:
        parser.error(f"--sizes takes numbers separated by commas, not {args.sizes!r}")
    if not sizes or sizes[0] < 1:
        parser.error("--sizes needs at least one positive number")
    points: list[dict[str, object]] = []
    ours: list[float] = []
    theirs: list[float | None] = []
    with scratch(args.workdir, "earshot-memory-") as work:
        for n in sizes:
            mbox = kept_corpus(work, n)
            shutil.rmtree(work / "data", ignore_errors=True)
            print(f"importing {n} messages", file=sys.stderr)
            run = import_with_earshot(mbox, work / "data")
            ours.append(run["peak_rss_mb"])
            point: dict[str, object] = {"messages": n, "stored": run["messages_new"],
                                        "earshot_peak_rss_mb": round(run["peak_rss_mb"], 1),
                                        "earshot_s": round(run["seconds"], 2)}
            if not args.no_notmuch:
                peak = notmuch_peak(kept_corpus(work, n, maildir=True), work)
                theirs.append(peak)
                point["notmuch_peak_rss_mb"] = round(peak, 1) if peak is not None else None
            print(json.dumps(point), file=sys.stderr)
            points.append(point)
    growth = {"earshot": round(ours[-1] / ours[0], 2)}
    if theirs and theirs[0] and theirs[-1]:
        growth["notmuch"] = round(theirs[-1] / theirs[0], 2)
    print(json.dumps({"points": points, "growth": growth}))


if __name__ == "__main__":
    main()
