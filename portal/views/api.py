"""JSON API, version 1 (reads)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from ..auth import api_read, api_role
from ..classify import load_taxonomy
from ..corrections import apply_corrections, set_pain
from ..db import db
from ..models import FIX_STATES, Thread, User
from ..threads import BadParameter, list_threads, parse_int, parse_when, thread_detail
from ..tickets import list_tickets, ticket_detail

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.errorhandler(BadParameter)
def _bad_parameter(exc: BadParameter) -> Any:
    return jsonify({"error": "invalid parameter", "errors": {exc.name: exc.message}}), 400


@bp.errorhandler(404)
def _not_found(_exc: Exception) -> Any:
    return jsonify({"error": "not found"}), 404


def _paging() -> tuple[int, int]:
    """limit and offset of a list request, checked (400 naming the parameter otherwise)."""
    limit = parse_int("limit", request.args.get("limit"), current_app.config["PAGE_SIZE"], 1,
                      current_app.config["MAX_PAGE_SIZE"])
    return limit, parse_int("offset", request.args.get("offset"), 0, 0, 10**9)


@bp.get("/threads")
@api_read
def threads() -> Any:
    """GET /api/v1/threads?list=&component=&pain=yes|no&since=&until=&limit=&offset="""
    args = request.args
    limit, offset = _paging()
    pain = args.get("pain") or None
    if pain not in (None, "yes", "no"):
        raise BadParameter("pain", "yes or no")
    total, items = list_threads(db(), list_name=args.get("list") or None, component=args.get("component") or None,
                                pain=None if pain is None else pain == "yes",
                                since=parse_when("since", args.get("since")),
                                until=parse_when("until", args.get("until")), limit=limit, offset=offset)
    return jsonify({"total": total, "items": items, "limit": limit, "offset": offset})


@bp.get("/threads/<int:thread_id>")
@api_read
def thread(thread_id: int) -> Any:
    data = thread_detail(db(), thread_id)
    if data is None:
        return jsonify({"error": "not found"}), 404
    return jsonify(data)


@bp.patch("/threads/<int:thread_id>/components")
@api_role("developer", "admin")
def correct_components(thread_id: int, user: User) -> Any:
    """Developers confirm or reject components: {"confirm": [...], "reject": [...], "clear": [...]}.
    Corrections are kept apart from the classifier's judgments and survive re-classification."""
    session = db()
    if session.get(Thread, thread_id) is None:
        return jsonify({"error": "not found"}), 404
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify({"error": "invalid body", "errors": {"body": "expected a JSON object"}}), 422
    known = set(load_taxonomy(current_app.config.get("TAXONOMY") or None).components)
    errors = apply_corrections(session, thread_id, known, user.email, confirm=body.get("confirm", []),
                               reject=body.get("reject", []), clear=body.get("clear", []))
    if errors:
        return jsonify({"error": "invalid body", "errors": errors}), 422
    return jsonify(thread_detail(session, thread_id))


@bp.patch("/threads/<int:thread_id>/pain")
@api_role("developer", "admin")
def correct_pain(thread_id: int, user: User) -> Any:
    """{"is_pain": true|false} overrides the rules for this thread; {"is_pain": null} hands it back."""
    session = db()
    if session.get(Thread, thread_id) is None:
        return jsonify({"error": "not found"}), 404
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "is_pain" not in body or body["is_pain"] not in (True, False, None):
        return jsonify({"error": "invalid body", "errors": {"is_pain": "true, false or null"}}), 422
    set_pain(session, thread_id, body["is_pain"], user.email)
    return jsonify(thread_detail(session, thread_id))


@bp.get("/tickets")
@api_read
def tickets() -> Any:
    """GET /api/v1/tickets?tracker=&fix=&test=yes|no&limit=&offset="""
    args = request.args
    limit, offset = _paging()
    fix = args.get("fix") or None
    if fix and fix not in FIX_STATES:
        raise BadParameter("fix", f"one of {', '.join(FIX_STATES)}")
    test = args.get("test") or None
    if test and test not in ("yes", "no"):
        raise BadParameter("test", "yes or no")
    total, items = list_tickets(db(), tracker=args.get("tracker") or None, fix=fix, test=test, limit=limit,
                                offset=offset)
    return jsonify({"total": total, "items": items, "limit": limit, "offset": offset})


@bp.get("/tickets/<int:ticket_id>")
@api_read
def ticket(ticket_id: int) -> Any:
    data = ticket_detail(db(), ticket_id)
    if data is None:
        return jsonify({"error": "not found"}), 404
    return jsonify(data)


@bp.get("/components")
@api_read
def components() -> Any:
    """GET /api/v1/components: each component with its thread count and monthly series."""
    from ..components import component_stats

    return jsonify(component_stats(db(), load_taxonomy(current_app.config.get("TAXONOMY") or None)))


@bp.get("/similar")
@api_read
def similar() -> Any:
    """GET /api/v1/similar?text=...&title=...&k=10: the threads most like a draft, so an operator can say
    "affects me too" instead of filing a duplicate."""
    from ..similar import thread_index

    text = request.args.get("text", "")
    if not text.strip():
        raise BadParameter("text", "the draft to compare is empty")
    if len(text) > 20000:
        raise BadParameter("text", "at most 20,000 characters")
    title = request.args.get("title") or None
    if title is not None and len(title) > 500:
        raise BadParameter("title", "at most 500 characters")
    k = parse_int("k", request.args.get("k"), 10, 1, 50)
    index = thread_index(db(), current_app.config["SQLALCHEMY_URL"])
    return jsonify({"items": [{"kind": d.kind, "id": d.id, "title": d.title, "score": round(score, 4)}
                              for d, score in index.query(f"{title}\n{text}" if title else text, k, title=title)]})
