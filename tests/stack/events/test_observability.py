"""Logs people can search, and the metrics the dashboard and alarms read: every function, loaded
as Lambda loads it, writes JSON lines at INFO with the invocation's request id and the run's id
(so does the job); uploads, runs by outcome and run durations are emitted as they happen.

Lambda's Python runtime puts one handler on the root logger and leaves the level at WARNING
unless ``AWS_LAMBDA_LOG_LEVEL`` is set (the stage's LoggingConfig sets it; ``chalice deploy``
does not). The functions here run in a process of their own set up that way, on the local
stack: the upload handler on two real uploads (one parquet file, queued through a Glue job of the
endpoint's, and one CSV, a failed run), and the API on a request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from chalicelib import job_events, metrics
from infra.local import events
from infra.local import s3 as local_s3
from infra.local.settings import REPO_ROOT
from tests.helpers import fetch, put, sample_bytes

REQUEST_ID = "8f1c0d6e-request"
#: Lambda's runtime, as far as logging goes: a root handler, the level left alone.
AS_LAMBDA = """
import json, logging, sys
logging.getLogger().addHandler(logging.StreamHandler(sys.stdout))

import app

class Context:
    aws_request_id = sys.argv[1]
    function_name = "voucher-selection-dev-fn"
    memory_limit_in_mb = 256
    invoked_function_arn = ""
    def get_remaining_time_in_millis(self):
        return 10_000

event = json.loads(sys.stdin.read())
handler = app.app if "httpMethod" in event else getattr(app, sys.argv[2])
handler(event, Context())
"""


def invoke(function: str, event: dict, env: dict[str, str]) -> list[dict]:
    """``function`` of app.py invoked once as Lambda would; every line it wrote, each parsed as
    JSON (a line that is not JSON fails here)."""
    done = subprocess.run(
        [sys.executable, "-c", AS_LAMBDA, REQUEST_ID, function],
        input=json.dumps(event),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
    return parsed


@pytest.fixture
def function_env(local_stack, buckets, database_url):
    """A deployed function's environment, on the local stack (no AWS_LAMBDA_LOG_LEVEL)."""
    glue = local_s3.client(local_stack.endpoint_url, "glue")
    job = f"voucher-selection-{uuid.uuid4().hex[:8]}"
    glue.create_job(
        Name=job,
        Role="arn:aws:iam::123456789012:role/glue",
        Command={"Name": "glueetl", "ScriptLocation": "s3://artifacts/job.py"},
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_LAMBDA_", "LOG_LEVEL"))}
    return env | {
        "AWS_LAMBDA_FUNCTION_NAME": "voucher-selection-dev-on_upload",
        "DATABASE_URL": database_url,
        "JOB_LAUNCHER": "glue",
        "GLUE_JOB_NAME": job,
        "STAGE": "dev",
    }


def s3_event(bucket: str, key: str, etag: str, size: int) -> dict:
    record = {
        "eventName": "ObjectCreated:Put",
        "eventTime": "2026-12-07T08:00:00.000Z",
        "s3": {
            "bucket": {"name": bucket},
            "object": {"key": key, "size": size, "eTag": etag},
        },
    }
    return {
        "MessageId": str(uuid.uuid4()),
        "ReceiptHandle": "handle",
        "Body": json.dumps({"Records": [record]}),
        "MD5OfBody": "",
    }


def test_on_upload_logs_json_lines_at_info_with_request_and_run_ids(
    function_env, s3, buckets, db, tmp_path
):
    parquet = sample_bytes(tmp_path, rows=200, seed=5)
    csv = b"timestamp,country_code\n2018-01-01,Peru\n"
    messages = [
        s3_event(buckets.raw, key, put(s3, buckets, key, body), len(body))
        for key, body in (("incoming/logs.parquet", parquet), ("incoming/logs.csv", csv))
    ]
    lines = invoke("on_upload", events.lambda_event(messages, "arn:queue"), function_env)

    runs = dict(fetch(db, "SELECT source_key, run_id FROM runs"))
    assert set(runs) == {"incoming/logs.parquet", "incoming/logs.csv"}
    about = {  # what the handler itself said about each run
        source: [
            line
            for line in lines
            if line.get("run_id") == run_id and line.get("logger", "").startswith("chalicelib")
        ]
        for source, run_id in runs.items()
    }
    queued = about["incoming/logs.parquet"]
    assert [line["level"] for line in queued] == ["INFO"]
    assert queued[0]["message"].startswith(f"queued run {runs['incoming/logs.parquet']}")
    assert [line["level"] for line in about["incoming/logs.csv"]] == ["INFO"]
    assert "not parquet" in about["incoming/logs.csv"][0]["message"]
    uploads = [line["uri"] for line in lines if line.get(metrics.UPLOADS) == 1]
    assert sorted(uploads) == sorted(f"s3://{buckets.raw}/{key}" for key in runs)
    logged = [line for line in lines if "_aws" not in line]  # EMF metric lines aside
    assert logged and all(line["requestId"] == REQUEST_ID for line in logged)
    assert {"timestamp", "level", "message", "logger"} <= set(logged[0])


def test_the_api_logs_json_lines_at_info_with_the_request_id(function_env, published):
    event = {
        "httpMethod": "GET",
        "path": "/health",
        "resource": "/health",
        "headers": {},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {"resourcePath": "/health", "httpMethod": "GET", "stage": "api"},
        "body": None,
        "isBase64Encoded": False,
    }
    env = function_env | {"AWS_LAMBDA_FUNCTION_NAME": "voucher-selection-dev"}
    lines = invoke("app", event, env)
    loaded = [line for line in lines if line["message"].startswith("loaded published runs")]
    assert [(line["level"], line["requestId"]) for line in loaded] == [("INFO", REQUEST_ID)]
    from app import app

    assert app.log.propagate and not app.log.handlers  # Chalice's own lines are JSON too


def test_the_job_logs_json_lines_each_with_its_run_id(function_env, buckets, tmp_path):
    """The Glue entry as Glue starts it, but in local mode: every log line is JSON with the
    run's id, from the first to the last (the heartbeat's thread included: a short lease)."""
    data = tmp_path / "history.parquet"
    data.write_bytes(sample_bytes(tmp_path, rows=500, seed=9))
    run_id = f"run-logs-{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in function_env.items() if k not in ("AWS_LAMBDA_FUNCTION_NAME", "STAGE")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "glue_jobs.voucher_selection_job",
            f"--source={data}",
            f"--run_id={run_id}",
            f"--curated_location=s3://{buckets.lake}/curated/",
            f"--rejected_location=s3://{buckets.lake}/rejected/",
            f"--catalog_database={buckets.catalog}",
            "--run_lease_seconds=30",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    logged = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    said = [line["message"] for line in logged if line.get("logger") == "voucher_selection"]
    assert said[0].startswith(f"run {run_id} started") and "published" in said[-1]
    assert all(line["run_id"] == run_id for line in logged)
    assert all(line["level"] == "INFO" for line in logged if "_aws" not in line)
    assert f"Run {run_id}:" in done.stdout  # and, run by hand, its summary for the person


def emitted(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


@pytest.mark.parametrize(("state", "status"), [("SUCCEEDED", "succeeded"), ("FAILED", "failed")])
def test_glue_saying_a_job_run_ended_counts_its_run_by_outcome_and_duration(
    db, database_url, capsys, state, status
):
    with db, db.cursor() as cur:
        cur.execute(
            "INSERT INTO runs (run_id, source_key, status, job_run_id, started_at, finished_at)"
            " VALUES ('run-ended', 'incoming/x.parquet', %s, 'jr_1',"
            " now() - interval '95 seconds', now())",
            (status,),
        )
    capsys.readouterr()
    job_events.handle({"state": state, "jobRunId": "jr_1", "jobName": "voucher-selection"})
    lines = emitted(capsys.readouterr().out)
    [runs] = [line for line in lines if metrics.RUNS in line]
    assert (runs["Outcome"], runs["run_id"]) == (status, "run-ended")
    assert runs["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Stage", "Outcome"]]
    [duration] = [line for line in lines if metrics.RUN_DURATION in line]
    assert duration[metrics.RUN_DURATION] == pytest.approx(95, abs=1)
    assert duration["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] == "Seconds"


def test_a_job_run_whose_run_is_unfinished_is_failed_then_counted(db, database_url, capsys):
    with db, db.cursor() as cur:
        cur.execute(
            "INSERT INTO runs (run_id, source_key, status, job_run_id, started_at, heartbeat_at,"
            " lease_seconds) VALUES ('run-killed', 'k', 'running', 'jr_2', now(), now(), 300)"
        )
    job_events.handle({"state": "TIMEOUT", "jobRunId": "jr_2", "message": "Timeout"})
    lines = emitted(capsys.readouterr().out)
    assert [line["Outcome"] for line in lines if metrics.RUNS in line] == ["failed"]
    assert [line["cause"] for line in lines if metrics.FAILED_RUNS in line] == ["job run ended"]
