"""JSON API, version 1 (reads)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from ..auth import api_read
from ..db import db
from ..threads import BadParameter, list_threads, parse_int, parse_when, thread_detail

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.errorhandler(BadParameter)
def _bad_parameter(exc: BadParameter) -> Any:
    return jsonify({"error": "invalid parameter", "errors": {exc.name: exc.message}}), 400


@bp.errorhandler(404)
def _not_found(_exc: Exception) -> Any:
    return jsonify({"error": "not found"}), 404


@bp.get("/threads")
@api_read
def threads() -> Any:
    """GET /api/v1/threads?list=&since=&until=&limit=&offset="""
    args = request.args
    limit = parse_int("limit", args.get("limit"), current_app.config["PAGE_SIZE"], 1,
                      current_app.config["MAX_PAGE_SIZE"])
    offset = parse_int("offset", args.get("offset"), 0, 0, 10**9)
    total, items = list_threads(db(), list_name=args.get("list") or None, since=parse_when("since", args.get("since")),
                                until=parse_when("until", args.get("until")), limit=limit, offset=offset)
    return jsonify({"total": total, "items": items, "limit": limit, "offset": offset})


@bp.get("/threads/<int:thread_id>")
@api_read
def thread(thread_id: int) -> Any:
    data = thread_detail(db(), thread_id)
    if data is None:
        return jsonify({"error": "not found"}), 404
    return jsonify(data)
