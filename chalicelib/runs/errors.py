"""Why a run cannot start, renew its lease or publish: raised by ``lifecycle`` and ``publish``."""

from __future__ import annotations


class AlreadyProcessed(Exception):
    """The object was already processed (or is being processed) for these countries."""

    def __init__(self, run_id: str):
        super().__init__(f"already processed by run {run_id}")
        self.run_id = run_id


class ObjectChanged(Exception):
    """The object was overwritten after its upload event queued this run: the version the run
    was queued for is gone (the newer version's own event runs the key)."""

    def __init__(self, queued_etag: str, etag: str):
        super().__init__(
            f"superseded by a newer upload: the run was queued for ETag {queued_etag}, the object"
            f" now has ETag {etag} (its own upload event runs it)"
        )


class NotRunning(Exception):
    """A run asked to start, renew its lease or publish is not (or no longer) running: it
    finished, or its lease ran out, which fails it for good (the database's ``runs_fence``)."""

    def __init__(self, run_id: str, status: str):
        super().__init__(f"run {run_id} is {status}, not running: its result is not published")


class AlreadyFinished(Exception):
    """A job run started for a run that already has its outcome (started twice, or retried
    after the run failed for good): it has nothing to do."""

    def __init__(self, run_id: str, status: str):
        super().__init__(f"run {run_id} already {status}")


class AlreadyRunning(Exception):
    """Another job run executes this run: its job was started twice (a start the handler could
    not confirm, started again by the reconciler). The later one leaves it to the first."""

    def __init__(self, run_id: str, job_run_id: str | None):
        super().__init__(f"run {run_id} is already being run by job run {job_run_id}")
