"""`flask evaluate`: run the import pipeline (without storing) over hand-labeled messages and
report component, reference (and later pain) figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from importers.model import ImportProblem, ParsedMessage
from importers.sources import iter_path
from importers.text import clean_text

from .classify import aggregate, top_level
from .enrich import Enricher


class LabelError(ValueError):
    """A labels file line that cannot be used; names the file and line."""


def read_labels(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LabelError(f"{path}: line {number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not ("file" in row or "text" in row):
            raise LabelError(f'{path}: line {number}: needs "file" or "text"')
        row["_line"] = number
        rows.append(row)
    return rows


def messages_of(row: dict[str, Any], base: Path) -> list[ParsedMessage]:
    """What the importer reads from a labeled item; text it cannot place becomes one message."""
    if "file" in row:
        path = base / row["file"]
        if not path.is_file():
            raise LabelError(f"line {row.get('_line', '?')}: no file {path}")
        items = [i for i in iter_path(path) if not isinstance(i, ImportProblem)]
        if items:
            return items
        text = path.read_text(encoding="utf-8", errors="replace")
    else:
        text = str(row["text"])
    text = clean_text(text)
    return [ParsedMessage(message_id="eval", subject="", author_name="", author_email="", date=None,
                          body_text=text, new_text=text, quoted_text="", raw=b"", source_file="", position="")]


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)}


def evaluate(labels_path: Path, enricher: Enricher) -> dict[str, Any]:
    """Component macro-F1 (over components with support), reference precision/recall/F1."""
    rows = read_labels(labels_path)
    base = labels_path.parent
    for row in rows:  # every named file is there before any figure is computed
        if "file" in row and not (base / row["file"]).is_file():
            raise LabelError(f"{labels_path}: line {row['_line']}: no file {base / row['file']}")
    names = enricher.taxonomy.top_level
    counts = {c: [0, 0, 0] for c in names}  # tp, fp, fn
    ref_tp = ref_fp = ref_fn = 0
    pain_counts = [0, 0, 0]  # tp, fp, fn over items labeled is_pain_point
    mistakes = []
    for row in rows:
        msgs = messages_of(row, base)
        judgments = [(j.component, j.confidence, list(j.reasons)) for m in msgs for j in enricher.components(m)]
        got = set(top_level([c["name"] for c in aggregate(judgments, enricher.taxonomy.secondary_ratio)]))
        want = set(row.get("components") or [])
        for c in names:
            counts[c][0] += c in got and c in want
            counts[c][1] += c in got and c not in want
            counts[c][2] += c in want and c not in got
        refs = {r for m in msgs for r in enricher.refs(m)}
        want_refs = set(row.get("ticket_refs") or [])
        ref_tp += len(refs & want_refs)
        ref_fp += len(refs - want_refs)
        ref_fn += len(want_refs - refs)
        if isinstance(row.get("is_pain_point"), bool):
            top = msgs[0]
            pain = enricher.taxonomy.pain.judge(top.subject, top.new_text).is_pain
            pain_counts[0] += pain and row["is_pain_point"]
            pain_counts[1] += pain and not row["is_pain_point"]
            pain_counts[2] += row["is_pain_point"] and not pain
        if got != want or refs != want_refs:
            mistakes.append({"line": row["_line"], "item": row.get("file", "text"),
                             "components": {"got": sorted(got), "want": sorted(want)},
                             "refs": {"got": sorted(refs), "want": sorted(want_refs)}})
    per = {c: {**_prf(*counts[c]), "support": counts[c][0] + counts[c][2]} for c in names}
    with_support = [v["f1"] for v in per.values() if v["support"]]
    return {
        "n": len(rows),
        "ruleset_version": enricher.taxonomy.version,
        "components": {"macro_f1": round(sum(with_support) / len(with_support), 4) if with_support else None,
                       "per_component": per},
        "refs": _prf(ref_tp, ref_fp, ref_fn),
        "pain": {**_prf(*pain_counts), "support": pain_counts[0] + pain_counts[2]},
        "mistakes": mistakes,
    }
