"""A run's statuses and who asks for runs: the one source of these names for Python, the SQL
that filters on them and the OpenAPI document (``tests/stack/api/test_statuses.py`` holds them
to it).

A run goes ``waiting`` (a dataset folder until its marker or a quiet period) -> ``queued`` (its
job asked for, not yet running) -> ``running`` (the job) -> ``succeeded`` | ``failed``.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class RunStatus(StrEnum):
    """A run's status, in the order a run goes through them (the ``runs`` table's check)."""

    WAITING = "waiting"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RequestedBy(StrEnum):
    """Who asked for a run: an upload's event (once per object version) or a person."""

    EVENT = "event"
    MANUAL = "manual"


#: Every status, in order.
RUN_STATUSES = tuple(RunStatus)
#: Runs not finished yet: they may still change status.
LIVE = (RunStatus.WAITING, RunStatus.QUEUED, RunStatus.RUNNING)
#: Outcomes: a finished run never changes status (the database's ``runs_fence``).
FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED)
#: Runs that have a job asked for or running: what a job run may leave unfinished.
WITH_JOB = (RunStatus.QUEUED, RunStatus.RUNNING)
#: Runs that read (or will read) the object version they name and are not failed: such a run
#: accounts for its version, so another run of it is a repeat.
CLAIMING = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.SUCCEEDED)


def sql_list(statuses: Iterable[RunStatus]) -> str:
    """``('a', 'b')``: a status set as a SQL list (constants of the enum, never input)."""
    return "(" + ", ".join(f"'{s.value}'" for s in statuses) + ")"
