"""How a queued run's job is started, and how a started one is doing: one small interface, two
implementations.

``glue`` (the cloud) calls ``glue.start_job_run`` and ``glue.get_job_run``; ``local`` runs the
very same Glue script in Spark local mode as a detached process, its output in ``JOB_LOG_DIR``,
at most ``LOCAL_MAX_CONCURRENT_RUNS`` at once (0: no limit), as Glue's ``MaxConcurrentRuns``
limits a job. ``JOB_LAUNCHER`` selects.

A start refused for capacity (:func:`lacks_capacity`: Glue's concurrent-runs limit, throttling)
is not a failure: the run stays queued and the reconciler starts it when capacity frees.

Locally the job runs under a supervisor (``python -m chalicelib.launchers``, this module) that
waits for it and fails its run with the exit status when the job ended without recording an
outcome (killed, out of memory), as Glue's state events do in the cloud.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from chalicelib import settings

JOB_MODULE = "glue_jobs.voucher_selection_job"

#: Error codes of AWS refusing work for lack of capacity, not because the request is wrong:
#: Glue's per-job concurrent-runs limit, account limits, and API throttling.
CAPACITY_ERRORS = frozenset(
    {
        "ConcurrentRunsExceededException",
        "ResourceNumberLimitExceededException",
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
    }
)


class NoCapacity(Exception):
    """The job cannot start now: as many runs as allowed are running."""


def lacks_capacity(exc: BaseException) -> bool:
    """Whether a start was refused for lack of capacity (the run waits), not failed."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return isinstance(exc, NoCapacity) or code in CAPACITY_ERRORS


@dataclass(frozen=True)
class JobRunState:
    """How a started job run is doing: still to begin (or begun), or ended, in words."""

    ended: bool
    text: str


class Launcher(Protocol):
    def start(self, run_id: str, source: str, countries: str) -> str | None:
        """Start the job for ``source``; return once it is started, not finished, with the id
        of the job run executing it (``None``: recorded by the job run itself)."""

    def state(self, job_run_id: str) -> JobRunState:
        """How job run ``job_run_id`` is doing."""


def job_arguments(run_id: str, source: str, countries: str) -> dict[str, str]:
    return {"--source": source, "--run_id": run_id, "--countries": countries}


#: Glue states of a job run that has not ended (WAITING: Glue's job run queue holds it).
_GLUE_PENDING = ("STARTING", "RUNNING", "WAITING", "STOPPING")


class GlueLauncher:
    def __init__(self, job_name: str):
        self.job_name = job_name
        self._client: Any = None  # boto3's Glue client (boto3 ships no type information)

    @property
    def glue(self) -> Any:
        if self._client is None:
            import boto3  # lazily: never at import time
            from botocore.config import Config

            # A start answers in a second or is refused. It is never retried here (a retry after
            # a timeout may start a second job run; the reconciler retries, and a second job run
            # leaves the run to the first), and a hanging endpoint cannot outlive the handler.
            self._client = boto3.client(
                "glue",
                config=Config(
                    connect_timeout=3,
                    read_timeout=15,
                    retries={"mode": "standard", "total_max_attempts": 1},
                ),
            )
        return self._client

    def start(self, run_id: str, source: str, countries: str) -> str | None:
        started = self.glue.start_job_run(
            JobName=self.job_name, Arguments=job_arguments(run_id, source, countries)
        )
        job_run_id: str = started["JobRunId"]
        return job_run_id

    def state(self, job_run_id: str) -> JobRunState:
        run = self.glue.get_job_run(JobName=self.job_name, RunId=job_run_id)["JobRun"]
        state = run["JobRunState"]
        if state == "WAITING":
            return JobRunState(False, f"Glue's job run queue holds job run {job_run_id} (WAITING)")
        if state in _GLUE_PENDING:
            return JobRunState(False, f"job run {job_run_id} is {state}")
        message = (run.get("ErrorMessage") or "").strip() or "no message"
        return JobRunState(
            True,
            f"the Glue job run {job_run_id} ended {state} without recording an outcome: {message}",
        )


class LocalLauncher:
    def __init__(self, log_dir: Path, max_concurrent: int = 0):
        self.log_dir = log_dir
        self.max_concurrent = max_concurrent

    def start(self, run_id: str, source: str, countries: str) -> str | None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self._slots() as live:
            if self.max_concurrent and live >= self.max_concurrent:
                raise NoCapacity(
                    f"{live} local job(s) running, the most LOCAL_MAX_CONCURRENT_RUNS allows"
                )
            self._spawn(run_id, source, countries)
        return None  # the supervisor records the job's pid once it has one

    def state(self, job_run_id: str) -> JobRunState:
        pid = int(job_run_id.removeprefix("pid "))
        if alive(pid):
            return JobRunState(False, f"the job process (pid {pid}) is starting")
        return JobRunState(True, f"the job process (pid {pid}) ended without recording an outcome")

    @contextlib.contextmanager
    def _slots(self) -> Iterator[int]:
        """The number of supervised jobs alive, counted under a lock held while one starts."""
        slots = self.log_dir / "slots"
        slots.mkdir(exist_ok=True)
        with open(self.log_dir / "slots.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            live = 0
            for slot in slots.iterdir():  # one file a supervisor, named by its pid
                if slot.name.isdigit() and alive(int(slot.name)):
                    live += 1
                else:
                    slot.unlink(missing_ok=True)
            yield live

    def _spawn(self, run_id: str, source: str, countries: str) -> None:
        args = [a for pair in job_arguments(run_id, source, countries).items() for a in pair]
        with open(self.log_dir / f"{run_id}.log", "ab") as log:
            supervisor = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    __name__,
                    run_id,
                    "--",
                    sys.executable,
                    "-m",
                    JOB_MODULE,
                    *args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # like a Glue run, it outlives the handler
            )
        (self.log_dir / "slots" / str(supervisor.pid)).touch()


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie has ended: it is reaped when it is our child)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def from_env(env: Mapping[str, str] | None = None) -> Launcher:
    if settings.JOB_LAUNCHER.read(env) == "glue":
        return GlueLauncher(settings.GLUE_JOB_NAME.read(env))
    return LocalLauncher(
        Path(settings.JOB_LOG_DIR.read(env)), settings.LOCAL_MAX_CONCURRENT_RUNS.read(env)
    )


def exit_text(status: int) -> str:
    """How a process ended, from ``Popen.returncode``."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"was killed by {name}"
    return f"exited with status {status}"


def supervise(run_id: str, command: list[str]) -> int:
    """Run the job, then fail its run if the job ended without recording an outcome."""
    from chalicelib import db, runs

    job = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    job_run_id = f"pid {job.pid}"
    db.with_connection(
        runs.set_job_run, run_id, job_run_id, f"the job process ({job_run_id}) started"
    )
    status = job.wait()
    message = f"the job process ({job_run_id}) {exit_text(status)} without recording an outcome"
    if db.with_connection(runs.fail_unfinished, run_id, message, job_run_id):
        print(f"run {run_id} failed: {message}", flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run a local job and watch how it ends")
    parser.add_argument("run_id")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the job's command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return supervise(args.run_id, command)


if __name__ == "__main__":
    sys.exit(main())
