"""HTML pages: threads, components, pain points and the developers' triage queue."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from sqlalchemy import func, select

from ..auth import current_user, read_allowed, user_for_token
from ..classify import load_taxonomy
from ..corrections import apply_corrections, set_pain
from ..db import db
from ..extensions import limiter
from ..threads import BadParameter, list_names, list_threads, parse_int, parse_when, thread_detail

bp = Blueprint("web", __name__)


@bp.before_request
def _gate() -> Any:
    if request.endpoint not in ("web.healthz", "web.signin", "web.signout", "web.unsubscribe_view", "web.saved_feed",
                                "web.signin_start", "web.signin_callback", "web.signin_demo", "static") \
            and not read_allowed():
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


def _signin_page(errors: dict[str, str] | None = None, status: int = 200, next_url: str = "") -> Any:
    from ..signin import DEMO_ROLES, providers

    return render_template("signin.html", errors=errors or {}, next=next_url or request.args.get("next", ""),
                           providers=providers(current_app), demo_roles=DEMO_ROLES if current_app.config[
                               "DEMO_SIGNIN"] else ()), status


def _sign_in_as(user: Any, next_url: str | None) -> Any:
    session.clear()  # a fresh session: nothing from before sign-in carries over
    session["user_id"] = user.id
    session.permanent = True
    flash(f"Signed in as {user.email} ({user.role}).")
    return redirect(_safe_next(next_url))


@bp.route("/signin", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["SIGNIN_RATE_LIMIT"], methods=["POST"])
def signin() -> Any:
    """The providers this deployment offers, and sign-in with an API token (accounts made with
    `flask users create`)."""
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
            return _sign_in_as(user, request.form.get("next"))
    return _signin_page(errors, 422 if errors else 200, request.form.get("next", ""))


def _remote(provider: str) -> Any:
    """The configured provider's Authlib client; 404 for one this deployment does not offer."""
    from ..signin import client

    remote = client(provider)
    if remote is None:
        abort(404)
    return remote


@bp.get("/signin/<provider>")
@limiter.limit(lambda: current_app.config["SIGNIN_RATE_LIMIT"])
def signin_start(provider: str) -> Any:
    remote = _remote(provider)
    session["signin_next"] = _safe_next(request.args.get("next"))
    try:
        return remote.authorize_redirect(url_for("web.signin_callback", provider=provider, _external=True))
    except Exception as exc:  # noqa: BLE001 - the provider is down or its discovery document is broken
        current_app.logger.warning("sign-in with %s could not start: %s", provider, exc)
        return _signin_page({"provider": f"The sign-in service cannot be reached now ({exc.__class__.__name__}). "
                                         "Try again in a moment."}, 502)


@bp.get("/signin/<provider>/callback")
@limiter.limit(lambda: current_app.config["SIGNIN_RATE_LIMIT"])
def signin_callback(provider: str) -> Any:
    from authlib.integrations.base_client import OAuthError

    from ..signin import SigninError, account_for, identity_from

    remote = _remote(provider)
    next_url = session.pop("signin_next", None)
    if request.args.get("error"):
        reason = request.args.get("error_description") or request.args.get("error")
        return _signin_page({"provider": f"Sign-in was not completed: {reason}."}, 400)
    try:
        token = remote.authorize_access_token()
        user = account_for(db(), identity_from(provider, token))
    except SigninError as exc:
        db().rollback()
        return _signin_page({"provider": str(exc)}, 403)
    except OAuthError as exc:
        return _signin_page({"provider": f"The sign-in answer was refused ({exc.error}). Start again."}, 400)
    except Exception as exc:  # noqa: BLE001 - a provider that answers nonsense or not at all
        current_app.logger.warning("sign-in with %s failed: %s", provider, exc)
        return _signin_page({"provider": f"The sign-in could not be checked ({exc.__class__.__name__}). "
                                         "Start again."}, 400)
    return _sign_in_as(user, next_url)


@bp.post("/signin/demo")
@limiter.limit(lambda: current_app.config["SIGNIN_RATE_LIMIT"])
def signin_demo() -> Any:
    """Demo sign-in (EARSHOT_DEMO_SIGNIN=1, never in production): be the demo operator,
    developer or admin."""
    from ..signin import SigninError, demo_account

    if not current_app.config["DEMO_SIGNIN"]:
        abort(404)
    try:
        user = demo_account(db(), request.form.get("role", ""))
    except SigninError as exc:
        return _signin_page({"role": str(exc)}, 422)
    return _sign_in_as(user, request.form.get("next"))


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


# --- pain points -------------------------------------------------------------------------------


def _pain_filters() -> tuple[dict[str, str], dict[str, str], Any]:
    """The list filters from the query string, each checked; errors stand beside their field."""
    from ..cycles import all_cycles, find
    from ..models import PAIN_STATUSES
    from ..painpoints import SORTS

    args = request.args
    values = {k: args.get(k, "") for k in ("component", "status", "cycle", "sort")}
    errors: dict[str, str] = {}
    if values["status"] and values["status"] not in PAIN_STATUSES:
        errors["status"] = f"one of {', '.join(PAIN_STATUSES)}"
    if values["sort"] and values["sort"] not in SORTS:
        errors["sort"] = f"one of {', '.join(SORTS)}"
    cycle = None
    if values["cycle"]:
        cycle = find(all_cycles(db()), values["cycle"])
        if cycle is None:
            errors["cycle"] = f"no cycle named {values['cycle']}"
    return values, errors, cycle


def _painpoint_page(template: str, *, default_sort: str, default_cycle: Any = None) -> Any:
    from ..cycles import all_cycles
    from ..models import PAIN_STATUSES
    from ..painpoints import coverage, list_painpoints

    values, errors, cycle = _pain_filters()
    if not values["cycle"] and default_cycle is not None:
        cycle, values["cycle"] = default_cycle, default_cycle.name
    try:
        page = parse_int("page", request.args.get("page"), 1, 1, 10**6)
    except BadParameter:
        page = 1
    page_size = current_app.config["PAGE_SIZE"]
    total, items = list_painpoints(db(), component=values["component"] or None,
                                   status=None if "status" in errors else values["status"] or None, cycle=cycle,
                                   sort=values["sort"] if values["sort"] and "sort" not in errors else default_sort,
                                   limit=page_size, offset=(page - 1) * page_size)
    cover = coverage(db(), cycle)
    return render_template(template, items=items, total=total, page=page,
                           pages=max(1, (total + page_size - 1) // page_size), values=values, errors=errors,
                           coverage=cover, bar=status_bar(cover["by_status"]), statuses=PAIN_STATUSES,
                           cycles=all_cycles(db()), components=_taxonomy_names(), user=current_user())


def status_bar(by_status: dict[str, int], width: int = 480, height: int = 18) -> list[dict[str, Any]]:
    """Segments of a stacked bar of pain points per status (drawn as SVG, no script)."""
    total = sum(by_status.values())
    x, out = 0.0, []
    for status, n in by_status.items():
        if not n:
            continue
        w = width * n / total
        out.append({"status": status, "n": n, "x": round(x, 1), "w": round(w, 1), "h": height})
        x += w
    return out


@bp.get("/painpoints")
def painpoints() -> Any:
    """Pain points, highest impact first, with the coverage rate of the chosen cycle."""
    return _painpoint_page("painpoints/index.html", default_sort="impact")


@bp.get("/triage")
def triage() -> Any:
    """Developers' queue: unlinked and unclassified pain first, coverage of the cycle on top."""
    from ..cycles import all_cycles, cycle_at
    from ..models import PainPoint

    user = current_user()
    if user is None:
        return redirect(url_for("web.signin", next=request.full_path))
    if user.role not in ("developer", "admin"):
        abort(403)
    latest = db().execute(select(func.max(PainPoint.last_reported))).scalar()
    default = cycle_at(all_cycles(db()), latest) if latest else None  # the cycle the newest pain falls in
    return _painpoint_page("painpoints/triage.html", default_sort="triage", default_cycle=default)


def _painpoint_detail_page(pp_id: int, errors: dict[str, str] | None = None, status: int = 200) -> Any:
    from ..painpoints import painpoint_detail, similar_painpoints

    data = painpoint_detail(db(), pp_id)
    if data is None:
        abort(404)
    if data.get("merged_into"):
        return redirect(url_for("web.painpoint", pp_id=data["merged_into"]))
    user = current_user()
    voted = False
    if user is not None:
        from ..models import PainPointVote

        voted = db().execute(select(PainPointVote.id).where(PainPointVote.pain_point_id == pp_id,
                                                            PainPointVote.user_id == user.id)).first() is not None
    return render_template("painpoints/detail.html", p=data, user=user, voted=voted, errors=errors or {},
                           components=_taxonomy_names(),
                           similar=similar_painpoints(db(), current_app.config["SQLALCHEMY_URL"], pp_id)), status


@bp.get("/painpoints/<int:pp_id>")
def painpoint(pp_id: int) -> Any:
    return _painpoint_detail_page(pp_id)


@bp.post("/painpoints/<int:pp_id>/vote")
def painpoint_vote(pp_id: int) -> Any:
    """"Affects me too" from any signed-in user (pressing again takes it back)."""
    from ..painpoints import PainPointError, vote

    user = current_user()
    if user is None:
        return redirect(url_for("web.signin", next=url_for("web.painpoint", pp_id=pp_id)))
    try:
        on = request.form.get("vote") != "off"
        vote(db(), pp_id, user, on=on)
    except PainPointError:
        abort(404)
    db().commit()
    if request.accept_mimetypes.best == "application/json":  # the report form's button (fetch)
        return {"voted": on, "painpoint": pp_id}
    flash("Counted: this affects you too." if on else "Taken back.")
    return redirect(url_for("web.painpoint", pp_id=pp_id))


@bp.post("/painpoints/<int:pp_id>/triage")
def painpoint_triage(pp_id: int) -> Any:
    """Developers' actions on a pain point, one form each, all audited."""
    from .. import painpoints as pain

    user = current_user()
    if user is None:
        return redirect(url_for("web.signin", next=url_for("web.painpoint", pp_id=pp_id)))
    if user.role not in ("developer", "admin"):
        abort(403)
    if pain.painpoint_detail(db(), pp_id) is None:
        abort(404)
    form = request.form
    action = form.get("action", "")
    target = pp_id
    try:
        if action in ("link", "unlink"):
            ref = pain.link_ticket(db(), pp_id, form.get("ref", ""), user.email, linked=action == "link")
            message = f"{ref} {'linked' if action == 'link' else 'unlinked'}."
        elif action == "components":
            pain.set_components(db(), pp_id, set(_taxonomy_names()), user.email,
                                confirm=[c for c in [form.get("confirm", "")] if c],
                                reject=form.getlist("reject"))
            pain.refresh(db(), [pp_id])
            message = "Components updated."
        elif action == "tested":
            pain.mark_tested(db(), pp_id, form.get("url", ""), user.email, form.get("note", ""))
            message = "Marked as covered by a test."
        elif action == "merge":
            raw = form.get("into", "").strip().lstrip("#")
            if not raw.isdigit():
                raise pain.PainPointError("into", "the number of the pain point to merge into")
            event = pain.merge(db(), pp_id, int(raw), user.email)
            target, message = int(raw), f"Merged #{pp_id} here (undo from the history below, event {event.id})."
        elif action == "split":
            threads = [int(t) for t in form.getlist("threads") if t.isdigit()]
            point = pain.split(db(), pp_id, threads, user.email, form.get("title") or None)
            target, message = point.id or pp_id, f"Split from #{pp_id}."
        elif action == "undo":
            raw = form.get("event", "")
            pain.undo(db(), int(raw) if raw.isdigit() else 0, user.email)
            message = "Undone."
        else:
            raise pain.PainPointError("action", "unknown action")
    except pain.PainPointError as exc:
        db().rollback()
        return _painpoint_detail_page(pp_id, {exc.field: exc.message}, 422)
    db().commit()
    flash(message)
    return redirect(url_for("web.painpoint", pp_id=target))


# --- digest, subscriptions --------------------------------------------------------------------


def _digest_for(cycle_name: str, week_name: str) -> tuple[Any, Any]:
    from ..cycles import all_cycles, find
    from ..digest import DigestError, check_week_in_cycle, parse_week

    cycle = find(all_cycles(db()), cycle_name)
    if cycle is None:
        abort(404)
    try:
        week = parse_week(week_name)
        check_week_in_cycle(cycle, week)
    except DigestError:
        abort(404)
    return cycle, week


def _followed(user: Any) -> Any:
    """The signed-in user's components (None: all, or nobody signed in)."""
    from ..digest import components_of_subscription
    from ..models import Subscription

    if user is None:
        return None
    sub = db().execute(select(Subscription).where(Subscription.user_id == user.id,
                                                  Subscription.active.is_(True))).scalars().first()
    return components_of_subscription(sub) if sub is not None else None


@bp.get("/digests/<cycle_name>/<week_name>")
def digest_page(cycle_name: str, week_name: str) -> Any:
    """The week's digest as a page: the signed-in subscriber's components, else all."""
    from ..digest import build, for_recipient, subject_of

    cycle, week = _digest_for(cycle_name, week_name)
    data = for_recipient(build(db(), cycle, week, base_url=request.host_url), _followed(current_user()))
    return render_template("digest.html", d=data, subject=subject_of(data))


@bp.get("/digests/<cycle_name>/feed.atom")
def digest_feed(cycle_name: str) -> Any:
    """The cycle's weekly digests (all components) as an Atom feed, newest week first."""
    from datetime import timedelta

    from ..cycles import all_cycles, find
    from ..digest import build, for_recipient, subject_of, week_of
    from ..models import utcnow

    cycle = find(all_cycles(db()), cycle_name)
    if cycle is None:
        abort(404)
    last = week_of(min(utcnow(), cycle.end - timedelta(seconds=1)))
    entries = []
    for back in range(4):  # the last four weeks of the cycle that have ended
        week = week_of(last.start - timedelta(days=7 * back))
        if week.end <= cycle.start or week.end > utcnow():
            continue
        data = for_recipient(build(db(), cycle, week, base_url=request.host_url), None)
        entries.append({"week": week, "subject": subject_of(data), "d": data,
                        "url": url_for("web.digest_page", cycle_name=cycle.name, week_name=week.name, _external=True)})
    body = render_template("digest.atom.xml", cycle=cycle, entries=entries,
                           self_url=url_for("web.digest_feed", cycle_name=cycle.name, _external=True))
    return body, 200, {"Content-Type": "application/atom+xml; charset=utf-8"}


@bp.route("/settings", methods=["GET", "POST"])
def settings() -> Any:
    """A signed-in user's digest subscription: components to follow, or all, or none."""
    from ..digest import DigestError, parse_components, subscribe, unsubscribe

    user = current_user()
    if user is None:
        return redirect(url_for("web.signin", next=url_for("web.settings")))
    errors: dict[str, str] = {}
    if request.method == "POST":
        choice = request.form.get("follow", "")
        if choice == "none":
            unsubscribe(db(), user.id or 0)
            db().commit()
            flash("You will get no digest.")
            return redirect(url_for("web.settings"))
        value = "all" if choice == "all" else ",".join(request.form.getlist("components"))
        try:
            wanted = parse_components(value, _taxonomy_names())
        except DigestError as exc:
            errors["components"] = str(exc)
        else:
            subscribe(db(), user, wanted)
            db().commit()
            flash("Your weekly digest follows " + ("all components." if wanted is None else ", ".join(sorted(wanted))
                                                   + "."))
            return redirect(url_for("web.settings"))
    return _settings_page(user, errors, status=422 if errors else 200)


def _settings_page(user: Any, errors: dict[str, str], *, new_token: str = "", status: int = 200) -> Any:
    from ..models import ApiToken, Subscription

    sub = db().execute(select(Subscription).where(Subscription.user_id == user.id)).scalars().first()
    tokens = db().execute(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())
                          ).scalars().all()
    return render_template("settings.html", user=user, sub=sub, components=_taxonomy_names(), errors=errors,
                           tokens=tokens, new_token=new_token), status


@bp.post("/settings/tokens")
def settings_tokens() -> Any:
    """A user's own API tokens: create one (shown once, on this answer only: never in a cookie
    or a log) or revoke one."""
    from ..auth import create_token, parse_scopes, revoke
    from ..models import ApiToken, AuditEvent

    user = current_user()
    if user is None:
        return redirect(url_for("web.signin", next=url_for("web.settings")))
    if request.form.get("action") == "revoke":
        try:
            row = db().get(ApiToken, parse_int("token_id", request.form.get("token_id"), 0, 0, 2**62))
        except BadParameter:
            row = None
        if row is None or row.user_id != user.id:
            abort(404)
        revoke(db(), row.id or 0)
        db().add(AuditEvent(by=user.email, action="token_revoke", target_kind="user", target_id=user.id or 0,
                            detail=f'{{"token": "{row.prefix}"}}'))
        db().commit()
        flash(f"Token {row.prefix}… revoked.")
        return redirect(url_for("web.settings"))
    try:
        scopes = parse_scopes(request.form.get("scopes", ""))
    except ValueError:
        return _settings_page(user, {"scopes": "Choose read only, or read and write."}, status=422)
    token = create_token(db(), user, scopes)
    db().add(AuditEvent(by=user.email, action="token_create", target_kind="user", target_id=user.id or 0,
                        detail=f'{{"token": "{token[:12]}", "scopes": "{scopes}"}}'))
    db().commit()
    response = _settings_page(user, {}, new_token=token)
    return response[0], response[1], {"Cache-Control": "no-store"}


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
def unsubscribe_view(token: str) -> Any:
    """The link in every digest. GET asks (link scanners must not unsubscribe anyone); POST, from
    the page or from a mail client's one-click List-Unsubscribe-Post, unsubscribes."""
    from ..digest import unsubscribe, user_for_unsubscribe

    user_id = user_for_unsubscribe(current_app.config["SECRET_KEY"], token)
    if user_id is None:
        return render_template("unsubscribe.html", state="invalid"), 404
    if request.method == "POST":
        unsubscribe(db(), user_id)
        db().commit()
        return render_template("unsubscribe.html", state="done")
    return render_template("unsubscribe.html", state="ask", token=token)


# --- admin: followed sources --------------------------------------------------------------------


def _admin() -> Any:
    user = current_user()
    if user is None:
        return None, redirect(url_for("web.signin", next=request.path))
    if user.role != "admin":
        abort(403)
    return user, None


@bp.route("/admin/sources", methods=["GET", "POST"])
def admin_sources() -> Any:
    """Admins add feeds and remote archives, turn them on and off, change how often they are read
    and poll one now."""
    from ..models import SOURCE_KINDS, Source
    from ..polling import SourceError, add_source, fetcher_from, parse_every, poll

    user, redirect_to = _admin()
    if redirect_to is not None:
        return redirect_to
    errors: dict[str, str] = {}
    values = {k: request.form.get(k, "") for k in ("name", "kind", "url", "list", "role", "every", "since")}
    if request.method == "POST":
        action = request.form.get("action", "add")
        if action == "add":
            try:
                source = add_source(db(), name=values["name"], kind=values["kind"], url=values["url"],
                                    list_name=values["list"], role=values["role"] or "unknown",
                                    every=values["every"] or "1h", since=values["since"])
            except SourceError as exc:
                db().rollback()
                errors[exc.field] = exc.message
            else:
                db().commit()
                flash(f"Following {source.name}.")
                return redirect(url_for("web.admin_sources"))
        else:
            raw = request.form.get("source", "")
            chosen = db().get(Source, int(raw)) if raw.isdigit() else None
            if chosen is None:
                abort(404)
            source = chosen
            if action in ("enable", "disable"):
                source.enabled = action == "enable"
                message = f"{source.name} {'enabled' if source.enabled else 'disabled'}."
            elif action == "every":
                try:
                    source.every_minutes = parse_every(request.form.get("every", ""))
                    message = f"{source.name} is read every {source.every_minutes} minutes."
                except SourceError as exc:
                    errors[f"every-{source.id}"] = exc.message
                    message = ""
            elif action == "poll":
                result = poll(db(), source, fetcher_from(current_app.config))
                message = (f"{source.name}: {result.status}, {result.messages_new} new, {result.duplicates} already "
                           f"stored, {len(result.problems)} problems.")
            else:
                abort(400)
            if not errors:
                db().add(source)
                db().commit()
                flash(message)
                return redirect(url_for("web.admin_sources"))
    sources = db().execute(select(Source).order_by(Source.name)).scalars().all()
    return render_template("admin/sources.html", sources=sources, errors=errors, values=values, kinds=SOURCE_KINDS,
                           user=user), 422 if errors else 200


@bp.route("/admin/users", methods=["GET", "POST"])
def admin_users() -> Any:
    """Admins give people their role (new people are operators) and disable accounts."""
    from ..auth import ROLES, AccountError, set_account
    from ..models import User

    user, redirect_to = _admin()
    if redirect_to is not None:
        return redirect_to
    errors: dict[str, str] = {}
    if request.method == "POST":
        raw = request.form.get("user", "")
        person = db().get(User, int(raw)) if raw.isdigit() else None
        if person is None:
            abort(404)
        try:
            changed = set_account(db(), person, user.email, role=request.form.get("role") or None,
                                  disabled=request.form.get("disabled") == "1")
        except AccountError as exc:
            db().rollback()
            errors[f"{exc.field}-{person.id}"] = exc.message
        else:
            db().commit()
            if changed:
                flash(f"{person.email}: {person.role}{', disabled' if person.disabled else ''}.")
            return redirect(url_for("web.admin_users"))
    people = db().execute(select(User).order_by(User.role, User.email)).scalars().all()
    return render_template("admin/users.html", people=people, roles=ROLES, errors=errors, user=user), \
        422 if errors else 200


@bp.get("/search")
def search_page() -> Any:
    """The search page: query language, facets with counts, highlighted snippets, sorting, paging
    and "more like this" on every hit."""
    from ..search import FACETS, SORTS, SearchError, index_for, parse

    args = request.args
    values = {k: args.get(k, "") for k in ("q", "component", "list", "status", "kind", "sort", "like")}
    errors: dict[str, str] = {}
    sort = values["sort"] if values["sort"] in SORTS else "relevance"
    try:
        page = parse_int("page", args.get("page"), 1, 1, 10_000)
    except BadParameter:
        page = 1
    idx = index_for(current_app.config)
    result: dict[str, Any] = {"total": 0, "facets": {f: {} for f in FACETS}, "hits": [], "suggestion": None}
    similar: list[dict[str, Any]] = []
    if values["like"]:
        similar = idx.more_like(values["like"][:100])
    elif any(values[k] for k in ("q", "component", "list", "status", "kind")):
        try:
            query = parse(values["q"], {k: values[k] for k in ("component", "list", "status", "kind")})
            result = idx.search(query, sort=sort, page=page)
        except SearchError as exc:
            errors["q"] = exc.message
    pages = max(1, min(500, (result["total"] + 19) // 20))
    return render_template("search.html", values=values, result=result, errors=errors, page=page, pages=pages,
                           sort=sort, similar=similar, facet_names=FACETS), 422 if errors else 200


@bp.route("/saved", methods=["GET", "POST"])
def saved_searches() -> Any:
    """A signed-in user's saved searches: save the current query, list them with their feeds,
    delete one. The feed URL carries a secret shown here (stored hashed), so a feed reader needs no
    session even on a private deployment."""
    import json as _json
    import secrets

    from ..auth import hash_token
    from ..models import SavedSearch

    user = current_user()
    if user is None:
        return redirect(url_for("web.signin", next=request.full_path))
    errors: dict[str, str] = {}
    if request.method == "POST":
        if request.form.get("action") == "delete":
            row = db().get(SavedSearch, int(request.form.get("id", "0") or 0))
            if row is None or row.user_id != user.id:
                abort(404)
            db().delete(row)
            db().commit()
            flash("Saved search deleted.")
            return redirect(url_for("web.saved_searches"))
        name = request.form.get("name", "").strip()
        query = {k: request.form.get(k, "").strip() for k in ("q", "component", "list", "status", "kind")}
        if not name or len(name) > 200:
            errors["name"] = "Give the search a name (at most 200 characters)."
        if not any(query.values()):
            errors["q"] = "There is nothing to save: search for something first."
        if not errors:
            secret = secrets.token_urlsafe(24)
            db().add(SavedSearch(user_id=user.id or 0, name=name, query=_json.dumps(query),
                                 feed_hash=hash_token(secret)))
            db().commit()
            session["new_feed"] = secret
            flash(f"Saved “{name}”. Its feed address is shown once below; copy it into your feed reader.")
            return redirect(url_for("web.saved_searches"))
    rows = db().execute(select(SavedSearch).where(SavedSearch.user_id == user.id)
                        .order_by(SavedSearch.created_at.desc())).scalars().all()
    items = [{"id": r.id, "name": r.name, "query": _json.loads(r.query), "created": r.created_at} for r in rows]
    new_feed = session.pop("new_feed", None)
    return render_template("saved.html", items=items, errors=errors, form=request.form,
                           new_feed=url_for("web.saved_feed", secret=new_feed, _external=True) if new_feed else None
                           ), 422 if errors else 200


@bp.get("/saved/<secret>.atom")
def saved_feed(secret: str) -> Any:
    """A saved search as an Atom feed: its newest 20 hits."""
    import json as _json

    from ..auth import hash_token
    from ..models import SavedSearch
    from ..search import index_for, parse

    row = db().execute(select(SavedSearch).where(SavedSearch.feed_hash == hash_token(secret))).scalars().first()
    if row is None:
        abort(404)
    query = _json.loads(row.query)
    result = index_for(current_app.config).search(
        parse(query.get("q", ""), {k: query.get(k, "") for k in ("component", "list", "status", "kind")}),
        sort="date", per_page=20)
    links = {"thread": "web.thread", "painpoint": "web.painpoint"}
    entries = []
    for h in result["hits"]:
        args = {"thread_id": h["id"]} if h["kind"] == "thread" else {"pp_id": h["id"]}
        url = url_for(links[h["kind"]], _external=True, **args) if h["kind"] in links else \
            url_for("web.search_page", q=f"ref:{h['refs'][0]}" if h["refs"] else h["title"], _external=True)
        entries.append({**h, "url": url})
    body = render_template("saved.atom.xml", name=row.name, entries=entries,
                           self_url=request.url, updated=entries[0]["date"] if entries else None)
    return body, 200, {"Content-Type": "application/atom+xml; charset=utf-8"}
