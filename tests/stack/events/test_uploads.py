"""Uploads become runs: S3 notification -> SQS -> pump -> the Chalice handler -> launcher -> job.

Everything is real: the moto server delivers the notifications over HTTP, the pump invokes the very
handler Lambda would, the local launcher starts the Glue script as its own process.
"""

from __future__ import annotations

import time

import psycopg2

from infra.local import postgres
from infra.local import s3 as local_s3
from tests.helpers import (
    converge,
    pump_until,
    put,
    runs_of,
    sample_bytes,
    served,
    wait_finished,
)


def test_an_upload_is_published_through_queue_pump_handler_and_launcher(
    uploads, s3, buckets, db, tmp_path
):
    put(s3, buckets, "incoming/history.parquet.gzip", sample_bytes(tmp_path, rows=3_000, seed=1))
    assert pump_until(uploads, 1) == 1
    [(run_id, status, error)] = wait_finished(db, "incoming/history.parquet.gzip")
    assert (status, error) == ("succeeded", None)
    assert served(db) == {"peru": run_id}


def test_the_same_object_twice_and_a_repeated_event_start_one_run(
    uploads, s3, buckets, db, tmp_path
):
    body = sample_bytes(tmp_path, rows=3_000, seed=2)
    etag = put(s3, buckets, "incoming/twice.parquet", body)
    assert put(s3, buckets, "incoming/twice.parquet", body) == etag  # same object, same ETag
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
    put(s3, buckets, "incoming/good.parquet", sample_bytes(tmp_path, rows=3_000, seed=3))
    pump_until(uploads, 1)
    [(good, _, _)] = wait_finished(db, "incoming/good.parquet")

    put(s3, buckets, "incoming/corrupt.parquet", b"PAR1 not really a parquet file PAR1")
    pump_until(uploads, 1)
    [(_, status, error)] = wait_finished(db, "incoming/corrupt.parquet")
    assert status == "failed"
    assert "not a readable parquet" in error and "incoming/corrupt.parquet" in error
    assert served(db) == {"peru": good}


def test_two_uploads_close_together_make_two_runs_and_the_newer_object_is_published(
    uploads, s3, buckets, db, tmp_path
):
    put(s3, buckets, "incoming/older.parquet", sample_bytes(tmp_path, rows=3_000, seed=4))
    time.sleep(1.1)  # S3 times objects to the second
    put(s3, buckets, "incoming/newer.parquet", sample_bytes(tmp_path, rows=3_000, seed=5))
    assert pump_until(uploads, 2) == 2
    [(_, older_status, _)] = wait_finished(db, "incoming/older.parquet")
    [(newer, newer_status, _)] = wait_finished(db, "incoming/newer.parquet")
    assert (older_status, newer_status) == ("succeeded", "succeeded")
    assert served(db) == {"peru": newer}


def test_a_job_that_cannot_start_is_tried_again_then_failed_saying_why_never_dead_lettered(
    uploads, client, s3, buckets, db, tmp_path, monkeypatch
):
    monkeypatch.setenv("JOB_LAUNCHER", "glue")
    monkeypatch.setenv("GLUE_JOB_NAME", "no-such-job")  # the endpoint's Glue refuses to start it
    monkeypatch.setenv("RUN_START_DEADLINE_SECONDS", "1")
    monkeypatch.setenv("RUN_START_ATTEMPTS", "3")
    put(s3, buckets, "incoming/unlucky.parquet", sample_bytes(tmp_path, rows=500, seed=6))
    assert pump_until(uploads, 1) == 1  # handled: the message is not retried
    [(run_id, status, _)] = runs_of(db, "incoming/unlucky.parquet")
    assert status == "queued"
    [(_, status, error)] = converge(uploads, client, db, "incoming/unlucky.parquet", timeout_s=60)
    assert status == "failed"
    assert "could not start the job after 3 attempts" in error and "no-such-job" in error, error
    dlq = uploads.sqs.get_queue_url(QueueName=f"{uploads.url.rsplit('/', 1)[1]}-dlq")["QueueUrl"]
    assert uploads.sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages") is None


def test_a_handler_that_keeps_failing_dead_letters_its_message_and_the_upload_still_runs(
    uploads, client, s3, buckets, throwaway_server, tmp_path, monkeypatch
):
    """The database is down: the handler fails every time and the message goes to the dead-letter
    queue; once the database is back, the reconciler takes the upload in all the same."""
    monkeypatch.setenv("DATABASE_URL", throwaway_server.url)
    postgres.stop(throwaway_server.data_dir)
    put(s3, buckets, "incoming/unlucky.parquet", sample_bytes(tmp_path, rows=500, seed=6))
    deadline = time.monotonic() + 30
    dlq = uploads.sqs.get_queue_url(QueueName=f"{uploads.url.rsplit('/', 1)[1]}-dlq")["QueueUrl"]
    dead = []
    while not dead and time.monotonic() < deadline:
        assert uploads.poll_once() == 0  # the handler fails every time
        dead = uploads.sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=0).get("Messages", [])
    assert len(dead) == 1 and "unlucky.parquet" in dead[0]["Body"]  # the key arrives URL-encoded

    postgres.start(throwaway_server.data_dir, throwaway_server.port)
    conn = psycopg2.connect(throwaway_server.url)
    try:
        [(run_id, status, error)] = converge(uploads, client, conn, "incoming/unlucky.parquet")
        assert (status, error) == ("succeeded", None)
        assert served(conn)["peru"] == run_id
    finally:
        conn.close()


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
    put(s3, buckets, "incoming/cloud.parquet", sample_bytes(tmp_path, rows=500, seed=7))
    assert pump_until(uploads, 1) == 1

    [(run_id, status, _)] = runs_of(db, "incoming/cloud.parquet")
    assert status == "queued"  # the job, not the handler, moves it on
    [job_run] = glue.get_job_runs(JobName="voucher-selection")["JobRuns"]
    assert job_run["Arguments"] == {
        "--source": f"s3://{buckets.raw}/incoming/cloud.parquet",
        "--run_id": run_id,
        "--countries": "Peru,Latvia",
    }
