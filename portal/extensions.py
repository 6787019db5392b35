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
