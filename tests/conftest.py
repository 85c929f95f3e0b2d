"""Shared fixtures: the real local stack (moto server over HTTP, PostgreSQL), a fresh database
per session, and unique buckets per session. Nothing is mocked and the moto server is never reset
(other test sessions may share it).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from chalicelib.migrate import migrate
from infra.local import postgres, stack
from infra.local import s3 as local_s3
from infra.local.settings import from_env

#: Debian's Chromium, driven by Playwright's client (never ``playwright install``).
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def spark():
    """One real Spark local-mode session for the whole test run, configured like the job's."""
    from glue_jobs.pipeline import configure
    from glue_jobs.voucher_selection_job import local_session

    with pytest.MonkeyPatch.context() as patch:  # started like the job's (``make up`` archives)
        patch.setenv("SPARK_CLASS_ARCHIVE", str(from_env().spark_class_archive))
        session = local_session()
    session.sparkContext.setLogLevel("ERROR")
    configure(session)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium; the test is skipped, with the reason, when it is not installed."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (as .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def local_stack():
    """The local stack, up (started or reused); boto3 in this process points at its endpoint.

    Yields a ``stack.Running`` with ``endpoint_url`` and ``admin_database_url``.
    """
    running = stack.up()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in running.settings.aws_env().items():
            patch.setenv(name, value)
        patch.setenv("SPARK_CLASS_ARCHIVE", str(running.settings.spark_class_archive))
        yield running


@pytest.fixture(scope="session")
def database_url(local_stack):
    """A fresh, migrated database ``voucher_test_<hex>`` as ``DATABASE_URL``; dropped at the end."""
    name = _unique("voucher_test")
    postgres.create_database(local_stack.admin_database_url, name)
    url = postgres.with_database(local_stack.admin_database_url, name)
    conn = psycopg2.connect(url)
    try:
        migrate(conn)
    finally:
        conn.close()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_URL", url)
        yield url
    postgres.drop_database(local_stack.admin_database_url, name)


@pytest.fixture
def db(database_url):
    """A connection to the test database, every table but schema_migrations emptied first."""
    conn = psycopg2.connect(database_url)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT tablename FROM pg_tables"
            " WHERE schemaname = current_schema() AND tablename <> 'schema_migrations'"
        )
        tables = [sql.Identifier(row[0]) for row in cur.fetchall()]
        if tables:
            cur.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(sql.SQL(", ").join(tables))
            )
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def s3(local_stack):
    """A boto3 S3 client against the local endpoint."""
    return local_s3.client(local_stack.endpoint_url)


@dataclass(frozen=True)
class Buckets:
    raw: str
    lake: str


@pytest.fixture(scope="session")
def buckets(local_stack, s3):
    """Unique raw and lake buckets for this session, as ``RAW_BUCKET``/``LAKE_BUCKET``."""
    suffix = uuid.uuid4().hex[:12]
    names = Buckets(
        raw=f"{local_stack.settings.raw_bucket}-{suffix}",
        lake=f"{local_stack.settings.lake_bucket}-{suffix}",
    )
    for name in (names.raw, names.lake):
        local_s3.ensure_bucket(s3, name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAW_BUCKET", names.raw)
        patch.setenv("LAKE_BUCKET", names.lake)
        yield names
    for name in (names.raw, names.lake):
        local_s3.delete_bucket(s3, name)
