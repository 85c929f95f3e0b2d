"""Uploads become runs: S3 notification -> SQS -> pump -> the Chalice handler -> launcher -> job.

Everything is real: the moto server delivers the notifications over HTTP, the pump invokes the very
handler Lambda would, the local launcher starts the Glue script as its own process.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace

import pytest

from chalicelib.uploads import uploads_in
from infra.local import events
from infra.local import s3 as local_s3
from scripts.generate_data import write


@pytest.fixture
def uploads(local_stack, buckets, database_url, db, tmp_path, monkeypatch):
    """A queue of this test's own, notified by the session's raw bucket, and a pump on it."""
    settings = replace(
        local_stack.settings,
        raw_bucket=buckets.raw,
        lake_bucket=buckets.lake,
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


def sample(tmp_path, seed: int, rows: int = 3_000) -> bytes:
    path = tmp_path / f"sample_{seed}.parquet.gzip"
    write(path, rows=rows, seed=seed)
    return path.read_bytes()


def upload(s3, buckets, key: str, body: bytes) -> str:
    return s3.put_object(Bucket=buckets.raw, Key=key, Body=body)["ETag"].strip('"')


def pump_until(pump, count: int, timeout_s: float = 30) -> int:
    """Poll until ``count`` messages were handled; return how many were."""
    handled, deadline = 0, time.monotonic() + timeout_s
    while handled < count and time.monotonic() < deadline:
        handled += pump.poll_once()
    return handled


def runs_of(db, key: str) -> list[tuple]:
    with db.cursor() as cur:
        cur.execute(
            "SELECT run_id, status, error FROM runs WHERE source_key = %s ORDER BY created_at",
            (key,),
        )
        return cur.fetchall()


def wait_finished(db, key: str, timeout_s: float = 240) -> list[tuple]:
    """The runs of ``key`` once none is queued or running any more."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        db.rollback()  # a fresh snapshot each time
        found = runs_of(db, key)
        if found and all(status in ("succeeded", "failed") for _, status, _ in found):
            return found
        time.sleep(1)
    raise AssertionError(f"runs of {key} still unfinished: {runs_of(db, key)}")


def published(db) -> dict[str, str]:
    db.rollback()
    with db.cursor() as cur:
        cur.execute("SELECT country_key, run_id FROM published_country")
        return dict(cur.fetchall())


def notification(key: str, event: str = "ObjectCreated:Put") -> str:
    return json.dumps(
        {
            "Records": [
                {
                    "eventName": event,
                    "eventTime": "2026-11-24T08:00:00.123Z",
                    "s3": {
                        "bucket": {"name": "voucher-raw"},
                        "object": {"key": key, "size": 10, "eTag": "abc"},
                    },
                }
            ]
        }
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
    assert uploads_in(notification("incoming/notes.csv")) == []
    assert uploads_in(notification("incoming/x.parquet", "ObjectRemoved:Delete")) == []


def test_an_upload_is_published_through_queue_pump_handler_and_launcher(
    uploads, s3, buckets, db, tmp_path
):
    upload(s3, buckets, "incoming/history.parquet.gzip", sample(tmp_path, seed=1))
    assert pump_until(uploads, 1) == 1
    [(run_id, status, error)] = wait_finished(db, "incoming/history.parquet.gzip")
    assert (status, error) == ("succeeded", None)
    assert published(db) == {"peru": run_id}


def test_the_same_object_twice_and_a_repeated_event_start_one_run(
    uploads, s3, buckets, db, tmp_path
):
    body = sample(tmp_path, seed=2)
    etag = upload(s3, buckets, "incoming/twice.parquet", body)
    assert upload(s3, buckets, "incoming/twice.parquet", body) == etag  # same object, same ETag
    messages = uploads.sqs.receive_message(
        QueueUrl=uploads.url, MaxNumberOfMessages=10, WaitTimeSeconds=2
    )["Messages"]
    for message in messages:  # S3 delivers at least once: every notification arrives twice
        for _ in range(2):
            uploads.sqs.send_message(QueueUrl=uploads.url, MessageBody=message["Body"])
        uploads.sqs.delete_message(QueueUrl=uploads.url, ReceiptHandle=message["ReceiptHandle"])
    assert pump_until(uploads, 2 * len(messages)) == 2 * len(messages) >= 4
    runs = wait_finished(db, "incoming/twice.parquet")
    assert [status for _, status, _ in runs] == ["succeeded"]


def test_a_corrupt_upload_fails_its_run_and_the_previous_result_keeps_serving(
    uploads, s3, buckets, db, tmp_path
):
    upload(s3, buckets, "incoming/good.parquet", sample(tmp_path, seed=3))
    pump_until(uploads, 1)
    [(good, _, _)] = wait_finished(db, "incoming/good.parquet")

    upload(s3, buckets, "incoming/corrupt.parquet", b"PAR1 not really a parquet file PAR1")
    pump_until(uploads, 1)
    [(_, status, error)] = wait_finished(db, "incoming/corrupt.parquet")
    assert status == "failed"
    assert "not a readable parquet" in error and "incoming/corrupt.parquet" in error
    assert published(db) == {"peru": good}


def test_two_uploads_close_together_make_two_runs_and_the_newer_object_is_published(
    uploads, s3, buckets, db, tmp_path
):
    upload(s3, buckets, "incoming/older.parquet", sample(tmp_path, seed=4))
    time.sleep(1.1)  # S3 times objects to the second
    upload(s3, buckets, "incoming/newer.parquet", sample(tmp_path, seed=5))
    assert pump_until(uploads, 2) == 2
    [(_, older_status, _)] = wait_finished(db, "incoming/older.parquet")
    [(newer, newer_status, _)] = wait_finished(db, "incoming/newer.parquet")
    assert (older_status, newer_status) == ("succeeded", "succeeded")
    assert published(db) == {"peru": newer}


def test_a_failing_handler_leaves_the_message_to_be_retried_then_dead_lettered(
    uploads, s3, buckets, db, tmp_path, monkeypatch
):
    monkeypatch.setenv("JOB_LAUNCHER", "glue")
    monkeypatch.setenv("GLUE_JOB_NAME", "no-such-job")  # the endpoint's Glue refuses to start it
    upload(s3, buckets, "incoming/unlucky.parquet", sample(tmp_path, seed=6, rows=500))
    deadline = time.monotonic() + 30
    dlq = uploads.sqs.get_queue_url(QueueName=f"{uploads.url.rsplit('/', 1)[1]}-dlq")["QueueUrl"]
    dead = []
    while not dead and time.monotonic() < deadline:
        assert uploads.poll_once() == 0  # the handler fails every time
        dead = uploads.sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=0).get("Messages", [])
    assert len(dead) == 1 and "unlucky.parquet" in dead[0]["Body"]  # the key arrives URL-encoded
    attempts = runs_of(db, "incoming/unlucky.parquet")
    assert len(attempts) == 2  # max_receive_count
    assert all(s == "failed" and "could not start the job" in e for _, s, e in attempts)


def test_the_cloud_launcher_starts_the_glue_job_with_the_run_arguments(
    uploads, s3, buckets, db, tmp_path, monkeypatch
):
    glue = local_s3.client(uploads.sqs.meta.endpoint_url, "glue")
    glue.create_job(
        Name="voucher-selection",
        Role="arn:aws:iam::123456789012:role/glue",
        Command={"Name": "glueetl", "ScriptLocation": "s3://artifacts/job.py"},
    )
    monkeypatch.setenv("JOB_LAUNCHER", "glue")
    monkeypatch.setenv("GLUE_JOB_NAME", "voucher-selection")
    monkeypatch.setenv("COUNTRIES", "Peru,Latvia")
    upload(s3, buckets, "incoming/cloud.parquet", sample(tmp_path, seed=7, rows=500))
    assert pump_until(uploads, 1) == 1

    [(run_id, status, _)] = runs_of(db, "incoming/cloud.parquet")
    assert status == "queued"  # the job, not the handler, moves it on
    [job_run] = glue.get_job_runs(JobName="voucher-selection")["JobRuns"]
    assert job_run["Arguments"] == {
        "--source": f"s3://{buckets.raw}/incoming/cloud.parquet",
        "--run_id": run_id,
        "--countries": "Peru,Latvia",
    }
