"""Jobs that die: a run never stays ``running`` (or ``queued``) for good, and its object can run
again. Real processes are really killed (``kill -9``); Glue's state events are fed to the very
handler EventBridge invokes, in the shape Glue sends them.

- Locally the launcher's supervisor sees the job process exit and fails its run at once, with the
  exit status; everywhere a run renews a heartbeat, and one whose heartbeat is older than its lease
  counts as failed (``abandoned``) for every reader.
- In the cloud an EventBridge rule on "Glue Job State Change" fails the run with Glue's state and
  message.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chalicelib import runs
from chalicelib.intake import version_of
from infra.local.settings import REPO_ROOT
from tests.helpers import (
    fetch,
    get,
    put,
    run_job,
    runs_of,
    sample_bytes,
    served,
    settle,
    upload,
    wait_for,
)

JOB_MODULE = "glue_jobs.voucher_selection_job"


def job_processes(run_id: str) -> list[int]:
    """PIDs of the job's own Python processes for ``run_id`` (not a supervisor, not the JVM)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except (OSError, ValueError):
            continue
        if argv[1:3] == ["-m", JOB_MODULE] and run_id in argv:
            found.append(int(proc.name))
    return found


def status_of(db, run_id: str) -> str | None:
    db.rollback()
    found = fetch(db, "SELECT status FROM runs WHERE run_id = %s", run_id)
    return found[0][0] if found else None


def test_a_killed_local_job_fails_its_run_at_once_and_the_same_file_then_runs(
    uploads, s3, buckets, db, tmp_path
):
    body = sample_bytes(tmp_path, rows=30_000, seed=61)
    put(s3, buckets, "incoming/doomed.parquet", body)
    [(run_id, _, _)] = wait_for(
        lambda: uploads.poll_once() and runs_of(db, "incoming/doomed.parquet"), 30, "a run"
    )
    wait_for(lambda: status_of(db, run_id) == "running", what="the job to start")
    [pid] = wait_for(lambda: job_processes(run_id), what="the job process")
    os.kill(pid, signal.SIGKILL)  # out of memory, a lost worker, kill -9

    wait_for(lambda: status_of(db, run_id) == "failed", 60, "the run to be failed")
    [(error,)] = fetch(db, "SELECT error FROM runs WHERE run_id = %s", run_id)
    assert "SIGKILL" in error and "without recording an outcome" in error, error
    assert served(db) == {}

    put(s3, buckets, "incoming/doomed.parquet", body)  # the same bytes again
    found = settle(uploads, db, "incoming/doomed.parquet", runs=2)
    assert [s for _, s, _ in found] == ["failed", "succeeded"]
    assert served(db) == {"peru": found[1][0]}


def test_a_job_killed_without_a_supervisor_is_abandoned_after_its_lease_and_can_run_again(
    stack, s3, db, client, tmp_path
):
    """As on Glue, nothing watches the process: only the heartbeat lease tells it died."""
    body = sample_bytes(tmp_path, 30_000, 62)
    source = upload(s3, stack, "incoming/orphan.parquet", body)

    def uploaded() -> runs.Source:
        head = s3.head_object(Bucket=stack.raw, Key="incoming/orphan.parquet")
        return version_of(stack.raw, {"Key": "incoming/orphan.parquet", **head})

    def take_in(run_id: str, version: runs.Source) -> str | None:  # as on_upload does
        return runs.take_in(db, run_id, version, ("peru",), 60)

    object_ = uploaded()
    assert take_in("run-orphan", object_) == "run-orphan"
    lease = 4
    job = subprocess.Popen(
        [
            sys.executable,
            "-m",
            JOB_MODULE,
            "--source",
            source,
            "--run_id",
            "run-orphan",
            "--curated_location",
            f"s3://{stack.lake}/curated/",
            "--rejected_location",
            f"s3://{stack.lake}/rejected/",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "RUN_LEASE_SECONDS": str(lease)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: status_of(db, "run-orphan") == "running", what="the job to start")
        status, record = get(client, "/runs/run-orphan")
        assert (status, record["status"]) == (200, "running")
        assert 0 <= record["heartbeat_age_seconds"] < lease and record["lease_seconds"] == lease
        job.send_signal(signal.SIGKILL)
        job.wait()
    finally:
        job.kill()

    assert take_in("run-too-soon", object_) is None  # within the lease
    record = wait_for(
        lambda: (r := get(client, "/runs/run-orphan")[1])["status"] == "failed" and r,
        lease * 5,
        "the lease to run out",
    )
    assert "abandoned" in record["error"] and f"{lease} s" in record["error"], record["error"]
    assert take_in("run-again", object_) is None  # this upload's outcome: failed, for good
    time.sleep(1.1)  # S3 times objects to the second
    upload(s3, stack, "incoming/orphan.parquet", body)  # the same bytes, uploaded again
    assert take_in("run-again", uploaded()) == "run-again"
    run_job(stack, source, countries="Peru", run_id="run-again")
    assert served(db) == {"peru": "run-again"}
    assert dict((r, s) for r, s, _ in runs_of(db, "incoming/orphan.parquet")) == {
        "run-orphan": "failed",
        "run-again": "succeeded",
    }


def glue_event(job_name: str, job_run_id: str, state: str, message: str) -> dict:
    """A "Glue Job State Change" event, as EventBridge delivers it to a Lambda function."""
    return {
        "version": "0",
        "id": "0f9b6a7e-3c1d-4d0e-9f4e-2b7c9a1d5e3f",
        "detail-type": "Glue Job State Change",
        "source": "aws.glue",
        "account": "123456789012",
        "time": "2026-12-01T09:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "jobName": job_name,
            "severity": "INFO" if state == "SUCCEEDED" else "ERROR",
            "state": state,
            "jobRunId": job_run_id,
            "message": message,
        },
    }


def invoke_on_job_state(client, event: dict) -> None:
    client.lambda_.invoke("on_job_state", event)


GLUE_FAILURES = {
    "FAILED": "An error occurred while calling o97.parquet. java.lang.OutOfMemoryError",
    "TIMEOUT": "Job run timed out",
    "STOPPED": "Job run stopped",
    "ERROR": "Command failed with exit code 1",
    "SUCCEEDED": "Job run succeeded",  # the script exited 0 without recording an outcome
}


@pytest.mark.parametrize("state", GLUE_FAILURES)
def test_a_glue_state_event_fails_the_run_with_glues_state_and_message(
    uploads, glue, client, s3, buckets, db, tmp_path, state
):
    key = f"incoming/glue-{state.lower()}.parquet"
    put(s3, buckets, key, sample_bytes(tmp_path, rows=300, seed=63))
    [(run_id, _, _)] = wait_for(lambda: uploads.poll_once() and runs_of(db, key), 30, "a run")
    [job_run] = glue.get_job_runs(JobName=glue.job_name)["JobRuns"]
    assert job_run["Arguments"]["--run_id"] == run_id
    [(recorded,)] = fetch(db, "SELECT job_run_id FROM runs WHERE run_id = %s", run_id)
    assert recorded == job_run["Id"]

    invoke_on_job_state(
        client, glue_event(glue.job_name, job_run["Id"], state, GLUE_FAILURES[state])
    )
    [(_, status, error)] = runs_of(db, key)
    assert status == "failed"
    assert state in error and GLUE_FAILURES[state] in error and job_run["Id"] in error, error
    status, record = get(client, f"/runs/{run_id}")
    assert (record["status"], record["job_run_id"]) == ("failed", job_run["Id"])


def test_a_glue_event_for_a_run_that_recorded_its_outcome_changes_nothing(
    uploads, glue, client, s3, buckets, db, tmp_path, spark
):
    put(s3, buckets, "incoming/done.parquet", sample_bytes(tmp_path, rows=300, seed=64))
    wait_for(lambda: uploads.poll_once() and runs_of(db, "incoming/done.parquet"), 30, "a run")
    [job_run] = glue.get_job_runs(JobName=glue.job_name)["JobRuns"]
    arguments = job_run["Arguments"]
    run_job(buckets, arguments["--source"], arguments["--countries"], arguments["--run_id"])
    before = fetch(db, "SELECT * FROM runs")
    for state in ("SUCCEEDED", "FAILED"):  # also a late or repeated failure event
        invoke_on_job_state(client, glue_event(glue.job_name, job_run["Id"], state, "Job run"))
        db.rollback()
        assert fetch(db, "SELECT * FROM runs") == before
    invoke_on_job_state(client, glue_event(glue.job_name, "jr_unknown", "FAILED", "not ours"))
    assert fetch(db, "SELECT * FROM runs") == before
    assert json.dumps(before, default=str).count("succeeded") == 1
