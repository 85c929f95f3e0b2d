"""Glue's job state changes (EventBridge): a job run that ended without recording its outcome
fails its run, with Glue's state and message.

A job that fails records its own error before it exits; Glue's event for it then changes
nothing. The event matters when the job could not record anything: killed for memory, a lost
worker, the job's timeout, a ``StopJobRun``, a failure before the script ran.
"""

from __future__ import annotations

import logging
from typing import Any

from chalicelib import logs, metrics, runs
from chalicelib.db import Connection

log = logging.getLogger(__name__)

#: Glue's final states; SUCCEEDED too, for a job run that exited cleanly but recorded nothing.
FINAL_STATES = ("SUCCEEDED", "FAILED", "TIMEOUT", "STOPPED", "ERROR")


def pattern(job_name: str) -> dict[str, Any]:
    """The EventBridge pattern of the job's final state changes."""
    return {
        "source": ["aws.glue"],
        "detail-type": ["Glue Job State Change"],
        "detail": {"jobName": [job_name], "state": list(FINAL_STATES)},
    }


def error_of(detail: dict[str, Any]) -> str:
    state, job_run_id = detail.get("state"), detail.get("jobRunId")
    message = (detail.get("message") or "").strip() or "no message"
    return f"the Glue job run {job_run_id} ended {state} without recording an outcome: {message}"


def fail_unrecorded(conn: Connection, detail: dict[str, Any]) -> str | None:
    """Fail the unfinished run of the event's job run; return its id (``None``: nothing to do)."""
    state, job_run_id = detail.get("state"), detail.get("jobRunId")
    if state not in FINAL_STATES or not job_run_id:
        return None
    failed = runs.fail_job_run(conn, job_run_id, error_of(detail))
    if failed:
        log.error("run %s failed: %s", failed, error_of(detail), extra=logs.run(failed))
    elif state != "SUCCEEDED":  # the job recorded its failure itself: count the failure here
        metrics.run_failed(job_run_id, f"glue {state}")
    return failed


def report(conn: Connection, detail: dict[str, Any]) -> str | None:
    """Fail the event's run if its job left it unfinished (:func:`fail_unrecorded`), then count
    how its run ended and how long it took (the dashboard's runs, the run-duration alarm)."""
    failed = fail_unrecorded(conn, detail)
    ended = runs.ended(conn, detail.get("jobRunId") or "")
    if ended:
        metrics.run_ended(*ended)
    return failed


def handle(detail: dict[str, Any]) -> str | None:
    """The EventBridge handler's work, on a connection of its own."""
    from chalicelib import db

    return db.with_connection(report, detail, application_name="voucher-selection-jobs")
