"""The local stack on the real services: provisioning, ownership, overrides, throwaway servers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path

import psycopg2
import pytest

from chalicelib.migrate import MIGRATIONS_DIR, migrate
from infra.local import aws, events, postgres, processes, settings, stack
from infra.local import s3 as local_s3
from infra.local.errors import StackError


def _quiet(_line: str) -> None:
    pass


def _all_migrations() -> list[str]:
    return sorted(p.stem for p in MIGRATIONS_DIR.glob("*.sql"))


def _state(s3, conf: settings.Settings) -> dict:
    """What provisioning leaves: the buckets' keys, the tables and the applied migrations."""
    with psycopg2.connect(conf.database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"
        )
        tables = [row[0] for row in cur.fetchall()]
        cur.execute("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        migrations = cur.fetchall()
    conn.close()
    keys = {
        bucket: sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
        for bucket in (conf.raw_bucket, conf.lake_bucket)
    }
    return {"tables": tables, "migrations": migrations, "keys": keys}


@pytest.fixture
def scratch_database(local_stack):
    """URL of a database name that does not exist yet; dropped afterwards."""
    name = f"voucher_scratch_{uuid.uuid4().hex[:12]}"
    yield postgres.with_database(local_stack.admin_database_url, name)
    postgres.drop_database(local_stack.admin_database_url, name)


def test_provisioning_twice_gives_the_same_state(local_stack, s3, scratch_database):
    suffix = uuid.uuid4().hex[:12]
    conf = replace(
        local_stack.settings,
        raw_bucket=f"idem-raw-{suffix}",
        lake_bucket=f"idem-lake-{suffix}",
        database_url_override=scratch_database,
    )
    lines: list[str] = []
    try:
        stack.provision(conf, lines.append)
        first = _state(s3, conf)
        stack.provision(conf, lines.append)
        second = _state(s3, conf)
    finally:
        for bucket in (conf.raw_bucket, conf.lake_bucket):
            local_s3.delete_bucket(s3, bucket)

    assert second == first
    assert [m[0] for m in first["migrations"]] == _all_migrations()
    assert {"runs", "published_country", "schema_migrations"} <= set(first["tables"])
    assert lines[-1] == "schema     up to date"


def test_session_buckets_exist_through_the_real_endpoint(local_stack, buckets, s3):
    s3.put_object(Bucket=buckets.raw, Key="incoming/probe.txt", Body=b"hello")
    assert s3.get_object(Bucket=buckets.raw, Key="incoming/probe.txt")["Body"].read() == b"hello"
    with urllib.request.urlopen(local_stack.endpoint_url + "/", timeout=5) as response:
        listing = response.read().decode()
    assert f"<Name>{buckets.raw}</Name>" in listing
    assert f"<Name>{buckets.lake}</Name>" in listing
    s3.delete_object(Bucket=buckets.raw, Key="incoming/probe.txt")


def test_migrations_apply_once(db):
    with db.cursor() as cur:
        cur.execute("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        before = cur.fetchall()
    assert [row[0] for row in before] == _all_migrations()
    assert "0001_initial" in _all_migrations()
    assert migrate(db) == []
    with db.cursor() as cur:
        cur.execute("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        assert cur.fetchall() == before


def test_db_fixture_starts_from_empty_tables(db):
    with db, db.cursor() as cur:
        cur.execute(
            "INSERT INTO runs (run_id, source_key, status) VALUES (%s, %s, %s)",
            ("leftover", "incoming/x.parquet", "queued"),
        )
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs WHERE run_id = %s", ("leftover",))
        assert cur.fetchone()[0] == 1


@pytest.mark.parametrize("attempt", [1, 2])
def test_db_fixture_truncates_between_tests(db, attempt):
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs")
        assert cur.fetchone()[0] == 0
    with db, db.cursor() as cur:
        cur.execute(
            "INSERT INTO runs (run_id, source_key, status) VALUES (%s, %s, %s)",
            (f"run-{attempt}", "incoming/x.parquet", "queued"),
        )


def test_database_url_override_is_honoured(local_stack, scratch_database, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", scratch_database)
    conf = settings.from_env()
    assert conf.database_url == scratch_database
    assert conf.env()["DATABASE_URL"] == scratch_database

    running = stack.up(conf, _quiet)

    assert running.services["postgres"] == "external"
    with psycopg2.connect(scratch_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert [row[0] for row in cur.fetchall()] == _all_migrations()
    conn.close()
    printed = subprocess.run(
        [sys.executable, "-m", "infra.local.stack", "env"],
        capture_output=True,
        text=True,
        check=True,
        cwd=settings.REPO_ROOT,
    ).stdout
    assert f"export DATABASE_URL={scratch_database}" in printed.splitlines()


SESSION_PROBE = """
from pathlib import Path
from glue_jobs import session
spark = session.local()
jvm = spark.sparkContext._gateway.proc.pid  # spark-submit execs the JVM: the same process
print(spark.sparkContext.getConf().get("spark.driver.extraJavaOptions", ""))
print(Path(f"/proc/{jvm}/maps").read_text())
"""


def test_up_archives_spark_classes_and_local_sessions_map_them(local_stack):
    archive = local_stack.settings.spark_class_archive
    assert archive.is_file() and archive.stat().st_size > 10 * 2**20

    def session_with(value: str) -> tuple[str, str]:
        env = {**os.environ, "SPARK_CLASS_ARCHIVE": value}
        out = subprocess.run(
            [sys.executable, "-c", SESSION_PROBE],
            env=env,
            cwd=settings.REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        options, _, maps = out.partition("\n")
        return options, maps

    options, maps = session_with(str(archive))
    assert f"-XX:SharedArchiveFile={archive}" in options
    assert str(archive) in maps  # the JVM really mapped the archive
    options, maps = session_with(str(archive.with_name("missing.jsa")))
    assert "SharedArchiveFile" not in options and str(archive) not in maps


@pytest.fixture
def private_stack():
    """Settings for a stack of its own: a state folder in a private (0700) temporary folder, as a
    fresh clone may be, and free ports."""
    base = Path(tempfile.mkdtemp(prefix="voucher-stack-"))
    conf = settings.Settings(
        state_dir=base / ".state", aws_port=processes.free_port(), pg_port=processes.free_port()
    )
    yield conf
    stack.clean(conf, _quiet)
    base.rmdir()


def test_up_down_up_clean_lifecycle(private_stack, s3):
    conf = private_stack
    first = stack.up(conf, _quiet)
    assert first.services == {"aws": "started", "postgres": "started"}
    assert aws.owned_pid(conf.state_dir, conf.aws_port) is not None
    assert aws.owned_pid(conf.state_dir, processes.free_port()) is None  # serves another port
    data = conf.pg_data_dir.resolve()
    # As root, the postgres user cannot enter the private folder: the data lives elsewhere.
    assert conf.pg_data_dir.is_symlink() == (os.geteuid() == 0)

    again = stack.up(conf, _quiet)
    assert again.services == {"aws": "already running", "postgres": "already running"}
    pump = events.start(conf)  # as make run leaves it, polling the upload queue
    assert events.start(conf) == pump and processes.alive(pump)  # reused, not started twice

    assert stack.down(conf, _quiet) == {
        "pump": "stopped",
        "aws": "stopped",
        "postgres": "stopped",
    }
    assert not processes.alive(pump)
    assert aws.probe(conf.endpoint_url) is None
    assert not postgres.answers(conf.database_url)
    assert (conf.pg_data_dir / "PG_VERSION").exists()  # data stays

    lines: list[str] = []
    third = stack.up(conf, lines.append)
    assert third.services == {"aws": "started", "postgres": "started"}
    assert "schema     up to date" in lines  # the database survived the restart

    stack.clean(conf, _quiet)
    assert not conf.state_dir.exists()
    assert not data.exists()
    assert aws.probe(conf.endpoint_url) is None


def test_services_already_answering_are_reused_and_never_stopped(private_stack):
    owner = private_stack
    stack.up(owner, _quiet)
    guest = replace(owner, state_dir=owner.state_dir.with_name("guest"))
    try:
        assert stack.up(guest, _quiet).services == {"aws": "reused", "postgres": "reused"}
        assert stack.down(guest, _quiet) == {
            "pump": "not running",
            "aws": "not ours",
            "postgres": "not ours",
        }
        assert aws.probe(owner.endpoint_url) is True
        assert postgres.answers(owner.database_url)
    finally:
        stack.clean(guest, _quiet)


def test_a_port_taken_by_something_else_is_a_clear_error(tmp_path):
    with socket.socket() as squatter:
        squatter.bind((settings.HOST, 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(StackError, match=f"port {port}.*in use"):
            postgres.start(tmp_path / "data", port)


def test_a_throwaway_server_can_be_stopped_and_restarted():
    with postgres.temporary() as server:
        with psycopg2.connect(server.url) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE kept (n int)")
        conn.close()

        assert postgres.stop(server.data_dir) is True
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(server.url, connect_timeout=2)

        assert postgres.start(server.data_dir, server.port) == server.url
        with psycopg2.connect(server.url) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM kept")
            assert cur.fetchone()[0] == 0
        conn.close()
    assert not server.data_dir.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="data is relocated only when running as root")
def test_relocated_data_is_initialised_again_when_its_folder_vanished():
    base = Path(tempfile.mkdtemp(prefix="voucher-private-"))  # 0700: postgres cannot enter
    data_dir, port = base / "pg", processes.free_port()
    try:
        postgres.start(data_dir, port)
        relocated = data_dir.resolve()
        assert data_dir.is_symlink() and not relocated.is_relative_to(base)
        postgres.stop(data_dir)
        shutil.rmtree(relocated)  # e.g. /var/tmp emptied by a reboot

        postgres.start(data_dir, port)
        assert postgres.answers(postgres.server_url(port))
    finally:
        postgres.stop(data_dir)
        postgres.remove(data_dir)
        base.rmdir()
    assert not relocated.exists()
