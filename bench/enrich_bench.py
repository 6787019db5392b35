"""What reference extraction and component classification add to import time.

    python bench/enrich_bench.py [--messages 20000] [--repeat 3]

Imports the same generated mbox into fresh SQLite databases, alternately without and with the
enrichment step, in one process, and prints JSON with the median times and the overhead ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlmodel import Session  # noqa: E402

from portal.classify import load_taxonomy  # noqa: E402
from portal.db import get_engine, upgrade  # noqa: E402
from portal.demo import write_mbox  # noqa: E402
from portal.enrich import Enricher  # noqa: E402
from portal.ingest import Ingest  # noqa: E402


def run_once(mbox: Path, work: Path, name: str, enricher: Enricher | None) -> float:
    url = f"sqlite:///{work / (name + '.sqlite3')}"
    upgrade(url)
    engine = get_engine(url)
    start = time.perf_counter()
    with Session(engine) as session:
        result = Ingest(session, enricher=enricher).run([mbox])
    elapsed = time.perf_counter() - start
    engine.dispose()
    assert result.messages_new > 0
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="earshot-enrich-") as tmp:
        work = Path(tmp)
        mbox = write_mbox(work / "bench.mbox", args.messages, seed=5)
        enricher = Enricher(load_taxonomy())
        plain, enriched = [], []
        for i in range(args.repeat):
            plain.append(run_once(mbox, work, f"plain{i}", None))
            enriched.append(run_once(mbox, work, f"enriched{i}", enricher))
        base, full = statistics.median(plain), statistics.median(enriched)
        print(json.dumps({"messages": args.messages, "import_s": round(base, 3), "import_with_enrich_s": round(full, 3),
                          "overhead_ratio": round(full / base - 1, 4), "target": "< 0.20"}))


if __name__ == "__main__":
    main()
