"""S3 events out of order and replayed: one run per object version, never a run that reads
another version than its event named. (Duplicates: ``tests/events/test_uploads.py``.)

The handler launches Glue on the endpoint (which records job runs but runs no script); the test
then plays Glue: it runs each recorded job run here, with its arguments, in the order chosen.
"""

from __future__ import annotations

import uuid

import pytest

from infra.local import s3 as local_s3
from tests.events.test_uploads import published, pump_until, runs_of, sample, uploads  # noqa: F401
from tests.pipeline.test_job_end_to_end import run_job


@pytest.fixture
def glue(uploads, spark, monkeypatch):  # noqa: F811
    """The handler starts a Glue job of this test's own; ``glue.job_runs()`` lists its runs."""
    client = local_s3.client(uploads.sqs.meta.endpoint_url, "glue")
    name = f"voucher-selection-{uuid.uuid4().hex[:8]}"
    client.create_job(Name=name, Role="arn:aws:iam::123456789012:role/glue",
                      Command={"Name": "glueetl", "ScriptLocation": "s3://artifacts/job.py"})
    monkeypatch.setenv("JOB_LAUNCHER", "glue")
    monkeypatch.setenv("GLUE_JOB_NAME", name)
    client.job_runs = lambda: [r["Arguments"] for r in client.get_job_runs(JobName=name)["JobRuns"]]
    return client


def play(buckets, arguments: dict) -> None:
    """Run the job with a recorded job run's arguments, as Glue would."""
    run_job(buckets, arguments["--source"], arguments["--countries"], arguments["--run_id"])


def take_messages(pump, count: int) -> list[str]:
    """Receive (and delete) ``count`` notification bodies from the queue, in arrival order."""
    bodies = []
    while len(bodies) < count:
        for message in pump.sqs.receive_message(QueueUrl=pump.url, MaxNumberOfMessages=10,
                                                WaitTimeSeconds=1).get("Messages", []):
            bodies.append(message["Body"])
            pump.sqs.delete_message(QueueUrl=pump.url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def deliver(pump, bodies: list[str]) -> None:
    """Deliver notification bodies to the handler one by one, in this order."""
    for body in bodies:
        pump.sqs.send_message(QueueUrl=pump.url, MessageBody=body)
        assert pump_until(pump, 1) == 1


def runs_by_etag(db, key: str) -> dict[str, list[tuple]]:
    """The key's runs, per object version: (status, error) in the order they were created."""
    by_etag: dict[str, list[tuple]] = {}
    for run_id, status, error in runs_of(db, key):
        with db, db.cursor() as cur:
            cur.execute("SELECT source_etag FROM runs WHERE run_id = %s", (run_id,))
            by_etag.setdefault(cur.fetchone()[0], []).append((status, error))
    return by_etag


def put(s3, buckets, key: str, body: bytes) -> str:
    return s3.put_object(Bucket=buckets.raw, Key=key, Body=body)["ETag"].strip('"')


def test_events_out_of_order_and_replayed_make_one_run_of_the_newest_version(
    uploads, glue, s3, buckets, db, tmp_path  # noqa: F811
):
    key = "incoming/overwritten.parquet"
    put(s3, buckets, key, sample(tmp_path, 21, rows=400))
    v2 = put(s3, buckets, key, sample(tmp_path, 22, rows=300))
    first, second = take_messages(uploads, 2)
    deliver(uploads, [second, first])  # the newer version's event arrives first

    [arguments] = glue.job_runs()  # the late event of the overwritten version starts nothing
    play(buckets, arguments)
    assert runs_by_etag(db, key) == {v2: [("succeeded", None)]}
    [(run_id, _, _)] = runs_of(db, key)
    assert published(db) == {"peru": run_id}

    deliver(uploads, [first, second, second])  # replays, after success
    assert len(glue.job_runs()) == 1
    assert runs_by_etag(db, key) == {v2: [("succeeded", None)]}


def test_an_object_overwritten_before_its_run_starts_is_not_read_in_its_name(
    uploads, glue, s3, buckets, db, tmp_path  # noqa: F811
):
    key = "incoming/replaced.parquet"
    v1 = put(s3, buckets, key, sample(tmp_path, 23, rows=400))
    deliver(uploads, take_messages(uploads, 1))
    v2 = put(s3, buckets, key, sample(tmp_path, 24, rows=300))  # before v1's run starts
    [second] = take_messages(uploads, 1)

    [v1_run] = glue.job_runs()
    play(buckets, v1_run)  # it finds v2 at the key: it must not process v2 as v1
    [(status, error)] = runs_by_etag(db, key)[v1]
    assert status == "failed" and f"ETag {v1}" in error and f"ETag {v2}" in error
    assert published(db) == {}

    deliver(uploads, [second])
    play(buckets, glue.job_runs()[1])
    [(v2_run, _, _)] = [r for r in runs_of(db, key) if r[1] == "succeeded"]
    with db, db.cursor() as cur:
        cur.execute("SELECT rows_read FROM runs WHERE run_id = %s", (v2_run,))
        assert cur.fetchone() == (300,)  # v2's rows, read once, in v2's name
    deliver(uploads, [second])  # a replay
    assert {etag: [s for s, _ in runs] for etag, runs in runs_by_etag(db, key).items()} == {
        v1: ["failed"], v2: ["succeeded"]}
