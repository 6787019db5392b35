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


# What a token may do: `read` (every GET of a private deployment) and `write` (everything its
# user's role allows: filing reports, votes, developers' triage).
SCOPES = ("read", "write")


def parse_scopes(value: str) -> str:
    """A scope list as stored ("read,write"); ValueError names what is unknown."""
    scopes = [s.strip() for s in value.replace(" ", ",").split(",") if s.strip()]
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes are {', '.join(SCOPES)} (got {value!r})")
    return ",".join(s for s in SCOPES if s in scopes)


def create_token(session: DbSession, user: User, scopes: str = "read,write") -> str:
    """A new token for the user; only its hash is stored, so this is the one time it is seen."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    assert user.id is not None
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(token), prefix=token[:12],
                         scopes=parse_scopes(scopes)))
    return token


def token_row(session: DbSession, token: str) -> ApiToken | None:
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    return row


def user_for_token(session: DbSession, token: str) -> User | None:
    row = token_row(session, token)
    user = session.get(User, row.user_id) if row is not None else None
    return user if user is not None and not user.disabled else None


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def current_user() -> User | None:
    """The API's caller by bearer token; the pages' by the signed session cookie."""
    user = None
    token = _bearer()
    if token is not None:
        user = user_for_token(db(), token)
    elif session.get("user_id") and (request.blueprint != "api" or request.method in ("GET", "HEAD")):
        # The API takes the session cookie for reads only (the report form's suggestions in a
        # private deployment); API writes need a bearer token, so no cross-site form can make one.
        user = db().get(User, session["user_id"])
        if user is not None and user.disabled:
            session.clear()
            user = None
    return user


def may_write() -> bool:
    """A session may write; a bearer token only with the `write` scope."""
    token = _bearer()
    if token is None:
        return True
    row = token_row(db(), token)
    return row is not None and "write" in row.scopes.split(",")


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
            if not may_write():
                return jsonify({"error": "this token is read-only (scope read); create one with scope write"}), 403
            return view(*args, user=user, **kwargs)

        return wrapper

    return decorate


ROLES = ("operator", "developer", "admin")


class AccountError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def set_account(session: DbSession, user: User, by: str, *, role: str | None = None,
                disabled: bool | None = None) -> bool:
    """Change a person's role or disable the account (audited). Refuses to leave no active admin.
    Returns whether anything changed."""
    import json

    from sqlalchemy import func

    from .models import AuditEvent

    if role is not None and role not in ROLES:
        raise AccountError("role", f"one of {', '.join(ROLES)}")
    before = {"role": user.role, "disabled": user.disabled}
    after = {"role": role if role is not None else user.role,
             "disabled": disabled if disabled is not None else user.disabled}
    if after == before:
        return False
    if before["role"] == "admin" and not before["disabled"] and (after["role"] != "admin" or after["disabled"]):
        admins = session.exec(select(func.count()).select_from(User).where(
            User.role == "admin", User.disabled.is_(False))).one()
        if admins <= 1:
            raise AccountError("role", "the last active admin stays an admin; make another admin first")
    user.role, user.disabled = str(after["role"]), bool(after["disabled"])
    session.add(user)
    session.flush()
    session.add(AuditEvent(by=by, action="user_set", target_kind="user", target_id=user.id or 0,
                           detail=json.dumps({"before": before, "after": after})))
    return True
