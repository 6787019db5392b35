"""Earshot: carries operators' production pain to the developers who can fix it."""

from __future__ import annotations

import os
import secrets
from typing import TYPE_CHECKING, Any

from . import config as config_module

# Flask is imported by create_app: an import's parsing process loads portal.enrich, and importing
# Flask there would cost it 0.06 s before its first message.
if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """The application factory: defaults, then data/config.py, then EARSHOT_* variables."""
    from flask import Flask

    app = Flask(__name__, template_folder=str(config_module.ROOT / "templates"))
    app.config.from_mapping(config_module.DEFAULTS)
    app.config.from_pyfile(str(config_module.ROOT / "data" / "config.py"), silent=True)
    app.config.from_prefixed_env("EARSHOT")
    if test_config:
        app.config.update(test_config)
    for flag in ("PRIVATE", "DEMO_SIGNIN"):
        app.config[flag] = str(app.config[flag]).lower() in ("1", "true", "yes", "on")
    app.config["INDEX_PROCS"] = _processes(app.config["INDEX_PROCS"])
    app.config["INDEX_MEMORY_MB"] = _megabytes(app.config["INDEX_MEMORY_MB"])
    if app.config["ENV"] == "production" and app.config["DEMO_SIGNIN"]:
        raise RuntimeError("EARSHOT_DEMO_SIGNIN lets anyone sign in as anyone; it cannot be on when "
                           "EARSHOT_ENV=production")
    if not app.config["SECRET_KEY"]:
        if app.config["ENV"] == "production":
            raise RuntimeError("EARSHOT_SECRET_KEY must be set when EARSHOT_ENV=production")
        # Development only: a per-process key (sessions do not survive a restart).
        app.config["SECRET_KEY"] = os.environ.get("FLASK_SECRET_KEY") or secrets.token_hex(32)
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=app.config["ENV"] == "production",
        RATELIMIT_STORAGE_URI=app.config.get("RATELIMIT_STORAGE_URI") or "memory://",
        RATELIMIT_ENABLED=str(app.config.get("RATELIMIT_ENABLED", True)).lower() not in ("0", "false", "no"),
    )

    from . import cli, db
    from .extensions import csrf, limiter
    from .views import api, reports, web

    db.init_app(app)
    if int(app.config.get("PROXY_FIX") or 0) > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = int(app.config["PROXY_FIX"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    cli.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)
    # One-click unsubscribe (RFC 8058) comes from mail clients without a form token; the signed
    # token in its URL is what authorises it.
    csrf.exempt(web.unsubscribe_view)
    app.register_blueprint(web.bp)
    app.register_blueprint(reports.bp)

    @app.template_filter("safe_url")
    def _safe_url(value: object) -> str:
        """Links from imported data only when they are http(s): never javascript: or data:."""
        text = str(value or "").strip()
        return text if text.lower().startswith(("http://", "https://")) else "#"

    @app.after_request
    def _index_changed_painpoints(response):  # type: ignore[no-untyped-def]
        """Pain points a request changed (merge, link, vote...) are re-indexed once it committed;
        search is derived data, so a failure here is logged and never fails the request."""
        from flask import g

        session = g.get("db_session")
        touched = session.info.pop("painpoints_touched", None) if session is not None else None
        if touched and response.status_code < 400:
            try:
                from .search import reindex_painpoints

                reindex_painpoints(session, app.config, sorted(touched))
            except Exception:  # noqa: BLE001
                app.logger.exception("search index not updated for pain points %s", sorted(touched))
        return response

    @app.after_request
    def _security_headers(response):  # type: ignore[no-untyped-def]
        # Nothing an archive wrote may run as script: no inline script, no foreign sources.
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    return app


def _megabytes(value: object) -> int:
    """EARSHOT_INDEX_MEMORY_MB: a whole number of megabytes, at least 8; checked at start-up."""
    text = str(value).strip()
    if not text.isdecimal() or int(text) < 8:
        raise RuntimeError(f"EARSHOT_INDEX_MEMORY_MB is a number of megabytes, 8 or more, not {value!r}")
    return int(text)


def _processes(value: object) -> int:
    """EARSHOT_INDEX_PROCS: "auto" (one per core, at most 4) or a number; checked at start-up, so
    a typo stops the service with its name instead of failing the first large import."""
    text = str(value if value is not None else "auto").strip().lower()
    if text == "auto":
        return min(4, os.cpu_count() or 1)
    if not text.isdecimal() or int(text) < 1:
        raise RuntimeError(f"EARSHOT_INDEX_PROCS is 'auto' or a number of processes (1 or more), not {value!r}")
    return int(text)
