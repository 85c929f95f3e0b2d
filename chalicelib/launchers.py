"""How a queued run's job is started: one small interface, two implementations.

``glue`` (the cloud) calls ``glue.start_job_run``; ``local`` runs the very same Glue script in
Spark local mode as a detached process, its output in ``JOB_LOG_DIR``. ``JOB_LAUNCHER`` selects.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Protocol


class Launcher(Protocol):
    def start(self, run_id: str, source: str, countries: str) -> None:
        """Start the job for ``source``; return once it is started, not finished."""


def job_arguments(run_id: str, source: str, countries: str) -> dict[str, str]:
    return {"--source": source, "--run_id": run_id, "--countries": countries}


class GlueLauncher:
    def __init__(self, job_name: str):
        self.job_name = job_name

    def start(self, run_id: str, source: str, countries: str) -> None:
        import boto3  # lazily: never at import time

        boto3.client("glue").start_job_run(
            JobName=self.job_name, Arguments=job_arguments(run_id, source, countries)
        )


class LocalLauncher:
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir

    def start(self, run_id: str, source: str, countries: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        args = [a for pair in job_arguments(run_id, source, countries).items() for a in pair]
        with open(self.log_dir / f"{run_id}.log", "ab") as log:
            subprocess.Popen(
                [sys.executable, "-m", "glue_jobs.voucher_selection_job", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # like a Glue run, it outlives the handler
            )


def from_env(env: dict | None = None) -> Launcher:
    env = os.environ if env is None else env
    kind = env.get("JOB_LAUNCHER", "glue")
    if kind == "glue":
        return GlueLauncher(env["GLUE_JOB_NAME"])
    if kind == "local":
        return LocalLauncher(Path(env.get("JOB_LOG_DIR", ".state/runs")))
    raise ValueError(f"JOB_LAUNCHER must be glue or local, not {kind!r}")
