"""HTML pages: the thread list and the thread page."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for

from ..auth import current_user, read_allowed, user_for_token
from ..classify import load_taxonomy
from ..corrections import apply_corrections, set_pain
from ..db import db
from ..extensions import limiter
from ..threads import BadParameter, list_names, list_threads, parse_int, parse_when, thread_detail

bp = Blueprint("web", __name__)


@bp.before_request
def _gate() -> Any:
    if request.endpoint not in ("web.healthz", "web.signin", "web.signout", "static") and not read_allowed():
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
    pain = {"yes": True, "no": False}.get(args.get("pain", ""))
    values["pain"] = args.get("pain", "") if pain is not None else ""
    total, items = list_threads(db(), list_name=values["list"] or None, component=args.get("component") or None,
                                pain=pain,
                                since=bounds["since"],
                                until=bounds["until"], limit=page_size, offset=(page - 1) * page_size)
    pages = max(1, (total + page_size - 1) // page_size)
    return render_template("threads/index.html", threads=items, total=total, page=page, pages=pages,
                           values=values, errors=errors, lists=list_names(db()))


def _taxonomy_names() -> list[str]:
    return list(load_taxonomy(current_app.config.get("TAXONOMY") or None).components)


@bp.get("/threads/<int:thread_id>")
def thread(thread_id: int) -> Any:
    data = thread_detail(db(), thread_id)
    if data is None:
        abort(404)
    return render_template("threads/thread.html", thread=data, user=current_user(), components=_taxonomy_names(),
                           errors={})


@bp.post("/threads/<int:thread_id>/components")
def correct_components(thread_id: int) -> Any:
    """Developers confirm a component or reject ones the classifier gave (CSRF-protected form)."""
    user = current_user()
    if user is None:
        return redirect(url_for("web.signin", next=url_for("web.thread", thread_id=thread_id)))
    if user.role not in ("developer", "admin"):
        abort(403)
    data = thread_detail(db(), thread_id)
    if data is None:
        abort(404)
    confirm = [c for c in [request.form.get("confirm", "")] if c]
    verdict = request.form.get("pain", "")
    if verdict not in ("", "pain", "talk", "rules"):
        errors = {"pain": "choose production pain, talk or as the rules judge it"}
    else:
        errors = apply_corrections(db(), thread_id, set(_taxonomy_names()), user.email, confirm=confirm,
                                   reject=request.form.getlist("reject"), clear=request.form.getlist("clear"))
    if errors:  # nothing was changed
        return render_template("threads/thread.html", thread=data, user=user, components=_taxonomy_names(),
                               errors=errors), 422
    if verdict:
        set_pain(db(), thread_id, {"pain": True, "talk": False}.get(verdict), user.email)
    flash("Components updated.")
    return redirect(url_for("web.thread", thread_id=thread_id))


def _safe_next(target: str | None) -> str:
    """Only same-site paths: never send a signed-in user to another host."""
    if target and target.startswith("/") and not target.startswith("//") and not urlparse(target).netloc:
        return target
    return url_for("web.index")


@bp.route("/signin", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["SIGNIN_RATE_LIMIT"], methods=["POST"])
def signin() -> Any:
    """Sign in with an API token (from `flask tokens create`) until OpenID Connect is configured."""
    errors: dict[str, str] = {}
    if request.method == "POST":
        token = request.form.get("token", "").strip()
        user = user_for_token(db(), token) if token else None
        field = "token"  # the form field the message stands beside
        if not token:
            errors[field] = "Paste the token an administrator gave you."
        elif user is None:
            errors[field] = "This token is unknown or revoked."
        else:
            session.clear()
            session["user_id"] = user.id
            flash(f"Signed in as {user.email} ({user.role}).")
            return redirect(_safe_next(request.form.get("next")))
    return render_template("signin.html", errors=errors, next=request.args.get("next", "")), 422 if errors else 200


@bp.post("/signout")
def signout() -> Any:
    session.clear()
    flash("Signed out.")
    return redirect(url_for("web.index"))


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
