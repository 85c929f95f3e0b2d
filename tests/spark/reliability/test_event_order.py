"""S3 events out of order and replayed: one run per object version, never a run that reads
another version than its event named. (Duplicates: ``tests/stack/events/test_uploads.py``.)

The handler launches Glue on the endpoint (which records job runs but runs no script); the test
then plays Glue: it runs each recorded job run here, with its arguments, in the order chosen.
"""

from __future__ import annotations

from tests.helpers import pump_until, put, run_job, runs_of, sample_bytes, served


def play(buckets, arguments: dict) -> None:
    """Run the job with a recorded job run's arguments, as Glue would."""
    run_job(buckets, arguments["--source"], arguments["--countries"], arguments["--run_id"])


def take_messages(pump, count: int) -> list[str]:
    """Receive (and delete) ``count`` notification bodies from the queue, in arrival order."""
    bodies = []
    while len(bodies) < count:
        for message in pump.sqs.receive_message(
            QueueUrl=pump.url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", []):
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


def test_events_out_of_order_and_replayed_make_one_run_of_the_newest_version(
    uploads, glue, s3, buckets, db, tmp_path
):
    key = "incoming/overwritten.parquet"
    put(s3, buckets, key, sample_bytes(tmp_path, rows=400, seed=21))
    v2 = put(s3, buckets, key, sample_bytes(tmp_path, rows=300, seed=22))
    first, second = take_messages(uploads, 2)
    deliver(uploads, [second, first])  # the newer version's event arrives first

    [arguments] = glue.job_runs()  # the late event of the overwritten version starts nothing
    play(buckets, arguments)
    assert runs_by_etag(db, key) == {v2: [("succeeded", None)]}
    [(run_id, _, _)] = runs_of(db, key)
    assert served(db) == {"peru": run_id}

    deliver(uploads, [first, second, second])  # replays, after success
    assert len(glue.job_runs()) == 1
    assert runs_by_etag(db, key) == {v2: [("succeeded", None)]}


def test_an_object_overwritten_before_its_run_starts_is_not_read_in_its_name(
    uploads, glue, s3, buckets, db, tmp_path
):
    key = "incoming/replaced.parquet"
    v1 = put(s3, buckets, key, sample_bytes(tmp_path, rows=400, seed=23))
    deliver(uploads, take_messages(uploads, 1))
    v2 = put(s3, buckets, key, sample_bytes(tmp_path, rows=300, seed=24))  # before v1's run starts
    [second] = take_messages(uploads, 1)

    [v1_run] = glue.job_runs()
    play(buckets, v1_run)  # it finds v2 at the key: it must not process v2 as v1
    [(status, error)] = runs_by_etag(db, key)[v1]
    assert status == "failed" and f"ETag {v1}" in error and f"ETag {v2}" in error
    assert served(db) == {}

    deliver(uploads, [second])
    play(buckets, glue.job_runs()[1])
    [(v2_run, _, _)] = [r for r in runs_of(db, key) if r[1] == "succeeded"]
    with db, db.cursor() as cur:
        cur.execute("SELECT rows_read FROM runs WHERE run_id = %s", (v2_run,))
        assert cur.fetchone() == (300,)  # v2's rows, read once, in v2's name
    deliver(uploads, [second])  # a replay
    assert {etag: [s for s, _ in runs] for etag, runs in runs_by_etag(db, key).items()} == {
        v1: ["failed"],
        v2: ["succeeded"],
    }
