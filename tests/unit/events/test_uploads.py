"""How S3's notifications are read and which kind of object each key is (no service)."""

from __future__ import annotations

import json

import pytest

from chalicelib import sources
from chalicelib.uploads import uploads_in
from tests.helpers import (
    notification,
)


def test_notifications_are_read_like_s3_sends_them():
    assert uploads_in(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})) == []
    [upload] = uploads_in(notification("incoming/my+file%C3%A9.parquet.gzip"))
    assert (upload.key, upload.etag, upload.uri) == (
        "incoming/my fileé.parquet.gzip",
        "abc",
        "s3://voucher-raw/incoming/my fileé.parquet.gzip",
    )
    assert upload.event_time.isoformat() == "2026-11-24T08:00:00.123000+00:00"
    assert uploads_in(notification("incoming/plain.parquet"))[0].key == "incoming/plain.parquet"
    assert uploads_in(notification("incoming/notes.csv"))[0].key == "incoming/notes.csv"  # judged
    assert uploads_in(notification("incoming/x.parquet", "ObjectRemoved:Delete")) == []


@pytest.mark.parametrize(
    ("key", "size", "kind"),
    [
        ("incoming/history.parquet", 10, "file"),
        ("incoming/HISTORY.PARQUET", 10, "file"),
        ("incoming/notes.csv", 10, "file"),  # a file all the same: its bytes decide
        ("incoming/t/part-00000-1a2b.c000.snappy.parquet", 10, "part"),
        ("incoming/t/country=peru/part-00000.parquet", 10, "part"),
        ("incoming/t/9f2e4b0d1c", 10, "part"),  # no suffix inside a dataset folder
        ("incoming/t/_SUCCESS", 0, "marker"),
        ("incoming/t/_temporary/0/part-00000.parquet", 10, "metadata"),
        ("incoming/t/.part-00000.parquet.crc", 10, "metadata"),
        ("incoming/_SUCCESS", 0, "metadata"),
        ("incoming/t/", 0, "placeholder"),
        ("incoming/t_$folder$", 0, "placeholder"),
        ("incoming/empty.parquet", 0, "file"),  # an empty file is a (failed) run, not a folder
    ],
)
def test_every_kind_of_object_under_incoming_is_told_apart(key, size, kind):
    assert sources.kind_of(key, size) == kind
