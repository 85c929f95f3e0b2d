"""Run records: one concern a module, their verbs gathered here (``runs.take_in``, ...).

- ``status``: a run's statuses (``RunStatus``) and who asks for runs (``RequestedBy``);
- ``model``: what a run names and computes (its source, statistics, selections, usage);
- ``arrivals``: an uploaded object or dataset folder becoming a run, once per version;
- ``starts``: queued and waiting runs as the reconciler starts them;
- ``lifecycle``: the claim, the lease the job's heartbeat renews, and failing;
- ``publish``: the atomic publish of a run's results;
- ``changes``: what a run changed against the results it replaced;
- ``errors``: why a run cannot start or publish; ``sql``: the SQL these modules share.

A run goes ``waiting`` -> ``queued`` -> ``running`` -> ``succeeded`` | ``failed``. A run
started by hand (``requested_by = 'manual'``) is inserted as it starts and is never
deduplicated; event runs are once per object.
"""

from chalicelib.runs.arrivals import (
    Waiting,
    accounted_for,
    accounted_keys,
    dataset_waiting,
    take_in,
    take_in_dataset,
    wait_for_dataset,
)
from chalicelib.runs.changes import FALLBACK_KEY, SegmentKey, changes_of
from chalicelib.runs.errors import (
    AlreadyFinished,
    AlreadyProcessed,
    AlreadyRunning,
    NotRunning,
    ObjectChanged,
)
from chalicelib.runs.lifecycle import (
    ended,
    fail_job_run,
    fail_run,
    fail_unfinished,
    reap_abandoned,
    renew_lease,
    start_run,
)
from chalicelib.runs.model import (
    RESULT_TABLES,
    USAGE_TOP_AMOUNTS,
    AmountUsage,
    Choice,
    CountryStats,
    Fallback,
    RunResult,
    Selection,
    SelectionChange,
    Source,
    new_run_id,
)
from chalicelib.runs.publish import publish_run, serving
from chalicelib.runs.starts import (
    Unstarted,
    due_to_start,
    set_job_run,
    start_put_off,
    starting,
    waiting_datasets,
)
from chalicelib.runs.status import RUN_STATUSES, RequestedBy, RunStatus

__all__ = [
    "FALLBACK_KEY",
    "RESULT_TABLES",
    "RUN_STATUSES",
    "USAGE_TOP_AMOUNTS",
    "AlreadyFinished",
    "AlreadyProcessed",
    "AlreadyRunning",
    "AmountUsage",
    "Choice",
    "CountryStats",
    "Fallback",
    "NotRunning",
    "ObjectChanged",
    "RequestedBy",
    "RunResult",
    "RunStatus",
    "SegmentKey",
    "Selection",
    "SelectionChange",
    "Source",
    "Unstarted",
    "Waiting",
    "accounted_for",
    "accounted_keys",
    "changes_of",
    "dataset_waiting",
    "due_to_start",
    "ended",
    "fail_job_run",
    "fail_run",
    "fail_unfinished",
    "new_run_id",
    "publish_run",
    "reap_abandoned",
    "renew_lease",
    "serving",
    "set_job_run",
    "start_put_off",
    "start_run",
    "starting",
    "take_in",
    "take_in_dataset",
    "wait_for_dataset",
    "waiting_datasets",
]
