"""HTML pages: the thread list and the thread page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, render_template, request

from ..auth import read_allowed
from ..db import db
from ..threads import BadParameter, list_names, list_threads, parse_int, parse_when, thread_detail

bp = Blueprint("web", __name__)


@bp.before_request
def _gate() -> Any:
    if request.endpoint != "web.healthz" and not read_allowed():
        return render_template("private.html"), 401
    return None


@bp.get("/")
def index() -> Any:
    """Threads, newest activity first, with list and date filters and paging."""
    args = request.args
    errors: dict[str, str] = {}
    values = {k: args.get(k, "") for k in ("list", "since", "until")}
    page_size = current_app.config["PAGE_SIZE"]
    bounds = {}
    for name in ("since", "until"):
        try:
            bounds[name] = parse_when(name, values[name])
        except BadParameter as exc:
            errors[name] = exc.message
            bounds[name] = None
    try:
        page = parse_int("page", args.get("page"), 1, 1, 10**6)
    except BadParameter:
        page = 1
    total, items = list_threads(db(), list_name=values["list"] or None, component=args.get("component") or None,
                                since=bounds["since"],
                                until=bounds["until"], limit=page_size, offset=(page - 1) * page_size)
    pages = max(1, (total + page_size - 1) // page_size)
    return render_template("threads/index.html", threads=items, total=total, page=page, pages=pages,
                           values=values, errors=errors, lists=list_names(db()))


@bp.get("/threads/<int:thread_id>")
def thread(thread_id: int) -> Any:
    data = thread_detail(db(), thread_id)
    if data is None:
        abort(404)
    return render_template("threads/thread.html", thread=data)


@bp.get("/components")
def components() -> Any:
    """Threads per component, with a trend over the last two years of data."""
    from ..classify import load_taxonomy
    from ..components import component_stats, sparkline

    stats = component_stats(db(), load_taxonomy(current_app.config.get("TAXONOMY") or None))
    for entry in stats["components"]:
        entry["spark"] = sparkline(entry["series"])
    return render_template("components.html", stats=stats)


@bp.get("/healthz")
def healthz() -> Any:
    return {"status": "ok"}
