"""``schema.sql`` is the schema exactly as the migrations leave it (``make schema`` rewrites it)."""

from __future__ import annotations

import difflib

import psycopg2

from infra.local.schema import SCHEMA_FILE, dump


def test_the_migrations_reproduce_schema_sql_exactly(database_url):
    migrated = dump(database_url)  # the session's database: new, and every migration applied
    written = SCHEMA_FILE.read_text()
    diff = "".join(
        difflib.unified_diff(
            written.splitlines(keepends=True),
            migrated.splitlines(keepends=True),
            "schema.sql",
            "migrated",
        )
    )
    assert not diff, f"schema.sql is not what the migrations make (run make schema):\n{diff}"


def test_schema_sql_holds_every_table_the_migrations_make(database_url):
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = {row[0] for row in cur.fetchall()}
    finally:
        conn.close()
    written = SCHEMA_FILE.read_text()
    assert tables and all(f"CREATE TABLE public.{t} (" in written for t in tables)
