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
