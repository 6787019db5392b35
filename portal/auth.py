"""API tokens (hashed at rest) and the read gate of private deployments."""

from __future__ import annotations

import hashlib
import secrets
from functools import wraps
from typing import Any

from flask import current_app, jsonify, request, session
from sqlmodel import Session as DbSession
from sqlmodel import select

from .db import db
from .models import ApiToken, User, utcnow

TOKEN_PREFIX = "esk_"  # noqa: S105 - a public prefix that makes leaked tokens greppable


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: DbSession, user: User, scopes: str = "read") -> str:
    """A new token for the user; only its hash is stored, so this is the one time it is seen."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    assert user.id is not None
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(token), prefix=token[:12], scopes=scopes))
    return token


def user_for_token(session: DbSession, token: str) -> User | None:
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    return session.get(User, row.user_id)


def current_user() -> User | None:
    """The API's caller by bearer token; the pages' by the signed session cookie."""
    user = None
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        user = user_for_token(db(), header[7:].strip())
    elif request.blueprint != "api" and session.get("user_id"):
        user = db().get(User, session["user_id"])
    return user


def read_allowed() -> bool:
    """Reads are public unless EARSHOT_PRIVATE=1; then they need a valid token."""
    return not current_app.config["PRIVATE"] or current_user() is not None


def api_read(view: Any) -> Any:
    """Guard for API reads."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not read_allowed():
            return jsonify({"error": "authentication required"}), 401, {"WWW-Authenticate": "Bearer"}
        return view(*args, **kwargs)

    return wrapper


def revoke(session: DbSession, token_id: int) -> None:
    row = session.get(ApiToken, token_id)
    if row is not None:
        row.revoked_at = utcnow()
        session.add(row)


def api_role(*roles: str) -> Any:
    """Guard for API writes: a valid token whose user has one of the roles."""

    def decorate(view: Any) -> Any:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                return jsonify({"error": "authentication required"}), 401, {"WWW-Authenticate": "Bearer"}
            if user.role not in roles:
                return jsonify({"error": f"needs the role {' or '.join(roles)}"}), 403
            return view(*args, user=user, **kwargs)

        return wrapper

    return decorate
