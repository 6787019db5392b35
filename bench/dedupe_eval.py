"""Similar-report retrieval on real Jira issues with known duplicates (../shared/corpus/tickets/jira-dedupe).

For every duplicate pair, the newer issue is the "new report": its summary and description query
every issue created before it; a hit is the older issue among the top k. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from portal.similar import duplicate_recall  # noqa: E402

DEFAULT = ROOT.parent / "shared" / "corpus" / "tickets" / "jira-dedupe"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT)
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    if not args.folder.is_dir():
        raise SystemExit(f"{args.folder} is absent")
    result = {p: duplicate_recall(args.folder, p, args.k) for p in ("tools", "gui", "doc")}
    hits = sum(r[f"recall_at_{args.k}"] * r["pairs"] for r in result.values())
    pairs = sum(r["pairs"] for r in result.values())
    result["all"] = {"pairs": pairs, f"recall_at_{args.k}": round(hits / pairs, 4)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
