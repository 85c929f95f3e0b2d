"""Nothing lost when faults meet: every upload under ``incoming/`` converges to a served result or
a visible failure, whatever was lost on the way. One test per way an upload used to vanish or a
failed run used to come back, on the real stack: moto's S3 notifying SQS, the pump invoking
``on_upload``, the reconciler invoked as EventBridge's schedule invokes ``reconcile``, local jobs
in processes of their own (frozen, killed), Glue on the endpoint refusing starts, endpoints
stopped and hanging.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import boto3
import pandas as pd
import psycopg2
import pytest

from infra.local import s3 as local_s3
from infra.local.events import lambda_event
from infra.local.settings import REPO_ROOT
from tests.helpers import (
    black_hole,
    converge,
    drained,
    fetch,
    get,
    independent_expectations,
    put,
    reconcile,
    run_job,
    runs_of,
    sample_bytes,
    served,
    settle,
    wait_for,
)

JOB_MODULE = "glue_jobs.voucher_selection_job"


@pytest.fixture
def fast_starts(monkeypatch):
    """A job that has not begun two seconds after its start is looked after."""
    monkeypatch.setenv("RUN_START_DEADLINE_SECONDS", "2")


def run_record(db, run_id: str) -> dict:
    db.rollback()
    [row] = fetch(
        db,
        "SELECT status, error, status_reason, rows_read, source_objects, notes FROM runs"
        " WHERE run_id = %s",
        run_id,
    )
    return dict(
        zip(("status", "error", "reason", "rows_read", "objects", "notes"), row, strict=True)
    )


def kept_in(bodies: list[bytes]) -> int:
    whole = pd.concat([pd.read_parquet(io.BytesIO(b)) for b in bodies], ignore_index=True)
    return independent_expectations(whole)[0]["peru"]


def test_1_a_dataset_folder_whose_job_cannot_start_stays_queued_and_runs_once_it_can(
    uploads, client, quiet, fast_starts, s3, buckets, db, tmp_path
):
    log_dir = tmp_path / "runs"
    log_dir.write_text("not a folder")  # the launcher cannot start a job (as Glue refusing)
    bodies = [sample_bytes(tmp_path, rows=1_000, seed=seed) for seed in (11, 12)]
    for n, body in enumerate(bodies):  # awswrangler's layout: no marker
        put(s3, buckets, f"incoming/refused/part-{n}.snappy.parquet", body)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the parts' events, then the quiet folder's check
        uploads.poll_once()
        [(run_id, status, _)] = runs_of(db, "incoming/refused/") or [(None, None, None)]
        if status not in (None, "waiting"):
            break
    assert status == "queued", runs_of(db, "incoming/refused/")  # never failed, never dropped
    record = run_record(db, run_id)
    assert "could not start the job" in record["reason"] and "next attempt" in record["reason"]

    log_dir.unlink()  # the launcher can start jobs again
    [(again, status, error)] = converge(uploads, client, db, "incoming/refused/")
    assert (again, status, error) == (run_id, "succeeded", None)
    record = run_record(db, run_id)
    assert (record["rows_read"], record["objects"]) == (2_000, 2)
    assert served(db) == {"peru": run_id}


def handler_process(event: dict, env: dict[str, str]) -> subprocess.Popen:
    """``on_upload`` invoked in a process of its own, as a Lambda container runs it."""
    code = "import json, sys; from app import on_upload; on_upload(json.load(sys.stdin), None)"
    handler = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert handler.stdin is not None
    handler.stdin.write(json.dumps(event).encode())
    handler.stdin.close()
    return handler


def test_2_a_handler_that_dies_between_recording_and_starting_loses_nothing(
    uploads, client, fast_starts, s3, buckets, db, tmp_path, monkeypatch
):
    put(s3, buckets, "incoming/hung.parquet", sample_bytes(tmp_path, rows=1_000, seed=21))
    [message] = uploads.sqs.receive_message(QueueUrl=uploads.url, WaitTimeSeconds=5)["Messages"]
    with black_hole() as hung_glue:  # start_job_run never answers: the handler times out
        env = {
            **os.environ,
            "JOB_LAUNCHER": "glue",
            "GLUE_JOB_NAME": "voucher-selection",
            "AWS_ENDPOINT_URL_GLUE": hung_glue,
        }
        handler = handler_process(lambda_event([message], uploads.arn), env)
        try:
            [(run_id, status, _)] = wait_for(
                lambda: runs_of(db, "incoming/hung.parquet"), 60, "the run to be recorded"
            )
            time.sleep(1)  # it is in the start now
            assert handler.poll() is None, "the handler should hang in start_job_run"
        finally:
            handler.kill()  # Lambda's timeout
            handler.wait()
    assert status == "queued"

    # The message comes back (never deleted); the reconciler starts the run the handler left.
    [(again, status, error)] = converge(uploads, client, db, "incoming/hung.parquet")
    assert (again, status, error) == (run_id, "succeeded", None)
    assert served(db) == {"peru": run_id}


def test_3_a_burst_beyond_the_concurrency_limit_waits_for_capacity_never_fails_or_dead_letters(
    uploads, client, fast_starts, s3, buckets, db, tmp_path, throwaway_endpoint, monkeypatch
):
    """Glue (a moto server of the test's own) allows the job one run at a time, and each job run
    holds its place for a few seconds, as a real one would."""
    _, _, url = throwaway_endpoint
    urllib.request.urlopen(  # job runs go STARTING -> RUNNING -> SUCCEEDED, 3 s a step
        urllib.request.Request(
            f"{url}/moto-api/state-manager/set-transition",
            data=json.dumps(
                {"model_name": "glue::job_run", "transition": {"progression": "time", "seconds": 3}}
            ).encode(),
            method="POST",
        )
    ).close()
    glue = local_s3.client(url, "glue")
    glue.create_job(
        Name="voucher-selection",
        Role="arn:aws:iam::123456789012:role/glue",
        Command={"Name": "glueetl", "ScriptLocation": "s3://artifacts/job.py"},
        ExecutionProperty={"MaxConcurrentRuns": 1},
    )
    for name, value in [
        ("JOB_LAUNCHER", "glue"),
        ("GLUE_JOB_NAME", "voucher-selection"),
        ("AWS_ENDPOINT_URL_GLUE", url),
    ]:
        monkeypatch.setenv(name, value)

    keys = [f"incoming/burst-{n}.parquet" for n in range(3)]
    for n, key in enumerate(keys):
        put(s3, buckets, key, sample_bytes(tmp_path, rows=300, seed=30 + n))
    drained(uploads)
    dlq = uploads.sqs.get_queue_url(QueueName=f"{uploads.url.rsplit('/', 1)[1]}-dlq")["QueueUrl"]
    assert uploads.sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages") is None
    found = {key: runs_of(db, key) for key in keys}
    assert all(len(runs) == 1 for runs in found.values()), found  # not one run a try
    queued = [run_record(db, runs[0][0]) for runs in found.values() if runs[0][1] == "queued"]
    assert len(queued) == 3, found
    capacity = [q for q in queued if "waiting for capacity" in (q["reason"] or "")]
    assert len(capacity) == 2 and all("ConcurrentRunsExceeded" in q["reason"] for q in capacity)

    def started() -> list[str]:
        return sorted(
            run["Arguments"]["--source"].rsplit("/", 1)[1]
            for run in glue.get_job_runs(JobName="voucher-selection")["JobRuns"]
        )

    deadline = time.monotonic() + 90
    while len(started()) < 3 and time.monotonic() < deadline:  # capacity frees, run by run
        reconcile(client)
        time.sleep(0.5)
    assert started() == ["burst-0.parquet", "burst-1.parquet", "burst-2.parquet"]
    db.rollback()
    errors = [e for (e,) in fetch(db, "SELECT error FROM runs WHERE error IS NOT NULL")]
    assert not any("Concurrent" in e or "capacity" in e for e in errors), errors
    assert uploads.sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages") is None


def test_4_a_folder_with_a_part_still_uploading_is_not_quiet_and_runs_over_every_part(
    uploads, client, quiet, s3, buckets, db, tmp_path
):
    bodies = [sample_bytes(tmp_path, rows=1_000, seed=seed) for seed in (41, 42, 43)]
    for n, body in enumerate(bodies[:2]):
        put(s3, buckets, f"incoming/copying/part-{n}.parquet", body)
    key = "incoming/copying/part-2.parquet"  # a large part: a multipart upload, one part sent
    upload = s3.create_multipart_upload(Bucket=buckets.raw, Key=key)
    etag = s3.upload_part(
        Bucket=buckets.raw, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=bodies[2]
    )["ETag"]

    for tick in (False, True):  # three quiet periods pass, with the events alone, then ticks
        deadline = time.monotonic() + quiet * 3
        while time.monotonic() < deadline:
            uploads.poll_once()
            if tick:
                reconcile(client)
        [(run_id, status, _)] = runs_of(db, "incoming/copying/")
        assert status == "waiting"
    assert f"a multipart upload is in progress: {key}" in run_record(db, run_id)["reason"]

    s3.complete_multipart_upload(
        Bucket=buckets.raw,
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]},
    )
    [(done, status, error)] = converge(uploads, client, db, "incoming/copying/")
    assert (done, status, error) == (run_id, "succeeded", None)
    assert run_record(db, done)["rows_read"] == 3_000
    [(kept,)] = fetch(db, "SELECT rows_kept FROM run_country_stats WHERE run_id = %s", done)
    assert kept == kept_in(bodies)


def test_4b_an_abandoned_multipart_upload_no_longer_holds_its_folder_and_the_run_says_so(
    uploads, client, quiet, s3, buckets, db, tmp_path, monkeypatch
):
    monkeypatch.setenv("MULTIPART_ABANDON_SECONDS", str(quiet + 2))
    body = sample_bytes(tmp_path, rows=1_000, seed=44)
    put(s3, buckets, "incoming/stalled/part-0.parquet", body)
    key = "incoming/stalled/part-1.parquet"
    s3.create_multipart_upload(Bucket=buckets.raw, Key=key)  # started, never finished
    [(run_id, status, error)] = converge(uploads, client, db, "incoming/stalled/")
    assert (status, error) == ("succeeded", None)
    record = run_record(db, run_id)
    assert record["rows_read"] == 1_000
    assert f"ignored the multipart upload of {key}" in record["notes"], record
    status, shown = get(client, f"/runs/{run_id}")
    assert status == 200 and shown["notes"] == record["notes"]


def test_5_the_heartbeat_survives_a_credentials_outage_and_the_run_publishes(
    stack, s3, tls_server, tmp_path, monkeypatch, caplog
):
    """As on Glue: every beat connects as the writer with an IAM authentication token signed
    with the job's credentials, which the instance's credential endpoint fails to hand out for
    a few seconds mid-run (a beat fails meanwhile with botocore's error, not a database one);
    the lease (20 s) would run out without the beats after it."""
    from chalicelib import db as database
    from glue_jobs import pipeline

    monkeypatch.delenv("DATABASE_URL")
    for variable, value in [
        ("DB_HOST", "127.0.0.1"),
        ("DB_PORT", str(tls_server.server.port)),
        ("DB_NAME", "postgres"),
        ("DB_CA_BUNDLE", str(tls_server.ca_file)),
        ("RUN_LEASE_SECONDS", "20"),
        ("AWS_EC2_METADATA_DISABLED", "true"),  # no instance here to ask
    ]:
        monkeypatch.setenv(variable, value)
    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    credentials = {name: os.environ[name] for name in keys}

    def forget_credentials():  # boto3's default session resolves them once, then keeps them
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
        database._rds.cache_clear()

    transform = pipeline.transform

    def transform_then_outage(*args, **kwargs):
        done = transform(*args, **kwargs)
        for name in credentials:  # the signer finds no credentials: NoCredentialsError
            monkeypatch.delenv(name)
        forget_credentials()
        time.sleep(6)  # more than a beat's period (5 s)
        for name, value in credentials.items():
            monkeypatch.setenv(name, value)
        forget_credentials()
        time.sleep(22)  # longer than the lease: only beats after the outage keep it
        return done

    monkeypatch.setattr(pipeline, "transform", transform_then_outage)
    source = f"s3://{stack.raw}/incoming/beat.parquet"
    s3.put_object(Bucket=stack.raw, Key="incoming/beat.parquet", Body=sample_bytes(tmp_path, 500))
    run_job(stack, source, countries="Peru", run_id="run-beats-on")
    assert "heartbeat not recorded" in caplog.text and "credentials" in caplog.text
    conn = psycopg2.connect(tls_server.server.url, sslmode="require")
    try:
        [(status, error)] = fetch(
            conn, "SELECT status, error FROM runs WHERE run_id = %s", "run-beats-on"
        )
        assert (status, error) == ("succeeded", None)
        assert served(conn)["peru"] == "run-beats-on"
    finally:
        conn.close()
        database._rds.cache_clear()


def test_6_a_file_whose_name_starts_with_an_underscore_is_a_run_like_any_other(
    uploads, s3, buckets, db, tmp_path
):
    put(s3, buckets, "incoming/_history.parquet", sample_bytes(tmp_path, rows=1_000, seed=61))
    put(s3, buckets, "incoming/.history.parquet", sample_bytes(tmp_path, rows=1_000, seed=62))
    [(first, status, error)] = settle(uploads, db, "incoming/_history.parquet")
    assert (status, error) == ("succeeded", None)
    [(_, status, error)] = settle(uploads, db, "incoming/.history.parquet")
    assert (status, error) == ("succeeded", None)


def job_process(stack, source: str, run_id: str, lease_s: int) -> subprocess.Popen:
    """The Glue script in a process group of its own (as on a Glue worker), nothing watching."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            JOB_MODULE,
            f"--source={source}",
            "--countries=Peru",
            f"--run_id={run_id}",
            f"--curated_location=s3://{stack.lake}/curated/",
            f"--rejected_location=s3://{stack.lake}/rejected/",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "RUN_LEASE_SECONDS": str(lease_s)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_7_a_job_frozen_past_its_lease_never_publishes_and_its_run_stays_failed(
    stack, db, s3, client, tmp_path
):
    lease = 6
    first = f"s3://{stack.raw}/incoming/frozen.parquet"
    s3.put_object(
        Bucket=stack.raw,
        Key="incoming/frozen.parquet",
        Body=sample_bytes(tmp_path, rows=200_000, seed=71),
    )
    job = job_process(stack, first, "run-frozen", lease)
    try:
        wait_for(lambda: get(client, "/runs/run-frozen")[0] == 200, 120, "the job to start")
        os.killpg(job.pid, signal.SIGSTOP)  # frozen: the process, its heartbeat, its JVM
        record = wait_for(
            lambda: (r := get(client, "/runs/run-frozen")[1])["status"] == "failed" and r,
            lease * 4,
            "the lease to run out",
        )
        assert record["error"].startswith("abandoned: no heartbeat"), record["error"]
        second = f"s3://{stack.raw}/incoming/after.parquet"
        s3.put_object(
            Bucket=stack.raw, Key="incoming/after.parquet", Body=sample_bytes(tmp_path, 2_000, 72)
        )
        run_job(stack, second, countries="Peru", run_id="run-after")
        assert served(db) == {"peru": "run-after"}
    finally:
        os.killpg(job.pid, signal.SIGCONT)
    output, _ = job.communicate(timeout=180)
    text = output.decode(errors="replace")
    assert job.returncode != 0, text
    assert "run-frozen" in text and ("lost its lease" in text or "is failed" in text), text
    db.rollback()
    assert fetch(db, "SELECT status FROM runs WHERE run_id = 'run-frozen'") == [("failed",)]
    assert served(db) == {"peru": "run-after"}
    assert get(client, "/runs/run-frozen")[1]["status"] == "failed"


def test_8_an_upload_whose_notification_is_lost_is_run_by_the_reconciler(
    uploads, client, s3, buckets, db, tmp_path
):
    put(s3, buckets, "incoming/unnoticed.parquet", sample_bytes(tmp_path, rows=1_000, seed=81))
    time.sleep(1)  # the notification reached the queue...
    uploads.sqs.purge_queue(QueueUrl=uploads.url)  # ...and is lost there
    assert drained(uploads) == 0 and runs_of(db, "incoming/unnoticed.parquet") == []
    [(run_id, status, error)] = converge(uploads, client, db, "incoming/unnoticed.parquet")
    assert (status, error) == ("succeeded", None)
    assert served(db) == {"peru": run_id}
