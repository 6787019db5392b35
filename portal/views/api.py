"""JSON API, version 1."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from ..auth import api_read, api_role
from ..classify import load_taxonomy
from ..corrections import apply_corrections, set_pain
from ..db import db
from ..extensions import limiter, submitter_key
from ..models import FIX_STATES, PAIN_STATUSES, PainPoint, Thread, User
from ..painpoints import (
    SORTS,
    PainPointError,
    coverage,
    link_ticket,
    list_painpoints,
    mark_tested,
    merge,
    painpoint_detail,
    refresh,
    set_components,
    split,
    undo,
    vote,
)
from ..threads import BadParameter, list_threads, parse_int, parse_when, thread_detail
from ..tickets import list_tickets, ticket_detail

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.errorhandler(BadParameter)
def _bad_parameter(exc: BadParameter) -> Any:
    return jsonify({"error": "invalid parameter", "errors": {exc.name: exc.message}}), 400


@bp.errorhandler(404)
def _not_found(_exc: Exception) -> Any:
    return jsonify({"error": "not found"}), 404


@bp.errorhandler(413)
def _too_large(_exc: Exception) -> Any:
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    return jsonify({"error": f"request body over the limit of {limit:,} bytes"}), 413


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
    """GET /api/v1/similar?text=...&title=...&k=10&kind=: the threads and pain points most like a
    draft, so an operator can say "affects me too" instead of filing a duplicate."""
    from ..similar import similar_items

    text = request.args.get("text", "")
    if not text.strip():
        raise BadParameter("text", "the draft to compare is empty")
    if len(text) > 20000:
        raise BadParameter("text", "at most 20,000 characters")
    title = request.args.get("title") or None
    if title is not None and len(title) > 500:
        raise BadParameter("title", "at most 500 characters")
    kind = request.args.get("kind") or None
    if kind not in (None, "thread", "painpoint"):
        raise BadParameter("kind", "thread or painpoint")
    k = parse_int("k", request.args.get("k"), 10, 1, 50)
    return jsonify({"items": similar_items(db(), current_app.config["SQLALCHEMY_URL"], text, title=title, k=k,
                                           kind=kind)})


# --- pain points -------------------------------------------------------------------------------


@bp.errorhandler(PainPointError)
def _pain_point_error(exc: PainPointError) -> Any:
    return jsonify({"error": "invalid request", "errors": {exc.field: exc.message}}), 422


def _cycle_arg() -> Any:
    from ..cycles import all_cycles, find

    name = request.args.get("cycle") or None
    if name is None:
        return None
    cycle = find(all_cycles(db()), name)
    if cycle is None:
        raise BadParameter("cycle", f"no cycle named {name}")
    return cycle


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise PainPointError("body", "expected a JSON object")
    return body


def _detail_or_404(pp_id: int) -> Any:
    data = painpoint_detail(db(), pp_id)
    if data is None:
        return jsonify({"error": "not found"}), 404
    return jsonify(data)


@bp.get("/painpoints")
@api_read
def painpoints() -> Any:
    """GET /api/v1/painpoints?component=&status=&cycle=&sort=impact&limit=&offset="""
    args = request.args
    limit, offset = _paging()
    status = args.get("status") or None
    if status and status not in PAIN_STATUSES:
        raise BadParameter("status", f"one of {', '.join(PAIN_STATUSES)}")
    sort = args.get("sort") or "impact"
    if sort not in SORTS:
        raise BadParameter("sort", f"one of {', '.join(SORTS)}")
    cycle = _cycle_arg()
    total, items = list_painpoints(db(), component=args.get("component") or None, status=status, cycle=cycle,
                                   sort=sort, limit=limit, offset=offset)
    return jsonify({"total": total, "items": items, "limit": limit, "offset": offset,
                    "coverage": coverage(db(), cycle)})


@bp.get("/painpoints/<int:pp_id>")
@api_read
def painpoint(pp_id: int) -> Any:
    """A pain point with its reports, evidence and history; a merged one names where it went."""
    return _detail_or_404(pp_id)


def _exists(pp_id: int) -> bool:
    return db().get(PainPoint, pp_id) is not None


@bp.post("/painpoints/<int:pp_id>/tickets")
@api_role("developer", "admin")
def painpoint_tickets(pp_id: int, user: User) -> Any:
    """{"link": "lp:1234567"} or {"unlink": "..."}: a ticket reference or the ticket's URL."""
    if not _exists(pp_id):
        return jsonify({"error": "not found"}), 404
    body = _json_body()
    if bool(body.get("link")) == bool(body.get("unlink")):
        raise PainPointError("link", "give one of link or unlink")
    link_ticket(db(), pp_id, str(body.get("link") or body.get("unlink")), user.email, linked=bool(body.get("link")))
    db().commit()
    return _detail_or_404(pp_id)


@bp.patch("/painpoints/<int:pp_id>/components")
@api_role("developer", "admin")
def painpoint_components(pp_id: int, user: User) -> Any:
    """{"confirm": [...], "reject": [...]}"""
    if not _exists(pp_id):
        return jsonify({"error": "not found"}), 404
    body = _json_body()
    confirm, reject = body.get("confirm", []), body.get("reject", [])
    if not isinstance(confirm, list) or not isinstance(reject, list) or not all(
            isinstance(x, str) for x in confirm + reject):
        raise PainPointError("components", "confirm and reject are lists of component names")
    known = set(load_taxonomy(current_app.config.get("TAXONOMY") or None).components)
    set_components(db(), pp_id, known, user.email, confirm=confirm, reject=reject)
    refresh(db(), [pp_id])
    db().commit()
    return _detail_or_404(pp_id)


@bp.post("/painpoints/<int:pp_id>/tests")
@api_role("developer", "admin")
def painpoint_tested(pp_id: int, user: User) -> Any:
    """{"url": "https://...", "note": "..."}: covered by this test."""
    if not _exists(pp_id):
        return jsonify({"error": "not found"}), 404
    body = _json_body()
    mark_tested(db(), pp_id, str(body.get("url") or ""), user.email, str(body.get("note") or ""))
    db().commit()
    return _detail_or_404(pp_id), 201


@bp.post("/painpoints/<int:pp_id>/merge")
@api_role("developer", "admin")
def painpoint_merge(pp_id: int, user: User) -> Any:
    """{"into": id}: this pain point's threads, votes and links move there; undo with the event."""
    if not _exists(pp_id):
        return jsonify({"error": "not found"}), 404
    into = _json_body().get("into")
    if not isinstance(into, int) or isinstance(into, bool):
        raise PainPointError("into", "the id of the pain point to merge into")
    event = merge(db(), pp_id, into, user.email)
    db().commit()
    data = painpoint_detail(db(), into)
    return jsonify({**(data or {}), "event": event.id})


@bp.post("/painpoints/<int:pp_id>/split")
@api_role("developer", "admin")
def painpoint_split(pp_id: int, user: User) -> Any:
    """{"threads": [ids], "title": "..."}: those threads become a new pain point."""
    if not _exists(pp_id):
        return jsonify({"error": "not found"}), 404
    body = _json_body()
    threads = body.get("threads")
    if not isinstance(threads, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in threads):
        raise PainPointError("threads", "a list of thread ids")
    title = body.get("title")
    if title is not None and (not isinstance(title, str) or len(title) > 500):
        raise PainPointError("title", "at most 500 characters")
    point = split(db(), pp_id, threads, user.email, title)
    db().commit()
    return jsonify(painpoint_detail(db(), point.id or 0)), 201


@bp.post("/painpoints/events/<int:event_id>/undo")
@api_role("developer", "admin")
def painpoint_undo(event_id: int, user: User) -> Any:
    undo(db(), event_id, user.email)
    db().commit()
    return jsonify({"undone": event_id})


@bp.route("/painpoints/<int:pp_id>/vote", methods=["POST", "DELETE"])
@api_role("operator", "developer", "admin")
def painpoint_vote(pp_id: int, user: User) -> Any:
    """"Affects me too" (POST), or taking it back (DELETE)."""
    if not _exists(pp_id):
        return jsonify({"error": "not found"}), 404
    changed = vote(db(), pp_id, user, on=request.method == "POST")
    db().commit()
    data = painpoint_detail(db(), pp_id) or {}
    return jsonify({"voted": request.method == "POST", "changed": changed, "impact": data.get("impact")})


@bp.get("/coverage")
@api_read
def coverage_view() -> Any:
    """GET /api/v1/coverage?cycle=: the share of the cycle's operator pain linked to a ticket."""
    return jsonify(coverage(db(), _cycle_arg()))


@bp.get("/cycles")
@api_read
def cycles() -> Any:
    from ..cycles import all_cycles

    return jsonify({"items": [c.as_dict() for c in all_cycles(db())]})


@bp.get("/search")
@api_read
def search() -> Any:
    """GET /api/v1/search?q=&component=&list=&status=&kind=&sort=relevance|date|impact&page="""
    from ..search import SORTS, SearchError, index_for, parse

    args = request.args
    sort = args.get("sort") or "relevance"
    if sort not in SORTS:
        raise BadParameter("sort", f"one of {', '.join(SORTS)}")
    page = parse_int("page", args.get("page"), 1, 1, 10_000)
    try:
        query = parse(args.get("q", ""), {k: args.get(k, "") for k in ("component", "list", "status", "kind")})
    except SearchError as exc:
        raise BadParameter("q", exc.message) from exc
    return jsonify({**index_for(current_app.config).search(query, sort=sort, page=page), "page": page})


# --- field reports -----------------------------------------------------------------------------


def _components() -> set[str]:
    return set(load_taxonomy(current_app.config.get("TAXONOMY") or None).components)


def _report_or_404(report_id: int) -> Any:
    from ..models import FieldReport

    return db().get(FieldReport, report_id)


def _report_errors(errors: dict[str, str]) -> Any:
    return jsonify({"error": "invalid report", "errors": errors}), 422


@bp.post("/field-reports")
@limiter.limit(lambda: current_app.config["REPORT_RATE_LIMIT"], key_func=submitter_key)
@api_role("operator", "developer", "admin")
def field_report_create(user: User) -> Any:
    """POST /api/v1/field-reports {title, component, severity, release, what_happened, ...}:
    201 {"id", "url"}; 422 {"errors": {field: message}}."""
    from ..reports import ReportError, create, index_after, validate

    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _report_errors({"body": "expected a JSON object of report fields"})
    try:
        fields = validate(body, _components())
    except ReportError as exc:
        return _report_errors(exc.errors)
    report, _new = create(db(), current_app.config, fields, author=user)
    db().commit()
    index_after(db(), current_app.config, report_ids=[report.id])
    url = f"/reports/{report.id}"
    return jsonify({"id": report.id, "url": url}), 201, {"Location": url}


@bp.get("/field-reports/<int:report_id>")
@api_read
def field_report(report_id: int) -> Any:
    from ..reports import report_dict

    report = _report_or_404(report_id)
    if report is None:
        return jsonify({"error": "not found"}), 404
    return jsonify(report_dict(db(), report))


@bp.patch("/field-reports/<int:report_id>")
@api_role("operator", "developer", "admin")
def field_report_update(report_id: int, user: User) -> Any:
    """The author changes any field; developers and admins may triage (component, severity,
    refs) but not rewrite the operator's words; anyone else gets 403."""
    from ..reports import (
        TRIAGE_FIELDS,
        ReportError,
        index_after,
        may_edit,
        may_triage,
        report_dict,
        update_report,
        validate,
    )

    report = _report_or_404(report_id)
    if report is None:
        return jsonify({"error": "not found"}), 404
    if not may_edit(user, report) and not may_triage(user):
        return jsonify({"error": "only the author may change this report"}), 403
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not body:
        return _report_errors({"body": "expected a JSON object with the fields to change"})
    if not may_edit(user, report):
        words = sorted(set(body) - TRIAGE_FIELDS)
        if words:
            return jsonify({"error": "developers triage a report (component, severity, refs); the operator's "
                                     f"words are theirs: {', '.join(words)}"}), 403
    try:
        changes = validate(body, _components(), partial=True)
    except ReportError as exc:
        return _report_errors(exc.errors)
    update_report(db(), current_app.config, report, changes, user.email)
    db().commit()
    index_after(db(), current_app.config, report_ids=[report.id])
    return jsonify(report_dict(db(), report))


@bp.delete("/field-reports/<int:report_id>")
@api_role("operator", "developer", "admin")
def field_report_delete(report_id: int, user: User) -> Any:
    """The author deletes a report (admins may too, for abuse); 204."""
    from ..reports import delete_report, index_after, may_edit

    report = _report_or_404(report_id)
    if report is None:
        return jsonify({"error": "not found"}), 404
    if not (may_edit(user, report) or user.role == "admin"):
        return jsonify({"error": "only the author may delete this report"}), 403
    done = delete_report(db(), report, user.email)
    db().commit()
    index_after(db(), current_app.config, stored=done, removed=[f"report:{report_id}"])
    return "", 204


@bp.get("/reports")
@api_read
def reports() -> Any:
    """GET /api/v1/reports?limit=&offset=: field reports, newest first."""
    from ..reports import list_reports

    limit, offset = _paging()
    total, items = list_reports(db(), limit=limit, offset=offset)
    return jsonify({"total": total, "items": items, "limit": limit, "offset": offset})
