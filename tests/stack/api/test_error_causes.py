"""A failure is answered for what it is: the database out of reach is a 503 that says so; a bug
(anything else) is logged with its traceback and answered as the one internal error, a 500
that names nothing of it. An S3 object that cannot be read is bad input; a bug is not."""

from __future__ import annotations

import json

import pytest

from chalicelib import db as chalice_db
from chalicelib import sources
from chalicelib.api.errors import ApiError
from chalicelib.api.routes import answers
from chalicelib.api.store import PublishedStore


class NotAConnection:
    """What a broken ``connect`` might return: an object without a connection's methods."""


def test_a_bug_in_a_query_is_raised_as_itself_not_as_an_unreachable_database(published):
    store = PublishedStore(chalice_db.connect, ttl_seconds=30)
    with pytest.raises(ZeroDivisionError):
        store.read(lambda conn: 1 / 0)
    assert store.read(lambda conn: 42) == 42  # the connection was not thrown away for it


def test_a_query_that_the_database_refuses_is_still_a_503(published):
    store = PublishedStore(chalice_db.connect, ttl_seconds=30)

    def bad_sql(conn):
        with conn, conn.cursor() as cur:
            cur.execute("SELECT no_such_column FROM runs")

    with pytest.raises(ApiError) as refused:
        store.read(bad_sql)
    assert (refused.value.status, refused.value.code) == (503, "unavailable")


def test_a_bug_behind_a_route_is_a_logged_500_in_the_one_error_shape(published, caplog):
    store = PublishedStore(chalice_db.connect, ttl_seconds=30)

    def buggy_view():
        return store.read(lambda conn: conn.no_such_method())

    response = answers(buggy_view)()
    body = json.loads(response.body)
    assert response.status_code == 500
    assert body == {
        "error": {
            "code": "internal_error",
            "message": "the server failed to answer; the error is logged",
            "field": None,
        }
    }
    assert "AttributeError" in caplog.text and "Traceback" in caplog.text
    assert "database cannot be reached" not in caplog.text


def test_a_bug_in_loading_the_published_result_is_not_reported_as_the_database_down():
    store = PublishedStore(NotAConnection, ttl_seconds=30)
    with pytest.raises(AttributeError):
        store.published()
    assert store.reachable is None  # nothing was learnt about the database


def test_an_unreadable_s3_object_is_bad_input_but_a_bug_is_not(s3, buckets):
    with pytest.raises(sources.InputError, match="cannot read"):
        sources.describe(f"s3://{buckets.raw}/incoming/no-such-object.parquet", s3)
    with pytest.raises(AttributeError):
        sources.describe(f"s3://{buckets.raw}/incoming/x.parquet", object())


def test_no_login_for_the_database_is_a_503_like_any_connection_failure(monkeypatch, caplog):
    """In the cloud the API logs in with an IAM token signed with the function's credentials:
    when they cannot be had, the database cannot be reached (503), which is no bug (500)."""
    import boto3

    monkeypatch.delenv("DATABASE_URL", raising=False)
    for name, value in {
        "DB_HOST": "127.0.0.1",
        "DB_PORT": "5432",
        "DB_NAME": "postgres",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance here to ask
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_CONFIG_FILE": "/nonexistent",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it keeps the credentials it found
    chalice_db._rds.cache_clear()
    try:
        store = PublishedStore(lambda: chalice_db.connect(role=chalice_db.READER), 30)
        with pytest.raises(ApiError) as refused:
            store.read(lambda conn: 42)
    finally:
        chalice_db._rds.cache_clear()
    assert (refused.value.status, refused.value.code) == (503, "unavailable")
    assert "LoginError" in caplog.text and "Unable to locate credentials" in caplog.text
