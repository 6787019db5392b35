"""Digest build time for many pain points and recipients.

    python bench/digest_bench.py [--messages 120000] [--recipients 500]

Imports a generated archive (the project's demo generator) big enough for about 10k pain points,
then times, in one process: building the week's digest over every pain point (statuses as of the
week's end and the week before, 26 weeks of chart) and cutting it for each recipient, each
following a different set of components, as freezing stores it (`total_s`); and, apart, rendering
each recipient's text and HTML mail (`render_s`, paid when sending). The reference, in the same run,
is listing the same pain points through the API's own query (`list_painpoints`, every one). Prints
JSON; the target is under 10 s for 10k pain points and 500 recipients.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from portal import create_app  # noqa: E402
from portal import db as dbmod  # noqa: E402
from portal.cli import run_import  # noqa: E402
from portal.cycles import CycleSpan  # noqa: E402
from portal.demo import write_mbox  # noqa: E402
from portal.digest import build, for_recipient, render, week_of  # noqa: E402
from portal.models import Message, PainPoint  # noqa: E402
from portal.painpoints import list_painpoints  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=120_000)
    parser.add_argument("--recipients", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="earshot-digest-") as tmp:
        app = create_app({"DATA_DIR": tmp, "DATABASE_URL": "", "SECRET_KEY": "bench", "IMPORT_PARALLEL": "1"})
        with app.app_context():
            dbmod.upgrade(app.config["SQLALCHEMY_URL"])
            print(f"importing {args.messages} generated messages", file=sys.stderr)
            run_import([write_mbox(Path(tmp) / "bench.mbox", args.messages, seed=11)])
            with dbmod.session_scope() as s:
                points = s.execute(select(func.count(PainPoint.id)).where(PainPoint.merged_into_id.is_(None))
                                   ).scalar_one()
                first, last = s.execute(select(func.min(Message.date), func.max(Message.date))).one()
                cycle = CycleSpan("bench", first - timedelta(days=1), last + timedelta(days=8))
                week = week_of(last)
                from portal.classify import load_taxonomy

                names = list(load_taxonomy().components)
                start = time.perf_counter()
                total, _items = list_painpoints(s, limit=10**7)
                reference = time.perf_counter() - start

                start = time.perf_counter()
                data = build(s, cycle, week, base_url="https://earshot.example.org")
                built = time.perf_counter() - start
                start = time.perf_counter()
                digests = []
                for r in range(args.recipients):  # what freezing stores: each recipient's cut, as JSON
                    wanted = None if r % 10 == 0 else frozenset(names[i % len(names)] for i in range(r, r + 1 + r % 3))
                    digests.append(json.dumps(for_recipient(data, wanted)))
                per_recipient = time.perf_counter() - start
                start = time.perf_counter()
                sizes = sum(len(render(json.loads(d), "text")) + len(render(json.loads(d), "html")) for d in digests)
                rendering = time.perf_counter() - start
        result = {"messages": args.messages, "pain_points": points, "pain_points_in_digest": len(data["items"]),
                  "recipients": args.recipients, "build_s": round(built, 2), "recipients_s": round(per_recipient, 2),
                  "render_s": round(rendering, 2),
                  "total_s": round(built + per_recipient, 2), "reference_list_s": round(reference, 2),
                  "ratio_vs_reference": round((built + per_recipient) / reference, 2) if reference else None,
                  "rendered_mb": round(sizes / 1e6, 1), "target": "total_s < 10 for 10k pain points, 500 recipients"}
        print(json.dumps(result))


if __name__ == "__main__":
    main()
