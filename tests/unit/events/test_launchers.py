"""Starting jobs: what counts as a lack of capacity (a run that waits) rather than a failure, and
the local launcher's limit on jobs at once, as Glue's ``MaxConcurrentRuns`` limits a job."""

from __future__ import annotations

import subprocess
import sys

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from chalicelib import launchers


def refusal(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "no"}}, "StartJobRun")


@pytest.mark.parametrize("code", sorted(launchers.CAPACITY_ERRORS))
def test_capacity_refusals_make_a_run_wait(code):
    assert launchers.lacks_capacity(refusal(code))


@pytest.mark.parametrize(
    "error",
    [
        refusal("EntityNotFoundException"),
        refusal("AccessDeniedException"),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        OSError("the log folder is a file"),
    ],
)
def test_other_start_errors_are_failed_starts(error):
    assert not launchers.lacks_capacity(error)


def test_the_local_launcher_starts_no_more_jobs_than_allowed(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        slots = tmp_path / "slots"
        slots.mkdir()
        (slots / str(sleeper.pid)).touch()  # a supervised job is running
        (slots / "999999999").touch()  # one that ended: its slot is free again
        (slots / "20261207T040642Z-24b4af25").touch()  # not a slot: cleared
        launcher = launchers.LocalLauncher(tmp_path, max_concurrent=1)
        with pytest.raises(launchers.NoCapacity, match="1 local job"):
            launcher.start("run-1", "s3://raw/incoming/a.parquet", "Peru")
        assert launchers.lacks_capacity(launchers.NoCapacity("full"))
        assert sorted(p.name for p in slots.iterdir()) == [str(sleeper.pid)]
        assert not launcher.state(f"pid {sleeper.pid}").ended
    finally:
        sleeper.kill()
        sleeper.wait()
    ended = launcher.state(f"pid {sleeper.pid}")
    assert ended.ended and f"pid {sleeper.pid}" in ended.text
