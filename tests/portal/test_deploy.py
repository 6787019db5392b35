"""The documented production setup: gunicorn with several workers sharing one database (the
PostgreSQL leg runs it on PostgreSQL with the PostgreSQL search backend), in production mode."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def workers(app, runner):
    tokens = []
    for email in ("ana@ops.example", "lars@ops.example"):
        runner.invoke(args=["users", "create", "--email", email])
        tokens.append(runner.invoke(args=["tokens", "create", "--email", email]).output.strip().splitlines()[-1])
    port = _free_port()
    env = {**os.environ, "EARSHOT_ENV": "production", "EARSHOT_SECRET_KEY": "s" * 64,
           "EARSHOT_DATA_DIR": app.config["DATA_DIR"], "EARSHOT_DATABASE_URL": app.config["DATABASE_URL"] or "",
           "EARSHOT_SEARCH_BACKEND": app.config["SEARCH_BACKEND"], "EARSHOT_PROXY_FIX": "1"}
    if not env["EARSHOT_DATABASE_URL"]:
        env.pop("EARSHOT_DATABASE_URL")
    gunicorn = Path(sys.executable).parent / "gunicorn"
    log = Path(app.config["DATA_DIR"]) / "access.log"
    proc = subprocess.Popen([str(gunicorn), "--workers", "3", "--bind", f"127.0.0.1:{port}",
                             "--access-logfile", str(log), "--error-logfile", str(log.with_name("error.log")),
                             "--access-logformat", "%(p)s %(m)s %(U)s %(s)s", "app:app"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited: {proc.stderr.read().decode()[-2000:]}")
    yield {"base": base, "tokens": tokens, "log": log}
    proc.terminate()
    proc.wait(15)
    proc.stderr.close()


def test_several_workers_share_one_database_and_one_search(workers):
    base, tokens = workers["base"], workers["tokens"]

    def file(i: int) -> httpx.Response:
        # A new connection each time, so the workers share the requests.
        return httpx.post(f"{base}/api/v1/field-reports", timeout=60,
                          headers={"Authorization": f"Bearer {tokens[i % 2]}"},
                          json={"title": f"Quota usage drifts after resize, cell {i}", "component": "quotas",
                                "what_happened": f"Cell {i}: cores usage never comes down after a resize."})

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(file, range(12)))
    errors = workers["log"].with_name("error.log")
    assert [a.status_code for a in answers] == [201] * 12, errors.read_text()[-3000:]
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 12
    for _ in range(6):  # every worker sees every report, and one search index
        assert httpx.get(f"{base}/api/v1/reports").json()["total"] == 12
        found = httpx.get(f"{base}/api/v1/search", params={"q": "quota resize", "kind": "report"}).json()
        assert {h["id"] for h in found["hits"]} == ids
    # Production mode: cookies are Secure; the proxy's scheme is trusted (EARSHOT_PROXY_FIX=1).
    page = httpx.get(f"{base}/signin", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in page.headers["set-cookie"] and "HttpOnly" in page.headers["set-cookie"]
    pids = {line.split()[0] for line in workers["log"].read_text().splitlines()
            if re.match(r"<\d+> POST /api/v1/field-reports 201", line)}
    assert len(pids) >= 2, "the reports were all served by one worker"


def test_migrations_build_the_tables_and_indexes_the_models_declare(app):
    """A deployment's schema comes from the migrations (`flask db upgrade`), the code's from the
    models: after upgrading, nothing is missing or extra (an index declared but never migrated
    makes imports scan whole tables), on SQLite and on PostgreSQL."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import portal.models  # noqa: F401 - the tables the models declare
    from portal import db as dbmod

    with app.app_context(), dbmod.engine().connect() as conn:
        drift = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    def table_of(d: tuple) -> str:
        thing = d[1] if d[0] in ("add_table", "remove_table", "add_index", "remove_index") else None
        return thing.name if d[0].endswith("_table") else thing.table.name if thing is not None else d[2]

    # (PostgreSQL's full-text search table is the search backend's, made by its migration alone.)
    structural = [d for d in drift if isinstance(d, tuple) and d[0] in (
        "add_table", "remove_table", "add_index", "remove_index", "add_column", "remove_column")
        and table_of(d) in SQLModel.metadata.tables]
    assert structural == []


def test_sqlite_connections_keep_few_prepared_statements(tmp_path):
    """Chunked queries bind lists of up to 2,000 ids, one statement per list length: the SQLite
    engine keeps 32 prepared statements a connection (Python's default 128 held 10 MB of SQLite's
    memory after refreshing a large archive's pain points). Measured in SQLite's own allocator."""
    import _sqlite3
    import ctypes

    from sqlalchemy import text

    from portal import db as dbmod

    # (Through Python's own SQLite module: its library, linked in or shared, answers either way.)
    lib = ctypes.CDLL(_sqlite3.__file__)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    url = f"sqlite:///{tmp_path / 'statements.sqlite3'}"
    engine = dbmod.get_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
            before = lib.sqlite3_memory_used()
            for n in range(300, 500):
                conn.execute(text(f"SELECT id FROM t WHERE id IN ({', '.join(f':p{i}' for i in range(n))})"),
                             {f"p{i}": i for i in range(n)}).all()
            grown = lib.sqlite3_memory_used() - before
    finally:
        dbmod._engines.pop(url, None)
        engine.dispose()
    assert grown < 4 * 2**20, grown  # (128 statements: 8 MB)
