"""S3 upload notifications, as SQS delivers them: hints that reconcile the keys they name at
once, through the one intake (``chalicelib.intake``) the reconciler also goes through.

S3 delivers each event at least once, the queue may redeliver a message, a notification may be
lost: none of it matters to the outcome. A repeat finds its object's run already there; a lost
one is found by the reconciler within a tick. A message whose handling keeps failing (the
database unreachable) goes to the dead-letter queue after three receives, and its object is
still taken in by the reconciler once the fault is gone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote_plus

from chalicelib.db import Connection
from chalicelib.intake import DatasetCheck, Intake
from chalicelib.launchers import Launcher


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


def take_in(intake: Intake, body: str) -> list[str]:
    """The runs one message starts: a notification's keys reconciled, or a dataset check."""
    check = json.loads(body).get("dataset_check")
    if check:
        return intake.check(DatasetCheck(**check))
    return [
        run_id
        for upload in uploads_in(body)
        for run_id in intake.key(upload.bucket, upload.key, upload.size)
    ]


def connection() -> Connection:
    """The handler's connection: the writer's, with a statement timeout."""
    from chalicelib import db

    return db.connect(
        statement_timeout_ms=10_000, application_name="voucher-selection-uploads", role=db.WRITER
    )


def handle(bodies: Iterable[str], launcher: Launcher | None = None) -> list[str]:
    """The SQS handler's work: reconcile the keys the batch's messages name (``launcher``: the
    configured one by default)."""
    from chalicelib import launchers

    conn = connection()
    try:
        intake = Intake(conn, launcher or launchers.from_env())
        return [run_id for body in bodies for run_id in take_in(intake, body)]
    finally:
        conn.close()
