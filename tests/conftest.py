"""Fixtures: a real SQLite file per test by default, or a real PostgreSQL database when
EARSHOT_TEST_BACKEND=postgres (make test-postgres). ../shared is optional locally."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from portal import create_app
from portal import db as dbmod

SHARED = Path(__file__).resolve().parents[2] / "shared"
BACKEND = os.environ.get("EARSHOT_TEST_BACKEND", "sqlite")
PG_URL = os.environ.get("EARSHOT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def shared() -> Path:
    if not SHARED.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI lays the test corpus beside the clone, but {SHARED} is absent")
        pytest.skip("../shared (the test corpus) is absent on this machine; CI always has it")
    return SHARED


def _reset_postgres(url: str) -> None:
    for engine in list(dbmod._engines.values()):
        engine.dispose()
    dbmod._engines.clear()
    sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        engine = create_engine(sa_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL at {url} is not reachable here ({exc.__class__.__name__}); CI always runs it")


@pytest.fixture(scope="session")
def oidc_provider():
    """A real OpenID Connect provider on loopback (oidc-provider-mock: Authlib's server, RS256 ID
    tokens) with three people; the sign-in tests go through it end to end."""
    import httpx
    import oidc_provider_mock

    with oidc_provider_mock.run_server_in_thread() as server:
        base = f"http://localhost:{server.server_port}"
        for sub, claims in {
            "alice": {"email": "alice@ops.example", "email_verified": True, "name": "Alice Ops"},
            "boss": {"email": "boss@ops.example", "email_verified": True, "name": "The Boss"},
            "mallory": {"email": "dev@project.example", "email_verified": False, "name": "Not Dev"},
        }.items():
            assert httpx.put(f"{base}/users/{sub}", json=claims).status_code == 204
        yield base


@pytest.fixture
def app_overrides() -> dict:
    """Configuration a test module adds to the app (override this fixture there)."""
    return {}


@pytest.fixture
def app(tmp_path: Path, app_overrides: dict):
    url = ""
    if BACKEND == "postgres":
        _reset_postgres(PG_URL)
        url = PG_URL
    application = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": url,
                              "SECRET_KEY": "test-secret", "PRIVATE": False, "IMPORT_BATCH": 50,
                              # Tests share one address; the rate-limit test sets its own limit.
                              "SIGNIN_RATE_LIMIT": "1000 per minute", "REPORT_RATE_LIMIT": "1000 per minute",
                              # The PostgreSQL leg runs the search suite on PostgreSQL's full-text search.
                              "SEARCH_BACKEND": "postgres" if BACKEND == "postgres" else "whoosh",
                              **app_overrides})
    dbmod.upgrade(application.config["SQLALCHEMY_URL"])
    # Per-process derived caches are keyed by database URL, and the PostgreSQL leg reuses one URL.
    from portal import similar

    similar._cache.clear()
    similar._subset_cache.clear()
    yield application
    engine = dbmod._engines.pop(application.config["SQLALCHEMY_URL"], None)
    if engine is not None:
        engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def import_paths(app):
    """Import paths through the same service the CLI uses; returns the run summary."""
    from portal.cli import run_import

    def _import(*paths: Path, **kwargs):
        with app.app_context():
            return run_import([Path(p) for p in paths], **kwargs)

    return _import


@pytest.fixture
def session(app):
    from sqlmodel import Session

    with app.app_context():
        with Session(dbmod.engine()) as s:
            yield s
