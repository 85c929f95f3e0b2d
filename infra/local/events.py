"""Uploads become runs locally, as in the cloud: S3 notifies an SQS queue, and this pump plays
Lambda's SQS event source and EventBridge's schedule.

The local endpoint delivers S3 notifications to SQS but runs no Lambda, so the pump long-polls the
queue and invokes the very same Chalice handler (``on_upload`` in ``app.py``) with a Lambda SQS
batch event, deleting the messages only after the handler succeeded. A failed message is received
again once its visibility timeout has passed, and the queue's redrive policy moves it to the
dead-letter queue after ``max_receive_count`` receives. Every ``RECONCILE_SECONDS`` (60, as the
cloud's schedule) it invokes the scheduled handler ``reconcile`` with a scheduled event.

    python -m infra.local.events start|stop|run|reconcile
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra.deploy import templates
from infra.local import processes
from infra.local import s3 as local_s3
from infra.local.settings import REGION, Settings, from_env

#: A function's handler as Lambda calls it: ``handler(event, context)``.
Handler = Callable[[dict[str, Any], Any], object]

log = logging.getLogger("voucher_selection.events")


def _client(settings: Settings, service: str) -> Any:
    return local_s3.client(settings.endpoint_url, service)


def ensure_upload_queue(settings: Settings) -> str:
    """Create the upload queue, its dead-letter queue and the raw bucket's notification to it;
    idempotent. Returns the queue URL."""
    sqs = _client(settings, "sqs")
    dlq_url = sqs.create_queue(QueueName=f"{settings.upload_queue}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    redrive = {
        "deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"],
        "maxReceiveCount": str(settings.max_receive_count),
    }
    url: str = sqs.create_queue(QueueName=settings.upload_queue)["QueueUrl"]
    sqs.set_queue_attributes(
        QueueUrl=url,
        Attributes={
            "RedrivePolicy": json.dumps(redrive),
            "VisibilityTimeout": str(settings.visibility_timeout_s),
        },
    )
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    _client(settings, "s3").put_bucket_notification_configuration(
        Bucket=settings.raw_bucket, NotificationConfiguration=upload_notification(arn["QueueArn"])
    )
    return url


def upload_notification(queue_arn: str) -> dict[str, Any]:
    """The raw bucket's notification as the storage template defines it (its one source), in
    the S3 API's terms, to the queue ``queue_arn``."""
    bucket = templates.load(templates.path("storage"))["Resources"]["RawBucket"]
    return {
        "QueueConfigurations": [
            {
                "Id": f"uploads-{n}",
                "QueueArn": queue_arn,
                "Events": [declared["Event"]],
                "Filter": {
                    "Key": {
                        "FilterRules": [
                            {"Name": rule["Name"], "Value": rule["Value"]}
                            for rule in declared["Filter"]["S3Key"]["Rules"]
                        ]
                    }
                },
            }
            for n, declared in enumerate(
                bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
            )
        ]
    }


def lambda_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda's SQS event source hands a function for ``messages``."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


def scheduled_event(when: datetime | None = None) -> dict[str, Any]:
    """The event EventBridge's schedule hands a function."""
    moment = (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": moment,
        "region": REGION,
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/reconcile"],
        "detail": {},
    }


class Pump:
    """Long-polls the upload queue and hands each batch to ``handler(event, context)``; every
    ``reconcile_s`` seconds, invokes ``reconcile(event, context)`` with a scheduled event."""

    def __init__(
        self,
        settings: Settings,
        handler: Handler,
        batch_size: int = 1,
        wait_s: int = 1,
        reconcile: Handler | None = None,
        reconcile_s: float = 60,
    ):
        self.reconcile = reconcile
        self.reconcile_s = reconcile_s
        self._next_tick = time.monotonic()
        self.sqs = _client(settings, "sqs")
        self.url = self.sqs.get_queue_url(QueueName=settings.upload_queue)["QueueUrl"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])
        self.arn = attributes["Attributes"]["QueueArn"]
        self.handler = handler
        self.batch_size = batch_size
        self.wait_s = wait_s

    def poll_once(self) -> int:
        """Receive one batch and invoke the handler; return how many messages it took."""
        messages = self.sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=self.wait_s,
            AttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        try:
            self.handler(lambda_event(messages, self.arn), None)
        except Exception as exc:  # as Lambda would: the batch stays queued and comes back later
            log.error("handler failed, %d message(s) left on the queue: %s", len(messages), exc)
            return 0
        self.sqs.delete_message_batch(
            QueueUrl=self.url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)
            ],
        )
        return len(messages)

    def tick_if_due(self) -> bool:
        """Invoke the scheduled handler if its period has passed; whether it was invoked."""
        if self.reconcile is None or time.monotonic() < self._next_tick:
            return False
        self._next_tick = time.monotonic() + self.reconcile_s
        try:
            self.reconcile(scheduled_event(), None)
        except Exception as exc:  # as Lambda would: logged, the next tick comes all the same
            log.error("scheduled handler failed: %s", exc)
        return True

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.tick_if_due()
            self.poll_once()


def _pid_file(settings: Settings) -> Path:
    return settings.state_dir / "pump.pid"


def start(settings: Settings) -> int:
    """Start the pump as a background process (reusing a running one); return its PID."""
    pid_file = _pid_file(settings)
    if pid_file.exists() and processes.alive(int(pid_file.read_text())):
        return int(pid_file.read_text())
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.state_dir / "pump.log", "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.local.events", "run"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **settings.env()},
            start_new_session=True,
        )
    pid_file.write_text(str(process.pid))
    return process.pid


def stop(settings: Settings) -> bool:
    """Stop the background pump this checkout started; return whether one was running."""
    pid_file = _pid_file(settings)
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    pid_file.unlink()
    if not processes.alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    for _ in range(50):
        if not processes.alive(pid):
            break
        time.sleep(0.1)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "run", "reconcile"])
    args = parser.parse_args(argv)
    settings = from_env()
    if args.command in ("start", "run"):  # the jobs it launches register where they can
        from infra.local import catalog

        settings = catalog.usable(settings)[0]
    if args.command == "start":
        print(
            f"pump       running          pid {start(settings)}, log {settings.state_dir}/pump.log"
        )
    elif args.command == "stop":
        print("pump       " + ("stopped" if stop(settings) else "not running"))
    elif args.command == "reconcile":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        os.environ.update(settings.env())
        from chalicelib import reconciler

        print(json.dumps(reconciler.handle(), indent=2))
    else:
        # No level here: the app sets its own when it loads (INFO), as in Lambda.
        logging.basicConfig(format="%(asctime)s %(name)s %(message)s")
        os.environ.update(settings.env())
        from app import on_upload, reconcile

        stopping = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        period = float(os.environ.get("RECONCILE_SECONDS") or 60)
        log.info("pump: polling %s, reconciling every %.0f s", settings.upload_queue, period)
        Pump(settings, on_upload, reconcile=reconcile, reconcile_s=period).run(stopping)
    return 0


if __name__ == "__main__":
    sys.exit(main())
