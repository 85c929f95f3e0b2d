"""S3 upload notifications, as SQS delivers them, turned into runs of the job: once per object.

S3 delivers each event at least once (a multipart upload may emit two), and the queue may redeliver
a message: a run is queued only when no live or succeeded run has the same bucket, key, ETag and
countries (``runs.queue_run``), so repeats start nothing.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote_plus

from chalicelib import rules, runs

log = logging.getLogger(__name__)

SUFFIXES = (".parquet", ".parquet.gzip")


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


def uploads_in(body: str) -> list[Upload]:
    """The created parquet objects an S3 notification names (none for ``s3:TestEvent``)."""
    message = json.loads(body)
    uploads = []
    for record in message.get("Records", []):
        if not record.get("eventName", "").startswith("ObjectCreated"):
            continue
        obj = record["s3"]["object"]
        key = unquote_plus(obj["key"])  # S3 URL-encodes keys in events; a plain key is unchanged
        if not key.endswith(SUFFIXES):
            continue
        when = record.get("eventTime")
        uploads.append(
            Upload(
                bucket=record["s3"]["bucket"]["name"],
                key=key,
                etag=obj.get("eTag", "").strip('"'),
                size=int(obj.get("size", 0)),
                event_time=datetime.fromisoformat(when.replace("Z", "+00:00")) if when else None,
            )
        )
    return uploads


def start_runs(conn, launcher, bodies: list[str], countries: str | None = None) -> list[str]:
    """Queue and launch a run for each new object in the messages; return the run ids started.

    When the launcher fails, the run is marked failed and the error raised, so the message goes
    back to the queue and a later delivery (or the dead-letter queue) takes it.
    """
    countries = countries or os.environ.get("COUNTRIES") or ",".join(rules.DEFAULT_COUNTRIES)
    keys = rules.requested_country_keys(countries)
    started = []
    for upload in (u for body in bodies for u in uploads_in(body)):
        source = runs.Source(upload.bucket, upload.key, upload.etag, upload.event_time)
        run_id = runs.queue_run(conn, runs.new_run_id(), source, keys)
        if run_id is None:
            log.info("skipped %s (ETag %s): already processed", upload.uri, upload.etag)
            continue
        try:
            launcher.start(run_id, upload.uri, countries)
        except Exception as exc:
            runs.fail_run(conn, run_id, f"could not start the job: {type(exc).__name__}: {exc}")
            raise
        log.info("queued run %s for %s", run_id, upload.uri)
        started.append(run_id)
    return started


def handle(event) -> list[str]:
    """The SQS handler's work: start the runs the batch's upload notifications call for."""
    from chalicelib import db, launchers

    conn = db.connect(statement_timeout_ms=10_000, application_name="voucher-selection-uploads")
    try:
        return start_runs(conn, launchers.from_env(), [record.body for record in event])
    finally:
        conn.close()
