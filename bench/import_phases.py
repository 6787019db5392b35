"""Where an import's time goes: `flask import` of a generated mbox, with the seconds of each of
its steps, beside `notmuch new` on the same messages.

    python bench/import_phases.py [--messages 20000] [--workdir DIR]

Generates N messages with the project's demo generator (kept in --workdir and reused), imports
them with `flask import --json` into a fresh SQLite database in a child process, as
`import_bench.py` does, and reports the steps the import itself timed (store: parse in a second
process, thread, classify, link; reclassify; pain point grouping; search index), the process's
start and end as the rest, and `notmuch new` on the same messages as a Maildir. Prints JSON on its
last line. To see inside a step, profile the same command:
`python -m cProfile -s tottime -m flask import DIR/messages-N.mbox`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from import_bench import import_with_earshot, kept_corpus, notmuch_new, scratch  # noqa: E402 - the same set-ups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with scratch(args.workdir, "earshot-phases-") as work:
        mbox = kept_corpus(work, args.messages)
        shutil.rmtree(work / "data", ignore_errors=True)
        run = import_with_earshot(mbox, work / "data")
        steps = run["steps"]
        out: dict[str, object] = {"messages": args.messages, "stored": run["messages_new"], **steps,
                                  "rest": round(run["seconds"] - sum(steps.values()), 2),
                                  "total": round(run["seconds"], 2), "peak_rss_mb": round(run["peak_rss_mb"], 1)}
        maildir = kept_corpus(work, args.messages, maildir=True)
        shutil.rmtree(maildir / ".notmuch", ignore_errors=True)
        timed = notmuch_new(maildir, work)
        out["notmuch_new_s"] = round(timed["seconds"], 2) if timed else None
        print(json.dumps(out))


if __name__ == "__main__":
    main()
