"""Similar-report retrieval on real Jira issues with known duplicates (../shared/corpus/tickets/jira-dedupe).

For every duplicate pair, the newer issue is the "new report": its summary and description query
every issue created before it; a hit is the older issue among the top k. Prints JSON.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from portal.similar import Doc, SimilarityIndex  # noqa: E402

DEFAULT = ROOT.parent / "shared" / "corpus" / "tickets" / "jira-dedupe"


def evaluate(folder: Path, project: str, k: int) -> dict[str, float]:
    issues = [json.loads(x) for x in gzip.open(folder / f"{project}-issues.jsonl.gz")]
    pairs = json.loads((folder / f"{project}-duplicate_pairs.json").read_text())
    by_key = {i["key"]: i for i in issues}
    index = SimilarityIndex([Doc("ticket", i["key"], i.get("summary") or "", i.get("description") or "")
                             for i in issues])
    created = np.array([i.get("created") or "" for i in issues])
    hits = total = 0
    times = []
    for a, b in pairs:
        if a not in by_key or b not in by_key:
            continue
        new, old = sorted((by_key[a], by_key[b]), key=lambda i: i.get("created") or "", reverse=True)
        start = time.perf_counter()
        found = index.query(f"{new.get('summary') or ''}\n{new.get('description') or ''}", k,
                            exclude={new["key"]}, allowed=created < (new.get("created") or ""))
        times.append(time.perf_counter() - start)
        total += 1
        hits += any(d.id == old["key"] for d, _s in found)
    return {"pairs": total, f"recall_at_{k}": round(hits / total, 4) if total else 0.0,
            "query_ms_p50": round(1000 * float(np.median(times)), 2) if times else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT)
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    if not args.folder.is_dir():
        raise SystemExit(f"{args.folder} is absent")
    result = {p: evaluate(args.folder, p, args.k) for p in ("tools", "gui", "doc")}
    hits = sum(r[f"recall_at_{args.k}"] * r["pairs"] for r in result.values())
    pairs = sum(r["pairs"] for r in result.values())
    result["all"] = {"pairs": pairs, f"recall_at_{args.k}": round(hits / pairs, 4)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
