"""The fixtures every test module shares: the real local stack (moto server over HTTP,
PostgreSQL), a fresh database per session, unique buckets per session, a Spark session, the upload
queue with its pump, the API in-process and under ``chalice local``, throwaway servers a test may
stop, and headless Chromium. Nothing is mocked and the moto server is never reset (other test
sessions may share it). Plain helpers are in ``tests/helpers.py``.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg2
import pytest
from chalice.test import Client

from chalicelib.api.store import default_store
from chalicelib.migrate import migrate
from glue_jobs import lake_io
from infra.local import aws, events, postgres
from infra.local import catalog as local_catalog
from infra.local import s3 as local_s3
from infra.local import stack as local_services
from infra.local.processes import free_port
from infra.local.serve import LOCAL_API_KEY, serving
from infra.local.settings import REPO_ROOT, from_env
from scripts import sample_runs
from tests.helpers import empty_tables

#: A stage absent from .chalice/config.json: the tests' environment reaches the handlers as it is.
TEST_STAGE = "test"

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


pytest_plugins = ["tests.fixtures.infra", "tests.fixtures.explore"]

#: The tiers, lightest first, each a folder of ``tests/``: a test lives in the tier of what it
#: starts (``make unit`` runs ``tests/unit`` in seconds).
TIERS = ("unit", "stack", "spark", "browser")
#: The fixtures that start something, with the tier each one needs (directly or through another).
_TIER_OF_FIXTURE = {
    "local_stack": "stack",
    "throwaway_server": "stack",
    "tls_server": "stack",
    "throwaway_endpoint": "stack",
    "private_stack": "stack",
    "spark": "spark",
    "report": "spark",
    "browser": "browser",
}


def pytest_collection_modifyitems(items):
    """Refuse a test kept in a lighter tier than one of its fixtures needs."""
    for item in items:
        tier = _tier(item)
        if tier not in TIERS:
            raise pytest.UsageError(
                f"{item.nodeid}: tests live in one of tests/{{{','.join(TIERS)}}}"
            )
        for fixture in getattr(item, "fixturenames", ()):
            needs = _TIER_OF_FIXTURE.get(fixture, "unit")
            if TIERS.index(needs) > TIERS.index(tier):
                raise pytest.UsageError(
                    f"{item.nodeid} uses the fixture {fixture!r}: it belongs in tests/{needs}/"
                )


def _tier(item) -> str:
    return Path(item.path).relative_to(Path(__file__).parent).parts[0]


@pytest.fixture(autouse=True)
def _unit_tests_connect_nowhere(request, monkeypatch):
    """A unit test that opens a connection (to a database, an endpoint) fails saying so."""
    if _tier(request.node) != "unit":
        return

    def refuse(sock, address):
        raise AssertionError(f"a unit test connected to {address}: it belongs in tests/stack/")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture(scope="session")
def spark():
    """One real Spark local-mode session for the whole test run, configured like the job's."""
    from glue_jobs import session as job_session

    with pytest.MonkeyPatch.context() as patch:  # started like the job's (``make up`` archives)
        patch.setenv("SPARK_CLASS_ARCHIVE", str(from_env().spark_class_archive))
        session = job_session.local()
    session.sparkContext.setLogLevel("ERROR")
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
    running = local_services.up()
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
    empty_tables(conn)
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
    catalog: str  # the Glue Data Catalog database of the lake's tables


@pytest.fixture(scope="session")
def buckets(local_stack, s3):
    """Unique raw and lake buckets for this session, and the lake's tables in a catalog database
    of its own, as ``RAW_BUCKET``/``LAKE_BUCKET``/``CATALOG_DATABASE``."""
    suffix = uuid.uuid4().hex[:12]
    names = Buckets(
        raw=f"{local_stack.settings.raw_bucket}-{suffix}",
        lake=f"{local_stack.settings.lake_bucket}-{suffix}",
        catalog=f"voucher_test_{suffix}",
    )
    for name in (names.raw, names.lake):
        local_s3.ensure_bucket(s3, name)
    tables = replace(local_stack.settings, lake_bucket=names.lake, catalog_database=names.catalog)
    local_catalog.ensure(tables)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAW_BUCKET", names.raw)
        patch.setenv("LAKE_BUCKET", names.lake)
        patch.setenv("CATALOG_DATABASE", names.catalog)
        yield names
    local_catalog.drop(tables)
    for name in (names.raw, names.lake):
        local_s3.delete_bucket(s3, name)


@pytest.fixture
def stack(local_stack, database_url, buckets, db, spark):
    """Everything a run of the job needs, with empty tables; the session's buckets."""
    return buckets


@pytest.fixture
def uploads(local_stack, s3, buckets, database_url, db, tmp_path, monkeypatch):
    """A queue of this test's own, notified by the session's raw bucket, and a pump on it that
    invokes the very handler Lambda would (``on_upload``); the local launcher logs to tmp_path.
    The raw bucket starts empty, as the tables do: the reconciler takes in every object no run
    accounts for, so what earlier tests left would become this test's runs."""
    local_s3.empty_bucket(s3, buckets.raw)
    settings = replace(
        local_stack.settings,
        raw_bucket=buckets.raw,
        lake_bucket=buckets.lake,
        catalog_database=buckets.catalog,
        upload_queue=f"uploads-{uuid.uuid4().hex[:8]}",
        visibility_timeout_s=1,
        max_receive_count=2,
    )
    events.ensure_upload_queue(settings)
    for name, value in settings.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("JOB_LOG_DIR", str(tmp_path / "runs"))
    from app import on_upload

    pump = events.Pump(settings, on_upload, batch_size=10, wait_s=1)
    while pump.poll_once():  # S3's s3:TestEvent for the new configuration: handled, starts nothing
        pass
    return pump


#: The quiet period of dataset folders in tests (``DATASET_QUIET_SECONDS``).
QUIET_S = 3


@pytest.fixture
def quiet(monkeypatch):
    """Dataset folders without a marker run once quiet for ``QUIET_S`` seconds."""
    monkeypatch.setenv("DATASET_QUIET_SECONDS", str(QUIET_S))
    return QUIET_S


@pytest.fixture
def glue(uploads, spark, monkeypatch):
    """The handler starts a Glue job of this test's own on the endpoint, which records job runs
    but runs no script; ``glue.job_runs()`` lists the runs' arguments, oldest first."""
    client = local_s3.client(uploads.sqs.meta.endpoint_url, "glue")
    name = f"voucher-selection-{uuid.uuid4().hex[:8]}"
    client.create_job(
        Name=name,
        Role="arn:aws:iam::123456789012:role/glue",
        Command={"Name": "glueetl", "ScriptLocation": "s3://artifacts/job.py"},
    )
    monkeypatch.setenv("JOB_LAUNCHER", "glue")
    monkeypatch.setenv("GLUE_JOB_NAME", name)
    client.job_name = name
    client.job_runs = lambda: [r["Arguments"] for r in client.get_job_runs(JobName=name)["JobRuns"]]
    return client


@pytest.fixture(autouse=True)
def fresh_store(monkeypatch):
    """Each test starts with no API container state; the cache checks on every request."""
    monkeypatch.setenv("CACHE_TTL_SECONDS", "0")
    default_store.cache_clear()
    yield
    default_store.cache_clear()


@pytest.fixture
def client(database_url):
    """The Chalice app in-process (routes and event handlers), on the test database."""
    from app import app

    with Client(app, stage_name=TEST_STAGE, project_dir=str(REPO_ROOT)) as test_client:
        yield test_client


@pytest.fixture
def published(db):
    """The first sample run published (Peru, Latvia, China); yields the database connection."""
    sample_runs.publish(db, sample_runs.FIRST_RUN, sample_runs.FIRST)
    return db


@pytest.fixture
def published_with_usage(db):
    """Latvia and China published by a run from before usage was recorded, then Peru with its
    usage (``sample_runs.with_usage``); yields the database connection."""
    sample_runs.publish(db, "run-before-usage", sample_runs.FIRST)
    sample_runs.publish(db, "run-with-usage", sample_runs.with_usage())
    return db


@pytest.fixture(scope="session")
def local_api(database_url, tmp_path_factory):
    """The API under ``chalice local`` on the test database."""
    log = tmp_path_factory.mktemp("chalice-local") / "server.log"
    with serving({**os.environ, "CACHE_TTL_SECONDS": "0"}, log, TEST_STAGE) as url:
        yield url


@pytest.fixture(scope="session")
def keyed_api(database_url, tmp_path_factory):
    """The API under ``chalice local`` as a stage that requires the API key (prod), on the test
    database: ``(url, key)``; keyed routes answer only with ``x-api-key: key``."""
    key = uuid.uuid4().hex
    env = {**os.environ, "CACHE_TTL_SECONDS": "0", "API_KEY_REQUIRED": "true", LOCAL_API_KEY: key}
    log = tmp_path_factory.mktemp("chalice-local-keyed") / "server.log"
    with serving(env, log, TEST_STAGE) as url:
        yield url, key


@pytest.fixture
def throwaway_server(monkeypatch):
    """A PostgreSQL server of this test's own, published to and named by DATABASE_URL."""
    with postgres.temporary() as server:
        conn = psycopg2.connect(server.url)
        try:
            migrate(conn)
            sample_runs.publish(conn, sample_runs.FIRST_RUN, sample_runs.FIRST)
        finally:
            conn.close()
        monkeypatch.setenv("DATABASE_URL", server.url)
        yield server


@dataclass(frozen=True)
class TlsServer:
    server: postgres.Server
    ca_file: Path  # the authority its certificate chains to
    other_ca_file: Path  # an authority that signed nothing of it


@pytest.fixture
def tls_server():
    """A PostgreSQL server of this test's own that speaks TLS only (``hostssl``), with a
    certificate for 127.0.0.1 from an authority of its own; migrated, the first sample run
    published."""
    from tests.helpers import certificate_authority, pem, server_certificate

    files = Path(tempfile.mkdtemp(prefix="voucher-tls-"))  # the server's OS user reads it
    files.chmod(0o755)
    authority = certificate_authority("voucher test CA")
    certificate, key = server_certificate(authority, ["127.0.0.1"])
    written = {
        "ca.pem": pem(authority[0]),
        "other-ca.pem": pem(certificate_authority("another CA")[0]),
        "server.pem": certificate,
        "server.key": key,
        "pg_hba.conf": b"hostssl all all 127.0.0.1/32 trust\n",
    }
    for name, data in written.items():
        (files / name).write_bytes(data)
        postgres.give_to_server(files / name, 0o600 if name == "server.key" else 0o644)
    settings = {
        "ssl": "on",
        "ssl_cert_file": files / "server.pem",
        "ssl_key_file": files / "server.key",
        "hba_file": files / "pg_hba.conf",
    }
    with postgres.temporary(settings={k: str(v) for k, v in settings.items()}) as server:
        conn = psycopg2.connect(server.url, sslmode="require")
        try:
            migrate(conn)
            sample_runs.publish(conn, sample_runs.FIRST_RUN, sample_runs.FIRST)
        finally:
            conn.close()
        yield TlsServer(server, files / "ca.pem", files / "other-ca.pem")
    shutil.rmtree(files, ignore_errors=True)


@pytest.fixture
def s3_client_cache():
    """The job's S3 client is cached per process: a test pointing it elsewhere starts afresh."""
    lake_io._s3.cache_clear()
    yield
    lake_io._s3.cache_clear()


@pytest.fixture
def throwaway_endpoint(tmp_path, s3_client_cache):
    """A moto server of this test's own on a free port: ``(state_dir, port, url)``; stopped at
    the end whatever the test did to it."""
    state, port = tmp_path / "moto", free_port()
    aws.start(replace(from_env(), state_dir=state, aws_port=port, aws_emulator="moto"))
    try:
        yield state, port, aws.endpoint_url(port)
    finally:
        aws.stop(state)
