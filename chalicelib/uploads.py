"""S3 upload notifications, as SQS delivers them, turned into runs of the job.

Every object created under ``incoming/`` leaves a run record, but for folder placeholders and
metadata such as ``_SUCCESS`` (``chalicelib.sources``):

- a **file** directly under ``incoming/`` is a run of its own, judged parquet by its bytes: one
  that is not is a ``failed`` run saying what it holds;
- a **part** of a dataset folder (``incoming/<folder>/...``) marks the folder's run ``waiting`` and
  sends the queue a check of the folder, delayed by the quiet period (``DATASET_QUIET_SECONDS``,
  default 60); a check that finds no newer part than its own queues one run over every part;
- a dataset's **marker** (``_SUCCESS``) queues that run at once.

S3 delivers each event at least once and the queue may redeliver a message: a run is queued only
when no live or succeeded event run has the same bucket, key (or folder), ETag (or digest of the
parts) and countries, so repeats start nothing.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote_plus

from chalicelib import logs, metrics, rules, runs, sources

log = logging.getLogger(__name__)

DEFAULT_QUIET_SECONDS = 60
MAX_DELAY_SECONDS = 900  # the longest an SQS message can be delayed


@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str
    etag: str
    size: int
    event_time: datetime | None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def source(self) -> runs.Source:
        return runs.Source(self.bucket, self.key, self.etag, self.event_time, 1)


@dataclass(frozen=True)
class DatasetCheck:
    """A delayed look at a dataset folder: has it had no new object since ``seen_at`` (when the
    part that sent the check arrived, by the database's clock)?"""

    bucket: str
    prefix: str
    seen_at: str

    def body(self) -> str:
        return json.dumps({"dataset_check": vars(self)})


def uploads_in(body: str) -> list[Upload]:
    """The created objects an S3 notification names (none for ``s3:TestEvent``)."""
    message = json.loads(body)
    uploads = []
    for record in message.get("Records", []):
        if not record.get("eventName", "").startswith("ObjectCreated"):
            continue
        obj = record["s3"]["object"]
        when = record.get("eventTime")
        uploads.append(
            Upload(
                bucket=record["s3"]["bucket"]["name"],
                key=unquote_plus(obj["key"]),  # S3 URL-encodes keys; a plain key is unchanged
                etag=obj.get("eTag", "").strip('"'),
                size=int(obj.get("size", 0)),
                event_time=datetime.fromisoformat(when.replace("Z", "+00:00")) if when else None,
            )
        )
    return uploads


def quiet_seconds(env=None) -> int:
    env = os.environ if env is None else env
    return max(0, int(env.get("DATASET_QUIET_SECONDS") or DEFAULT_QUIET_SECONDS))


@functools.cache
def _client(service: str):
    import boto3  # lazily: never at import time

    return boto3.client(service)


class Intake:
    """Turns one batch's messages into runs: the database, the launcher and the countries."""

    def __init__(self, conn, launcher, countries: str | None = None, s3=None, sqs=None):
        self.conn = conn
        self.launcher = launcher
        self.countries = (
            countries or os.environ.get("COUNTRIES") or ",".join(rules.DEFAULT_COUNTRIES)
        )
        self.keys = rules.requested_country_keys(self.countries)
        self.quiet_s = quiet_seconds()
        self._s3 = s3
        self._sqs = sqs

    @property
    def s3(self):
        return self._s3 or _client("s3")

    def handle(self, body: str) -> list[str]:
        """The runs one message starts (a notification, or a delayed dataset check)."""
        check = json.loads(body).get("dataset_check")
        if check:
            return self._check(DatasetCheck(**check))
        started = []
        for upload in uploads_in(body):
            kind = sources.kind_of(upload.key, upload.size)
            if kind in ("file", "part"):
                metrics.upload_received(upload.uri)
            if kind == "file":
                started += self._file(upload)
            elif kind == "part":
                self._part(upload)
            elif kind == "marker":
                started += self._dataset_ready(upload.bucket, _folder(upload.key))
            else:
                log.info("ignored %s (%s)", upload.uri, kind)
        return started

    def _file(self, upload: Upload) -> list[str]:
        problem = sources.s3_parquet_problem(self.s3, upload.bucket, upload.key, upload.size)
        if problem:
            recorded = runs.record_failed(
                self.conn, runs.new_run_id(), upload.source, self.keys, problem
            )
            log.info(
                "%s: %s", recorded or "already recorded", problem, extra=logs.run(recorded or "")
            )
            return []
        run_id = runs.queue_run(self.conn, runs.new_run_id(), upload.source, self.keys)
        if run_id is None:
            log.info("skipped %s (ETag %s): already processed", upload.uri, upload.etag)
            return []
        return [self._launch(run_id, upload.uri)]

    def _part(self, upload: Upload) -> None:
        folder = runs.Source(upload.bucket, _folder(upload.key))
        run_id, seen_at = runs.wait_for_dataset(
            self.conn, runs.new_run_id(), folder, self.keys, self.quiet_s
        )
        check = DatasetCheck(upload.bucket, folder.key, seen_at.isoformat())
        self._send_check(check, self.quiet_s)
        log.info(
            "run %s waits for dataset s3://%s/%s",
            run_id,
            upload.bucket,
            folder.key,
            extra=logs.run(run_id),
        )

    def _check(self, check: DatasetCheck) -> list[str]:
        waiting = runs.dataset_waiting(self.conn, check.bucket, check.prefix, self.keys)
        if waiting is None:  # started by its marker, or by an earlier check
            return []
        last_seen, quiet_for = waiting
        if last_seen > datetime.fromisoformat(check.seen_at):
            return []  # a newer part arrived: its own check comes later
        if quiet_for < self.quiet_s:  # delivered early, or the quiet period exceeds SQS's delay
            self._send_check(check, math.ceil(self.quiet_s - quiet_for))
            return []
        return self._dataset_ready(check.bucket, check.prefix)

    def _dataset_ready(self, bucket: str, prefix: str) -> list[str]:
        uri = f"s3://{bucket}/{prefix}"
        try:
            described = sources.describe(uri, self.s3)
        except sources.InputError as exc:
            runs.record_failed(
                self.conn, runs.new_run_id(), runs.Source(bucket, prefix), self.keys, str(exc)
            )
            return []
        run_id = runs.queue_dataset_run(self.conn, described.source, self.keys)
        if run_id is None:
            log.info("skipped %s (%s): already processed", uri, described.source.etag)
            return []
        return [self._launch(run_id, uri)]

    def _launch(self, run_id: str, uri: str) -> str:
        """Start the job; when that fails, the run is failed and the error raised, so the
        message goes back to the queue and a later delivery (or the dead-letter queue) takes it."""
        with logs.about_run(run_id):
            try:
                job_run_id = self.launcher.start(run_id, uri, self.countries)
            except Exception as exc:
                error = f"could not start the job: {type(exc).__name__}: {exc}"
                runs.fail_run(self.conn, run_id, error)
                log.error("run %s failed: %s", run_id, error)
                raise
            if job_run_id:
                runs.set_job_run(self.conn, run_id, job_run_id)
            log.info("queued run %s for %s (job run %s)", run_id, uri, job_run_id or "local")
        return run_id

    def _send_check(self, check: DatasetCheck, delay_s: int) -> None:
        sqs = self._sqs or _client("sqs")
        url = sqs.get_queue_url(QueueName=os.environ.get("UPLOAD_QUEUE", "voucher-uploads"))
        sqs.send_message(
            QueueUrl=url["QueueUrl"],
            MessageBody=check.body(),
            DelaySeconds=min(delay_s, MAX_DELAY_SECONDS),
        )


def start_runs(conn, launcher, bodies: list[str], countries: str | None = None) -> list[str]:
    """Queue and launch the runs a batch of messages calls for; return the run ids started."""
    intake = Intake(conn, launcher, countries)
    return [run_id for body in bodies for run_id in intake.handle(body)]


def connection():
    """The handler's connection: the writer's, with a statement timeout."""
    from chalicelib import db

    return db.connect(
        statement_timeout_ms=10_000, application_name="voucher-selection-uploads", role=db.WRITER
    )


def handle(event) -> list[str]:
    """The SQS handler's work: start the runs the batch's upload notifications call for."""
    from chalicelib import launchers

    conn = connection()
    try:
        return start_runs(conn, launchers.from_env(), [record.body for record in event])
    finally:
        conn.close()


def _folder(key: str) -> str:
    """The dataset folder of a part or a marker (``sources.kind_of`` names them only in one)."""
    folder = sources.dataset_of(key)
    if folder is None:
        raise ValueError(f"{key} is in no dataset folder")
    return folder
