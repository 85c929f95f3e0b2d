"""Operational metrics as CloudWatch embedded metric format (EMF): one JSON log line each.

In Lambda, CloudWatch Logs turns such a line into a datapoint of namespace ``VoucherSelection``
with the dimension ``Stage`` (the stage's ``STAGE`` variable), and ``Outcome`` where a metric has
one; anywhere else it is just a log line. The app stack's alarms and dashboard watch them
(infra/cloudformation/chalice-overlay.yaml, infra/deploy/app_stack.py).
"""

from __future__ import annotations

import json
import sys
import time

from chalicelib import settings

NAMESPACE = "VoucherSelection"
#: Runs failed or abandoned, whatever the cause (the failed-runs alarm).
FAILED_RUNS = "FailedRuns"
#: Objects created under incoming/ that the upload handler took (one per object).
UPLOADS = "Uploads"
#: Glue job runs ended, by ``Outcome`` (the run's status: succeeded, failed).
RUNS = "Runs"
#: Seconds from a run's start to its end (the run-duration alarm learns what is usual).
RUN_DURATION = "RunDuration"
#: The outcomes ``Runs`` is split by.
OUTCOMES = ("succeeded", "failed")


def emit(
    name: str,
    value: float = 1,
    unit: str = "Count",
    dimensions: dict[str, str] | None = None,
    **properties: str,
) -> None:
    """Print one datapoint of ``name``, by stage and ``dimensions``, with ``properties`` as
    searchable fields."""
    stage = settings.STAGE.read()
    line = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Stage", *(dimensions or {})]],
                    "Metrics": [{"Name": name, "Unit": unit}],
                }
            ],
        },
        "Stage": stage,
        **(dimensions or {}),
        name: value,
        **properties,
    }
    print(json.dumps(line, separators=(",", ":")), file=sys.stdout, flush=True)


def run_failed(run_id: str, cause: str) -> None:
    emit(FAILED_RUNS, run_id=run_id, cause=cause)


def upload_received(uri: str) -> None:
    emit(UPLOADS, uri=uri)


def run_ended(run_id: str, outcome: str, seconds: float | None) -> None:
    """A job run's end, as Glue reported it: its run's outcome and, when it started, duration."""
    emit(RUNS, dimensions={"Outcome": outcome}, run_id=run_id)
    if seconds is not None:
        emit(RUN_DURATION, round(seconds, 3), unit="Seconds", run_id=run_id)
