"""search documents for the PostgreSQL search backend (PostgreSQL only)

Revision ID: 0010
Revises: 0009
"""
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite deployments search with Whoosh
    op.execute("""
        CREATE TABLE search_doc (
            key text PRIMARY KEY,
            kind text NOT NULL,
            ref_id integer NOT NULL,
            title text NOT NULL DEFAULT '',
            body text NOT NULL DEFAULT '',
            author text NOT NULL DEFAULT '',
            roles text[] NOT NULL DEFAULT '{}',
            list text NOT NULL DEFAULT '',
            components text[] NOT NULL DEFAULT '{}',
            refs text[] NOT NULL DEFAULT '{}',
            status text NOT NULL DEFAULT '',
            date timestamp,
            year integer,
            impact double precision NOT NULL DEFAULT 0,
            tsv tsvector GENERATED ALWAYS AS (
                setweight(to_tsvector('english', title), 'A') ||
                setweight(to_tsvector('english', body), 'B') ||
                setweight(to_tsvector('simple', author), 'C')) STORED
        )""")
    op.execute("CREATE INDEX ix_search_doc_tsv ON search_doc USING gin (tsv)")
    op.execute("CREATE INDEX ix_search_doc_components ON search_doc USING gin (components)")
    op.execute("CREATE INDEX ix_search_doc_refs ON search_doc USING gin (refs)")
    op.execute("CREATE INDEX ix_search_doc_date ON search_doc (date)")
    op.execute("CREATE TABLE search_word (word text PRIMARY KEY)")
    # Did-you-mean needs trigram similarity; without the extension (no right to create it) search
    # works and only the suggestion is missing.
    op.execute("""
        DO $$ BEGIN
            CREATE EXTENSION IF NOT EXISTS pg_trgm;
            CREATE INDEX ix_search_word_trgm ON search_word USING gin (word gin_trgm_ops);
        EXCEPTION WHEN insufficient_privilege OR undefined_file THEN
            RAISE NOTICE 'pg_trgm unavailable: no spelling suggestions';
        END $$""")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TABLE IF EXISTS search_word")
    op.execute("DROP TABLE IF EXISTS search_doc")
