"""Secrets never leak: with a password in ``DATABASE_URL`` (the local PostgreSQL trusts, so the
password is accepted and ignored) or in a Secrets Manager secret, runs of the job and API calls,
healthy and failing, are captured whole (log records, the process's output, a ``chalice local``
server's output, every answer, every run record, every exception) and searched for it.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest

from chalicelib import migrate
from chalicelib.api.store import default_store
from infra.local import postgres, processes
from infra.local import s3 as local_s3
from infra.local.serve import serving
from scripts.sample_runs import SAMPLE
from tests.conftest import TEST_STAGE
from tests.helpers import call, fetch, get, post, run_job, sample_bytes, upload

SECRET = f"Zq{uuid.uuid4().hex[:12]}"  # what must never be seen
PASSWORD = f"{SECRET}%40:x"  # as a URL carries it: '@' percent-encoded, a ':' inside


def with_password(url: str, port: int | None = None) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}:{PASSWORD}@{parts.hostname}:{port or parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def closed_port() -> int:
    return processes.free_port()  # nothing listens there


def everything_said(*texts: str) -> str:
    return "\n".join(texts)


@pytest.fixture
def seen(caplog, capsys):
    """Everything said so far, joined: log records (all levels) and this process's output."""
    caplog.set_level(logging.DEBUG, logger="voucher_selection")
    caplog.set_level(logging.DEBUG, logger="chalicelib")
    caplog.set_level(logging.INFO)

    def text() -> str:
        out, err = capsys.readouterr()
        return "\n".join([caplog.text, out, err])

    return text


def failure(call_it) -> str:
    """The exception ``call_it`` raises, with its traceback, as a process would print it."""
    with pytest.raises(Exception) as caught:  # any failure: its text is the point
        call_it()
    return "".join(traceback.format_exception(caught.value))


def test_no_password_from_database_url_in_job_logs_errors_or_run_records(
    stack, db, s3, database_url, client, monkeypatch, seen, tmp_path
):
    monkeypatch.setenv("DATABASE_URL", with_password(database_url))
    good = upload(s3, stack, "incoming/secret-good.parquet", sample_bytes(tmp_path, rows=500))
    bad = upload(s3, stack, "incoming/secret-bad.parquet", b"PAR1 not parquet PAR1")
    run_job(stack, good, run_id="run-secret-good")
    said = [failure(lambda: run_job(stack, bad, run_id="run-secret-bad"))]
    answers = [
        post(client, SAMPLE),
        post(client, {**SAMPLE, "total_orders": -1}),
        get(client, "/runs"),
        get(client, "/runs/run-secret-bad"),
        get(client, "/health"),
    ]

    unreachable = with_password(database_url, port=closed_port())
    monkeypatch.setenv("DATABASE_URL", unreachable)  # the database is gone: errors everywhere
    default_store.cache_clear()
    said.append(failure(lambda: run_job(stack, good, run_id="run-secret-unreachable")))
    answers += [post(client, SAMPLE), get(client, "/runs"), get(client, "/health")]

    records = [row[0] for row in fetch(db, "SELECT row_to_json(r)::text FROM runs r")]
    everything = everything_said(seen(), *said, *map(json.dumps, answers), *records)
    assert "run-secret-good published" in everything and "not a readable parquet" in everything
    assert "OperationalError" in everything  # the failures were really seen
    assert answers[-1][0] == 503
    assert SECRET not in everything


def test_no_password_in_a_served_apis_output_while_its_database_fails(
    throwaway_server, tmp_path, monkeypatch
):
    env = {
        **os.environ,
        "CACHE_TTL_SECONDS": "0",
        "DATABASE_URL": with_password(throwaway_server.url),
    }
    log = tmp_path / "server.log"
    with serving(env, log, TEST_STAGE) as url:
        answers = [call(url, "/voucher", SAMPLE), call(url, "/health")]
        postgres.stop(throwaway_server.data_dir)
        answers += [
            call(url, "/voucher", SAMPLE),
            call(url, "/health"),
            call(url, "/runs"),
            call(url, "/runs/x"),
        ]
    output = log.read_text()
    assert "not refreshed" in output and "OperationalError" in output  # failures were logged
    assert answers[3]["status"] == "degraded"
    assert SECRET not in everything_said(output, *map(json.dumps, answers))


def test_no_secret_value_from_secrets_manager_in_job_logs_or_api_answers(
    stack, s3, tls_server, local_stack, client, monkeypatch, seen, tmp_path
):
    """As in the cloud: the owner's password from the master secret (the migrations), the
    roles' IAM authentication tokens (the job, the API), over TLS verified against the
    server's authority; neither the password nor a token is ever said."""
    secrets = local_s3.client(local_stack.endpoint_url, "secretsmanager")
    arn = secrets.create_secret(
        Name=f"voucher-db-{uuid.uuid4().hex[:8]}",
        SecretString=json.dumps({"username": "postgres", "password": SECRET}),
    )["ARN"]
    monkeypatch.delenv("DATABASE_URL")
    for name, value in [
        ("DB_SECRET_ARN", arn),
        ("DB_HOST", "127.0.0.1"),
        ("DB_PORT", str(tls_server.server.port)),
        ("DB_NAME", "postgres"),
        ("DB_CA_BUNDLE", str(tls_server.ca_file)),
    ]:
        monkeypatch.setenv(name, value)  # what a deployed function (or --db_* of the job) sets

    assert migrate.apply() == []  # the owner's session, with the secret's password
    good = upload(s3, stack, "incoming/secret-arn.parquet", sample_bytes(tmp_path, rows=500))
    run_job(stack, good, run_id="run-secret-arn")
    answers = [post(client, SAMPLE), get(client, "/runs/run-secret-arn")]
    monkeypatch.setenv("DB_PORT", str(closed_port()))
    default_store.cache_clear()
    said = [
        failure(lambda: run_job(stack, good, run_id="run-secret-arn-down")),
        failure(migrate.apply),
    ]
    answers += [get(client, "/runs"), get(client, "/health")]

    conn = psycopg2.connect(tls_server.server.url, sslmode="require")
    try:
        records = [row[0] for row in fetch(conn, "SELECT row_to_json(r)::text FROM runs r")]
    finally:
        conn.close()
    everything = everything_said(seen(), *said, *map(json.dumps, answers), *records)
    assert answers[1][1]["status"] == "succeeded" and answers[2][0] == 503
    assert SECRET not in everything
    assert "X-Amz-Signature" not in everything  # nor an IAM authentication token
