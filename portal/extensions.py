"""Flask extensions, created once and bound to the app in the factory."""

from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect

# CSRF tokens on every form; the API is exempt because it takes bearer tokens, never cookies.
csrf = CSRFProtect()
# Rate limits (sign-in now, submissions later). Storage is per process unless
# EARSHOT_RATELIMIT_STORAGE_URI points several workers at one store (e.g. redis://host:6379).
limiter = Limiter(key_func=get_remote_address, default_limits=[])


def submitter_key() -> str:
    """Submissions are limited per signed-in user (per address for anonymous callers, who are
    refused anyway), so operators behind one NAT do not share a budget."""
    from .auth import current_user

    user = current_user()
    return f"user:{user.id}" if user is not None else f"addr:{get_remote_address()}"
