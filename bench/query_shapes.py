"""Query shapes beyond the benchmark's word mix, on an existing index: the first search of a
process, sorting by date and impact, excluded filters, filters alone, prefixes, phrases, paging.

    python bench/query_shapes.py DATA_DIR [--runs 3]

DATA_DIR is an Earshot data folder with a search index (for example the `data` folder that
`search_bench.py --workdir DIR` keeps). Each shape is run once untimed, then timed `--runs` times
(the median is printed); the first search is timed in this fresh process. Prints JSON on its last
line: milliseconds and hit totals per shape.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPES = [("quota usage", "relevance"), ("instances", "date"), ("instances", "impact"),
          ("quota -component:nova", "relevance"), ("", "relevance"), ("quot*", "relevance"),
          ('"quota usage"', "relevance"), ("quota after:2016", "relevance")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from portal import create_app
    from portal.search import index_for, parse, stats

    app = create_app({"DATA_DIR": str(args.data), "DATABASE_URL": "", "SECRET_KEY": "bench"})
    out: dict[str, object] = {}
    with app.app_context():
        index = index_for(app.config)
        start = time.perf_counter()
        first = index.search(parse("quota usage"))
        out["first_search_ms"] = round(1000 * (time.perf_counter() - start), 1)
        out["documents"] = stats(app.config)["documents"]
        shapes: dict[str, dict[str, float]] = {}
        for text, sort in SHAPES + [("instances", "relevance page 50")]:
            page = 50 if sort.endswith("page 50") else 1
            order = sort.split()[0]
            index.search(parse(text), sort=order, page=page)
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                result = index.search(parse(text), sort=order, page=page)
                times.append(1000 * (time.perf_counter() - start))
            shapes[f"{text!r} by {sort}"] = {"ms": round(statistics.median(times), 1), "total": result["total"]}
        out["shapes"] = shapes
        out["first_total"] = first["total"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
