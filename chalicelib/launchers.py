"""How a queued run's job is started: one small interface, two implementations.

``glue`` (the cloud) calls ``glue.start_job_run``; ``local`` runs the very same Glue script in
Spark local mode as a detached process, its output in ``JOB_LOG_DIR``. ``JOB_LAUNCHER`` selects.

Locally the job runs under a supervisor (``python -m chalicelib.launchers``, this module) that
waits for it and fails its run with the exit status when the job ended without recording an
outcome (killed, out of memory), as Glue's state events do in the cloud.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

JOB_MODULE = "glue_jobs.voucher_selection_job"


class Launcher(Protocol):
    def start(self, run_id: str, source: str, countries: str) -> str | None:
        """Start the job for ``source``; return once it is started, not finished, with the id
        of the job run executing it."""


def job_arguments(run_id: str, source: str, countries: str) -> dict[str, str]:
    return {"--source": source, "--run_id": run_id, "--countries": countries}


class GlueLauncher:
    def __init__(self, job_name: str):
        self.job_name = job_name

    def start(self, run_id: str, source: str, countries: str) -> str | None:
        import boto3  # lazily: never at import time

        started = boto3.client("glue").start_job_run(
            JobName=self.job_name, Arguments=job_arguments(run_id, source, countries)
        )
        return started["JobRunId"]


class LocalLauncher:
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir

    def start(self, run_id: str, source: str, countries: str) -> str | None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        args = [a for pair in job_arguments(run_id, source, countries).items() for a in pair]
        with open(self.log_dir / f"{run_id}.log", "ab") as log:
            subprocess.Popen(
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
        return None  # the supervisor records the job's pid once it has one


def from_env(env: Mapping[str, str] | None = None) -> Launcher:
    env = os.environ if env is None else env
    kind = env.get("JOB_LAUNCHER", "glue")
    if kind == "glue":
        return GlueLauncher(env["GLUE_JOB_NAME"])
    if kind == "local":
        return LocalLauncher(Path(env.get("JOB_LOG_DIR", ".state/runs")))
    raise ValueError(f"JOB_LAUNCHER must be glue or local, not {kind!r}")


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
    db.with_connection(runs.set_job_run, run_id, f"pid {job.pid}")
    status = job.wait()
    message = f"the job process (pid {job.pid}) {exit_text(status)} without recording an outcome"
    if db.with_connection(runs.fail_unfinished, run_id, message):
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
