"""Sign-in through the community's identity provider: any OpenID Connect provider found by its
discovery URL (Keycloak, Google, an OpenStack or openSUSE identity service), GitHub OAuth2, and a
demo sign-in for `make run` that refuses to exist in production.

Authlib does the protocol: state and PKCE on every redirect, nonce and ID token signature,
issuer, audience and expiry checks for OpenID Connect. This module maps what the provider says
to an Earshot account: the provider's subject identifies a returning person (an address can
change or be reused); an address is trusted to find an existing account only when the provider
says it is verified."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app
from sqlmodel import Session, select

from .models import AuditEvent, User, utcnow

DEMO_ROLES = ("operator", "developer", "admin")


class SigninError(Exception):
    """The provider's answer cannot sign anyone in; the message is for the person."""


@dataclass
class Identity:
    identity: str
    email: str
    name: str
    email_verified: bool


_registry_lock = threading.Lock()


def _oauth() -> Any:
    """The app's Authlib registry, made at the first sign-in: importing Authlib (with its
    cryptography) costs 60 ms, in every process that starts the app (web workers, CLI)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    with _registry_lock:
        if "earshot_oauth" not in app.extensions:
            app.extensions["earshot_oauth"] = _registry(app)
    return app.extensions["earshot_oauth"]


def _registry(app: Flask) -> Any:
    from authlib.integrations.flask_client import OAuth

    # One registry per app: Authlib caches clients, and tests (or two apps) must not share them.
    oauth = OAuth(app)
    if app.config.get("OIDC_DISCOVERY_URL") and app.config.get("OIDC_CLIENT_ID"):
        oauth.register(
            "oidc", overwrite=True,
            server_metadata_url=app.config["OIDC_DISCOVERY_URL"],
            client_id=app.config["OIDC_CLIENT_ID"], client_secret=app.config.get("OIDC_CLIENT_SECRET") or None,
            client_kwargs={"scope": app.config.get("OIDC_SCOPES") or "openid email profile",
                           "code_challenge_method": "S256", "timeout": 10},
        )
    if app.config.get("GITHUB_CLIENT_ID"):
        web = str(app.config.get("GITHUB_OAUTH_URL") or "https://github.com").rstrip("/")
        api = str(app.config.get("GITHUB_USER_API_URL") or "https://api.github.com").rstrip("/")
        oauth.register(
            "github", overwrite=True,
            client_id=app.config["GITHUB_CLIENT_ID"], client_secret=app.config.get("GITHUB_CLIENT_SECRET"),
            authorize_url=f"{web}/login/oauth/authorize", access_token_url=f"{web}/login/oauth/access_token",
            api_base_url=f"{api}/", client_kwargs={"scope": "read:user user:email", "timeout": 10},
        )
    return oauth


def providers(app: Flask) -> list[dict[str, str]]:
    """The sign-in buttons this deployment offers."""
    out = []
    if app.config.get("OIDC_DISCOVERY_URL") and app.config.get("OIDC_CLIENT_ID"):
        out.append({"name": "oidc", "label": str(app.config.get("OIDC_NAME") or "your identity provider")})
    if app.config.get("GITHUB_CLIENT_ID"):
        out.append({"name": "github", "label": "GitHub"})
    return out


def client(name: str) -> Any:
    if name not in [p["name"] for p in providers(current_app)]:
        return None
    return _oauth().create_client(name)


def identity_from(name: str, token: dict[str, Any]) -> Identity:
    """Who the provider says signed in, from the token it returned."""
    if name == "oidc":
        claims = dict(token.get("userinfo") or {})
        if not claims.get("sub"):
            raise SigninError("The identity provider returned no subject.")
        if not claims.get("email"):
            claims.update(_oauth().create_client("oidc").userinfo(token=token))
        iss = claims.get("iss") or ""
        email = str(claims.get("email") or "").strip().lower()
        if not email:
            raise SigninError("The identity provider gave no e-mail address; Earshot needs one to reach you.")
        name_claim = claims.get("name") or claims.get("preferred_username") or ""
        return Identity(f"oidc:{iss}|{claims['sub']}", email, str(name_claim), claims.get("email_verified") is True)
    gh = _oauth().create_client("github")
    profile = gh.get("user", token=token)
    profile.raise_for_status()
    data = profile.json()
    email, verified = "", False
    emails = gh.get("user/emails", token=token)
    if emails.status_code == 200:
        for e in emails.json():
            if e.get("primary") and e.get("email"):
                email, verified = str(e["email"]).lower(), bool(e.get("verified"))
    if not email and data.get("email"):
        email = str(data["email"]).lower()
    if not email or not data.get("id"):
        raise SigninError("GitHub gave no e-mail address for this account; add one there and try again.")
    return Identity(f"github:{data['id']}", email, str(data.get("name") or data.get("login") or ""), verified)


def admin_emails(app: Flask) -> set[str]:
    return {e.strip().lower() for e in str(app.config.get("ADMIN_EMAILS") or "").split(",") if e.strip()}


def account_for(session: Session, who: Identity) -> User:
    """The account of this identity: found by the provider's subject, else by a verified
    address, else created as an operator. Configured admin addresses become admins."""
    user = session.exec(select(User).where(User.identity == who.identity)).first()
    if user is None:
        by_email = session.exec(select(User).where(User.email == who.email)).first()
        if by_email is not None:
            if not who.email_verified:
                raise SigninError("An account with this address exists, and the provider has not verified that the "
                                  "address is yours. Verify it there, or ask an administrator.")
            if by_email.identity and by_email.identity != who.identity:
                raise SigninError("This address belongs to an account that signs in another way.")
            user = by_email
            user.identity = who.identity
        else:
            user = User(email=who.email, name=who.name, role="operator", identity=who.identity)
            session.add(user)
            session.flush()
            session.add(AuditEvent(by=who.email, action="user_create", target_kind="user", target_id=user.id or 0,
                                   detail='{"via": "' + who.identity.split(":", 1)[0] + '"}'))
    if user.disabled:
        raise SigninError("This account is disabled; ask an administrator.")
    if who.email in admin_emails(current_app) and user.role != "admin" and who.email_verified:
        user.role = "admin"
    if who.name and not user.name:
        user.name = who.name
    user.last_signin_at = utcnow()
    session.add(user)
    session.commit()
    return user


def demo_account(session: Session, role: str) -> User:
    """The demo's people: one per role, clearly not real addresses."""
    if role not in DEMO_ROLES:
        raise SigninError("Choose operator, developer or admin.")
    email = f"demo-{role}@earshot.invalid"
    user = session.exec(select(User).where(User.email == email)).first()
    if user is None:
        user = User(email=email, name=f"Demo {role}", role=role, identity=f"demo:{role}")
    user.last_signin_at = utcnow()
    session.add(user)
    session.commit()
    return user
