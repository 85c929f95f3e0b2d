"""The AWS endpoint goes away: a moto server of the test's own is really stopped.

The job: the run is recorded failed with a message naming the endpoint. The upload handler: the
run stays queued, saying why (here the queue is on the session's endpoint and Glue on the stopped
one, as they are separate services in the cloud), and the reconciler starts it once Glue is back.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from chalicelib.sources import InputError
from infra.local import aws
from infra.local import s3 as local_s3
from infra.local.settings import from_env
from tests.helpers import fetch, pump_until, reconcile, run_job, runs_of, sample_bytes


def test_the_job_fails_its_run_naming_the_endpoint_it_cannot_reach(
    local_stack, buckets, database_url, db, spark, throwaway_endpoint, monkeypatch, tmp_path
):
    state, port, url = throwaway_endpoint
    s3 = local_s3.client(url)
    local_s3.ensure_bucket(s3, "raw")
    s3.put_object(Bucket="raw", Key="incoming/a.parquet", Body=sample_bytes(tmp_path, rows=500))
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    aws.stop(state)

    with pytest.raises(InputError, match=f"127.0.0.1:{port}"):  # the job exits non-zero
        run_job(buckets, "s3://raw/incoming/a.parquet", run_id="run-no-endpoint")
    [(status, error)] = fetch(
        db, "SELECT status, error FROM runs WHERE run_id = %s", "run-no-endpoint"
    )
    assert status == "failed", error
    assert f"http://127.0.0.1:{port}" in error and "s3://raw/incoming/a.parquet" in error
    assert fetch(db, "SELECT count(*) FROM published_country") == [(0,)]


def test_a_run_stays_queued_while_glue_is_unreachable_and_starts_once_it_is_back(
    uploads, client, s3, buckets, db, tmp_path, throwaway_endpoint, monkeypatch
):
    state, port, url = throwaway_endpoint
    monkeypatch.setenv("JOB_LAUNCHER", "glue")
    monkeypatch.setenv("GLUE_JOB_NAME", "voucher-selection")
    monkeypatch.setenv("AWS_ENDPOINT_URL_GLUE", url)  # Glue only; S3 and SQS stay up
    monkeypatch.setenv("RUN_START_DEADLINE_SECONDS", "1")
    aws.stop(state)

    s3.put_object(
        Bucket=buckets.raw,
        Key="incoming/later.parquet",
        Body=sample_bytes(tmp_path, rows=300, seed=8),
    )
    assert pump_until(uploads, 1) == 1  # handled: the upload has its run, which waits
    [(run_id, status, _)] = runs_of(db, "incoming/later.parquet")
    assert status == "queued"
    [(reason,)] = fetch(db, "SELECT status_reason FROM runs WHERE run_id = %s", run_id)
    assert "could not start the job" in reason and f"http://127.0.0.1:{port}" in reason

    moto = replace(from_env(), state_dir=state, aws_port=port, aws_emulator="moto")
    aws.start(moto)  # Glue is back (a fresh endpoint: the job is defined again)
    glue = local_s3.client(url, "glue")
    glue.create_job(
        Name="voucher-selection",
        Role="arn:aws:iam::123456789012:role/glue",
        Command={"Name": "glueetl", "ScriptLocation": "s3://artifacts/job.py"},
    )
    deadline = time.monotonic() + 60
    while not glue.get_job_runs(JobName="voucher-selection")["JobRuns"]:
        assert time.monotonic() < deadline, runs_of(db, "incoming/later.parquet")
        reconcile(client)
        time.sleep(0.5)
    job_runs = glue.get_job_runs(JobName="voucher-selection")["JobRuns"]
    assert {j["Arguments"]["--run_id"] for j in job_runs} == {run_id}  # the same run, not failed
    assert [r for r, _, _ in runs_of(db, "incoming/later.parquet")] == [run_id]
