"""Field report pages: the list, the form (with similar pain while typing), the report, its
edit, triage and delete. Every form carries a CSRF token; errors stand beside their field."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from ..auth import current_user, read_allowed
from ..db import db
from ..extensions import limiter, submitter_key
from ..models import AuditEvent, FieldReport
from ..reports import (
    SEVERITIES,
    TEXT_FIELDS,
    TRIAGE_FIELDS,
    ReportError,
    create,
    delete_report,
    index_after,
    list_reports,
    may_edit,
    may_triage,
    report_dict,
    update_report,
    validate,
)
from ..threads import parse_int

bp = Blueprint("reports", __name__, url_prefix="/reports")


@bp.before_request
def _gate() -> Any:
    if not read_allowed():
        return render_template("private.html"), 401
    return None


def _components() -> list[str]:
    from ..classify import load_taxonomy

    return list(load_taxonomy(current_app.config.get("TAXONOMY") or None).components)


def _form_fields(names: Any) -> dict[str, Any]:
    """Form values of these fields; empty numbers stay empty, lists are space-separated."""
    return {name: request.form.get(name, "") for name in names}


def _signed_in() -> Any:
    user = current_user()
    if user is None:
        return None, redirect(url_for("web.signin", next=request.full_path.rstrip("?")))
    return user, None


def _report(report_id: int) -> FieldReport:
    report = db().get(FieldReport, report_id)
    if report is None:
        abort(404)
    return report


def _form_page(values: dict[str, Any], errors: dict[str, str], *, report: FieldReport | None = None,
               status: int = 200) -> Any:
    return render_template("reports/form.html", values=values, errors=errors, report=report,
                           components=_components(), severities=SEVERITIES, text_fields=TEXT_FIELDS), status


@bp.get("")
def index() -> Any:
    page_size = current_app.config["PAGE_SIZE"]
    page = parse_int("page", request.args.get("page"), 1, 1, 10**6)
    user = current_user()
    mine = request.args.get("mine") == "1" and user is not None
    total, items = list_reports(db(), limit=page_size, offset=(page - 1) * page_size,
                                author_id=user.id if mine and user is not None else None)
    pages = max(1, (total + page_size - 1) // page_size)
    return render_template("reports/index.html", items=items, total=total, page=page, pages=pages, mine=mine,
                           user=user)


@bp.route("/new", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["REPORT_RATE_LIMIT"], key_func=submitter_key, methods=["POST"])
def new() -> Any:
    user, go = _signed_in()
    if go is not None:
        return go
    if request.method == "GET":
        return _form_page({"severity": "normal", "component": request.args.get("component", "")}, {})
    values = _form_fields(["title", "component", "severity", "release", "distro", "nodes", "instances", "refs",
                           "links", *TEXT_FIELDS])
    try:
        fields = validate({k: v for k, v in values.items() if v != "" or k == "title"}, set(_components()))
    except ReportError as exc:
        return _form_page(values, exc.errors, status=422)
    report, _new = create(db(), current_app.config, fields, author=user)
    db().commit()
    index_after(db(), current_app.config, report_ids=[report.id])
    flash("Thank you: your report is filed. Developers see it with the pain point it joined.")
    return redirect(url_for("reports.report_page", report_id=report.id))


def _report_page(report: FieldReport, user: Any, *, errors: dict[str, str] | None = None,
                 values: dict[str, str] | None = None, status: int = 200) -> Any:
    """A report; its history for the author and developers; triage errors beside their fields."""
    history = [] if not may_triage(user) and not may_edit(user, report) else list(db().execute(
        select(AuditEvent).where(AuditEvent.target_kind == "field_report", AuditEvent.target_id == report.id)
        .order_by(AuditEvent.id)).scalars())
    r = report_dict(db(), report, html=True)
    triage_values = values or {"component": r["component"], "severity": r["severity"], "refs": " ".join(r["refs"])}
    return render_template("reports/report.html", r=r, user=user, may_edit=may_edit(user, report),
                           may_triage=may_triage(user),
                           may_delete=may_edit(user, report) or (user is not None and user.role == "admin"),
                           components=_components(), severities=SEVERITIES, text_fields=TEXT_FIELDS,
                           history=history, errors=errors or {}, triage_values=triage_values), status


@bp.get("/<int:report_id>")
def report_page(report_id: int) -> Any:
    return _report_page(_report(report_id), current_user())


@bp.route("/<int:report_id>/edit", methods=["GET", "POST"])
def edit(report_id: int) -> Any:
    user, go = _signed_in()
    if go is not None:
        return go
    report = _report(report_id)
    if not may_edit(user, report):
        abort(403)
    current = report_dict(db(), report)
    if request.method == "GET":
        values = {k: (" ".join(v) if isinstance(v, list) else ("" if v is None else v)) for k, v in current.items()}
        return _form_page(values, {}, report=report)
    values = _form_fields(["title", "component", "severity", "release", "distro", "nodes", "instances", "refs",
                           "links", *TEXT_FIELDS])
    try:
        changes = validate(values, set(_components()))
    except ReportError as exc:
        return _form_page(values, exc.errors, report=report, status=422)
    update_report(db(), current_app.config, report, changes, user.email)
    db().commit()
    index_after(db(), current_app.config, report_ids=[report.id])
    flash("Report updated.")
    return redirect(url_for("reports.report_page", report_id=report.id))


@bp.post("/<int:report_id>/triage")
def triage(report_id: int) -> Any:
    """Developers set the component, severity and tickets; not the operator's words."""
    user, go = _signed_in()
    if go is not None:
        return go
    report = _report(report_id)
    if not may_triage(user):
        abort(403)
    values = {k: request.form.get(k, "") for k in sorted(TRIAGE_FIELDS)}
    try:
        changes = validate(values, set(_components()), partial=True)
    except ReportError as exc:
        return _report_page(report, user, errors=exc.errors, values=values, status=422)
    update_report(db(), current_app.config, report, changes, user.email)
    db().commit()
    index_after(db(), current_app.config, report_ids=[report.id])
    flash("Triage saved.")
    return redirect(url_for("reports.report_page", report_id=report.id))


@bp.post("/<int:report_id>/delete")
def delete(report_id: int) -> Any:
    user, go = _signed_in()
    if go is not None:
        return go
    report = _report(report_id)
    if not (may_edit(user, report) or user.role == "admin"):
        abort(403)
    if request.form.get("confirm") != "yes":
        flash("Tick the box to confirm the deletion.")
        return redirect(url_for("reports.report_page", report_id=report_id))
    done = delete_report(db(), report, user.email)
    db().commit()
    index_after(db(), current_app.config, stored=done, removed=[f"report:{report_id}"])
    flash("Report deleted.")
    return redirect(url_for("reports.index"))
