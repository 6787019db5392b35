"""Every configuration key, documented once. Each can be set as an EARSHOT_<KEY> environment
variable (Flask's from_prefixed_env reads them), e.g. EARSHOT_DATA_DIR=/srv/earshot."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DEFAULTS: dict[str, object] = {
    # Folder for the SQLite file and the search index (git-ignored under data/ by default).
    "DATA_DIR": str(ROOT / "data" / "var"),
    # SQLAlchemy URL; empty means SQLite in DATA_DIR. PostgreSQL: postgresql://user@host/db
    "DATABASE_URL": "",
    # 1 makes every read (pages and API) require a signed-in user or an API token.
    "PRIVATE": False,
    # Flask's signing key. Must be set in production; the default only serves local use.
    "SECRET_KEY": "",
    # Page size of lists when the caller gives no limit, and the most a caller may ask for.
    "PAGE_SIZE": 25,
    "MAX_PAGE_SIZE": 200,
    # Messages written per database transaction during an import.
    "IMPORT_BATCH": 500,
    # Parse archives in a second process while the first stores: "auto" (when there are two cores
    # and more than 2 MB to read), 1 (always) or 0 (never).
    "IMPORT_PARALLEL": "auto",
    # Processes writing the search index in bulk (rebuilds, imports of 1,000 threads or more):
    # "auto" (one per core, at most 4) or a number; 1 writes in the importing process.
    "INDEX_PROCS": "auto",
    # Megabytes of postings each index writer (process) gathers before spilling them to disk:
    # its memory follows this (48: a writer of a 200k-message import peaks near 130 MB).
    "INDEX_MEMORY_MB": 48,
    # Days within which a reply with no usable headers joins a thread by subject.
    "SUBJECT_WINDOW_DAYS": 30,
    # Component taxonomy (TOML); empty means data/components.toml.
    "TAXONOMY": "",
    # Release cycles file (default data/cycles.toml); cycles added with `flask cycles add` live in the database.
    "CYCLES": "",
    # Jira project keys recognised without a browse URL (comma-separated).
    "JIRA_PROJECTS": "CLOUDSTACK,EUCA",
    # Redmine hosts whose /issues/N links are tickets (comma-separated).
    "REDMINE_HOSTS": "progress.opensuse.org",
    # Lists that belong to one GitHub repository, so bare #N means an issue there:
    # "list=owner/repo,list2=owner/repo2".
    "LIST_REPOS": "",
    # Globs that mark a changed file as a test (comma-separated); empty means the defaults in
    # importers/gitlog.py (tests/, test/, test_*.py, *_test.go, *Test.java, integration suites, ...).
    "TEST_GLOBS": "",
    # Tracker APIs `flask tickets fetch` reads from; a tracker with no URL is not fetched.
    # e.g. https://api.launchpad.net/1.0, https://issues.apache.org/jira, https://api.github.com,
    # https://review.opendev.org, https://progress.opensuse.org
    "LAUNCHPAD_API_URL": "",
    "JIRA_URL": "",
    "GITHUB_API_URL": "",
    "GERRIT_URL": "",
    "REDMINE_URL": "",
    # Where rate-limit counters live; memory:// is per process, so several workers share e.g.
    # redis://host:6379. RATELIMIT_ENABLED=0 turns limits off (never in production).
    "RATELIMIT_STORAGE_URI": "memory://",
    "RATELIMIT_ENABLED": True,
    # Sign-in attempts allowed per address.
    "SIGNIN_RATE_LIMIT": "10 per minute",
    # The largest request body accepted (bytes); larger ones are refused with 413 before parsing.
    "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,
    # Field reports one user may file (pages and API together, per limiter store).
    "REPORT_RATE_LIMIT": "20 per hour",
    # Sign-in through an OpenID Connect provider: its discovery URL
    # (https://id.example.org/realms/ops/.well-known/openid-configuration), this client's id and
    # secret (register the redirect URI <BASE>/signin/oidc/callback), the scopes, and the button's name.
    "OIDC_DISCOVERY_URL": "",
    "OIDC_CLIENT_ID": "",
    "OIDC_CLIENT_SECRET": "",
    "OIDC_SCOPES": "openid email profile",
    "OIDC_NAME": "",
    # Sign-in with GitHub (an OAuth app; callback <BASE>/signin/github/callback). The two URLs
    # change only for GitHub Enterprise.
    "GITHUB_CLIENT_ID": "",
    "GITHUB_CLIENT_SECRET": "",
    "GITHUB_OAUTH_URL": "https://github.com",
    "GITHUB_USER_API_URL": "https://api.github.com",
    # Addresses that are admins when they sign in with a verified address (comma-separated): the
    # first admin comes from here; admins give other roles with `flask users set`.
    "ADMIN_EMAILS": "",
    # 1 shows "sign in as the demo operator/developer/admin" (make run). Refused in production.
    "DEMO_SIGNIN": False,
    # Reverse proxies in front of Earshot that set X-Forwarded-For/-Proto/-Host (e.g. 1 behind
    # nginx); 0 trusts no forwarded header.
    "PROXY_FIX": 0,
    # "production" refuses to start without SECRET_KEY, with the demo sign-in, or over plain cookies.
    "ENV": "development",
    # Where links in mail point (the digest's pain points, the unsubscribe link).
    "BASE_URL": "http://127.0.0.1:5000",
    # Outgoing mail: smtp://host:25, smtp+starttls://user:pass@host:587 or smtps://user:pass@host:465.
    "SMTP_URL": "smtp://127.0.0.1:25",
    "MAIL_FROM": "Earshot <earshot@localhost>",
    # The weekly digest: day (mon..sun), hour and time zone of the scheduler's send; a digest that
    # the server refused is tried again on the next run, up to this many times.
    "DIGEST_DAY": "mon",
    "DIGEST_HOUR": 7,
    "DIGEST_TIMEZONE": "UTC",
    "DIGEST_MAX_ATTEMPTS": 5,
    # Followed sources: hosts that may be fetched (comma-separated; empty allows any http/https
    # host), seconds between two requests to one host, and the largest body read.
    "FETCH_ALLOW_HOSTS": "",
    "FETCH_HOST_INTERVAL": 1.0,
    "FETCH_MAX_BYTES": 50 * 1024 * 1024,
    # Search backend: "whoosh" (files in DATA_DIR/search, one host) or "postgres" (full-text search
    # in the PostgreSQL database, for web workers on several hosts).
    "SEARCH_BACKEND": "whoosh",
    # How often the scheduler looks for sources that are due.
    "SOURCES_CHECK_MINUTES": 5,
}


def database_url(config: dict) -> str:
    """The database URL: EARSHOT_DATABASE_URL or an SQLite file in the data folder."""
    url = str(config.get("DATABASE_URL") or "")
    if url:
        # postgresql:// means psycopg 3 here (the maintained driver).
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        return url
    data_dir = Path(str(config["DATA_DIR"]))
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir / 'earshot.sqlite3'}"
