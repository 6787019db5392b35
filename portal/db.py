"""The engine, a session per request, `session_scope()` for the CLI, and migrations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask, current_app, g
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from .config import ROOT, database_url

if TYPE_CHECKING:
    from alembic.config import Config

_engines: dict[str, Engine] = {}


def get_engine(url: str) -> Engine:
    """One engine per URL per process (web workers each get their own pool)."""
    if url not in _engines:
        if url.startswith("sqlite"):
            # Prepared statements kept per connection: 32, not Python's 128. Chunked queries bind
            # lists of up to 2,000 ids, a statement per length, and 128 of those held 10 MB of
            # SQLite's memory after refreshing a large archive's pain points (32: 2 MB); the
            # statements a page or an import repeats are far fewer.
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30,
                                                      "cached_statements": 32})

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()
        else:
            engine = create_engine(url, pool_pre_ping=True)
        _engines[url] = engine
    return _engines[url]


def engine() -> Engine:
    return get_engine(current_app.config["SQLALCHEMY_URL"])


def db() -> Session:
    """The request's session, closed on teardown."""
    if "db_session" not in g:
        g.db_session = Session(engine())
    return g.db_session  # type: ignore[no-any-return]


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error (CLI, jobs)."""
    with Session(engine()) as session:
        try:
            yield session
            session.commit()
        except Exception:
            session.rollback()
            raise


def alembic_config(url: str) -> Config:
    # Alembic is imported where migrations run: every process (web workers, `flask import`)
    # imports this module, and alembic with its dialects costs 0.14 s to import.
    from alembic.config import Config

    cfg = Config(str(ROOT / "migrations" / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["sqlalchemy_url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision`."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def _close(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def init_app(app: Flask) -> None:
    app.config["SQLALCHEMY_URL"] = database_url(app.config)
    Path(app.config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    app.teardown_appcontext(_close)
