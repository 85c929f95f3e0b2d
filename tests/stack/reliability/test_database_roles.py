"""Least privilege in PostgreSQL, on the real local server: the API's role reads and cannot write,
the job's role writes the product's rows and cannot change the schema, tables of later migrations
get the same grants, and every function connects as its role (``chalicelib.db``)."""

from __future__ import annotations

import contextlib
import uuid

import psycopg2
import pytest
from psycopg2 import errors, sql

from chalicelib import db as database
from chalicelib import uploads
from chalicelib.api.store import default_store

#: Every way to change a table's rows, and the schema.
WRITES = {
    "insert": "INSERT INTO {t} DEFAULT VALUES",
    "update": "UPDATE {t} SET {c} = {c}",
    "delete": "DELETE FROM {t}",
    "truncate": "TRUNCATE {t}",
}
DDL = {
    "alter": "ALTER TABLE {t} ADD COLUMN intruder text",
    "drop": "DROP TABLE {t}",
    "rename": "ALTER TABLE {t} RENAME TO intruder",
    "index": "CREATE INDEX intruder_idx ON {t} ({c})",
}


@contextlib.contextmanager
def connected_as(url: str, role: str):
    """A connection logged in as ``role`` itself (the local server trusts loopback)."""
    conn = psycopg2.connect(url, user=role)
    try:
        yield conn
    finally:
        conn.close()


def tables(db) -> dict[str, str]:
    """Every table of the schema -> one of its columns (as the migrations made them)."""
    with db, db.cursor() as cur:
        cur.execute(
            "SELECT table_name, min(column_name) FROM information_schema.columns"
            " WHERE table_schema = current_schema() GROUP BY table_name"
        )
        return dict(cur.fetchall())


def statement(template: str, table: str, column: str = "id") -> sql.Composed:
    """``template`` with ``{t}`` the table and ``{c}`` a column, quoted as identifiers."""
    return sql.SQL(template).format(t=sql.Identifier(table), c=sql.Identifier(column))


def refused(conn, statement) -> bool:
    """Whether the server refuses ``statement`` for lack of privilege (rolled back either way)."""
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    except (errors.InsufficientPrivilege, errors.ReadOnlySqlTransaction):
        return True
    finally:
        conn.rollback()
    return False


def test_the_api_role_reads_every_product_table_and_can_change_nothing(published, database_url):
    found = tables(published)
    assert "runs" in found and "schema_migrations" in found
    with connected_as(database_url, database.READER) as conn:
        for table, column in found.items():
            readable = not refused(conn, statement("SELECT 1 FROM {t} LIMIT 1", table))
            assert readable == (table != "schema_migrations"), table
            for verb, template in {**WRITES, **DDL}.items():
                assert refused(conn, statement(template, table, column)), (verb, table)
        assert refused(conn, "CREATE TABLE intruder (x int)")


def test_the_job_role_writes_rows_and_cannot_alter_or_drop(published, database_url):
    found = tables(published)
    with connected_as(database_url, database.WRITER) as conn:
        for table, column in found.items():
            for verb, template in DDL.items():
                assert refused(conn, statement(template, table, column)), (verb, table)
            assert refused(conn, statement(WRITES["truncate"], table)), table
            update = statement(WRITES["update"], table, column)
            assert (not refused(conn, update)) == (table != "schema_migrations"), table
        assert refused(conn, "CREATE TABLE intruder (x int)")
        with conn, conn.cursor() as cur:  # a grant it has no right to give grants nothing
            cur.execute(f"GRANT INSERT ON runs TO {database.READER}")
            cur.execute("SELECT has_table_privilege(%s, 'runs', 'INSERT')", (database.READER,))
            assert cur.fetchone()[0] is False
        with conn, conn.cursor() as cur:  # the rows of a run: what the job and handlers write
            cur.execute(
                "INSERT INTO runs (run_id, source_key, status) VALUES ('r-writer', 'k', 'queued')"
            )
            cur.execute("DELETE FROM runs WHERE run_id = 'r-writer'")


def test_a_table_of_a_later_migration_gets_the_same_grants(db, database_url):
    """What later migrations create (0005, 0006, 0008...) is covered without naming it."""
    name = f"later_{uuid.uuid4().hex[:8]}"
    with db, db.cursor() as cur:  # as the migrations' role
        cur.execute(statement("CREATE TABLE {t} (id bigserial PRIMARY KEY, v text)", name))
    try:
        with connected_as(database_url, database.WRITER) as conn:
            with conn, conn.cursor() as cur:
                cur.execute(statement("INSERT INTO {t} (v) VALUES ('w') RETURNING id", name))
                assert cur.fetchone()[0] == 1  # its sequence too
            assert refused(conn, statement(DDL["drop"], name))
            assert refused(conn, statement(DDL["alter"], name))
        with connected_as(database_url, database.READER) as conn:
            with conn, conn.cursor() as cur:
                cur.execute(statement("SELECT v FROM {t}", name))
                assert cur.fetchall() == [("w",)]
            assert refused(conn, statement(WRITES["insert"], name))
    finally:
        with db, db.cursor() as cur:
            cur.execute(statement(DDL["drop"], name))


def current_user(conn) -> str:
    with conn.cursor() as cur:
        cur.execute("SELECT current_user")
        return cur.fetchone()[0]


def test_each_function_connects_as_its_role(published):
    """The API's store reads as the reader; the job's steps and the handlers write as the
    writer; only the migrations connect as the owner."""
    assert default_store().read(current_user) == database.READER
    assert database.with_connection(current_user) == database.WRITER
    conn = uploads.connection()
    try:
        assert current_user(conn) == database.WRITER
    finally:
        conn.close()
    conn = database.connect()
    try:
        assert current_user(conn) not in (database.READER, database.WRITER)
    finally:
        conn.close()


def test_the_api_role_sessions_are_read_only_even_where_a_grant_slips(database_url):
    with connected_as(database_url, database.READER) as conn, conn.cursor() as cur:
        cur.execute("SHOW default_transaction_read_only")
        assert cur.fetchone()[0] == "on"


@pytest.mark.parametrize("role", [database.READER, database.WRITER])
def test_the_roles_own_nothing(db, role):
    with db, db.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner"
            " WHERE r.rolname = %s",
            (role,),
        )
        assert cur.fetchone()[0] == 0
        cur.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = %s",
            (role,),
        )
        assert cur.fetchone() == (False, False, False)
