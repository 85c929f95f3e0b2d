"""The Glue job: arguments and session, then :func:`glue_jobs.pipeline.run`.

On AWS Glue 5.0 (a run Glue started: it passes ``--JOB_RUN_ID``) arguments come through
``getResolvedOptions`` and the session from a GlueContext; anywhere else, even where the
``awsglue`` library is importable (AWS's AWSGlueDataplanePython), the same argument names are
parsed with argparse and a local session is started (:mod:`glue_jobs.session`)::

    python -m glue_jobs.voucher_selection_job --source s3://voucher-raw/incoming/history.parquet \\
        --countries Peru,Latvia
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Mapping
from typing import TypeVar

from pyspark.sql import SparkSession

from chalicelib import logs, runs, settings
from chalicelib.rules import DEFAULT_COUNTRIES
from glue_jobs import session
from glue_jobs.pipeline import JobOptions, RunOutcome, run
from glue_jobs.summary import format_summary

log = logging.getLogger("voucher_selection")
T = TypeVar("T")
#: Job arguments: name -> (default, help). ``None`` marks the required one; an empty default
#: stands for a setting (``chalicelib.settings``) read when the options are made.
ARGUMENTS: dict[str, tuple[str | None, str]] = {
    "source": (None, "s3://bucket/key, s3://bucket/prefix/ or a local path of parquet input"),
    "countries": (
        ",".join(DEFAULT_COUNTRIES),
        f"{','.join(DEFAULT_COUNTRIES)} (default), all, or a list such as Peru,Latvia",
    ),
    "run_id": ("", "the run's id (default: a new one from the time)"),
    "curated_location": ("", "where kept rows are written (default: s3://$LAKE_BUCKET/curated/)"),
    "rejected_location": (
        "",
        "where rejected rows are written (default: s3://$LAKE_BUCKET/rejected/)",
    ),
    "db_host": ("", "database host (the job logs in as the writer role with an IAM token)"),
    "db_port": ("", "database port (with --db_host)"),
    "db_name": ("", "database name (with --db_host)"),
    "run_lease_seconds": (
        "",
        "seconds a run may go without a heartbeat before it counts as abandoned (default:"
        " RUN_LEASE_SECONDS from the environment, else 300)",
    ),
    "min_segment_rows": (
        "",
        "fewest kept rows a segment needs for its own selection to be served (default:"
        " MIN_SEGMENT_ROWS from the environment, else 1)",
    ),
    "catalog_database": (
        "",
        "the Glue Data Catalog database whose lake tables get the run's partitions (default:"
        " CATALOG_DATABASE from the environment, else none)",
    ),
}


def on_glue(argv: list[str]) -> bool:
    """Whether Glue started this run: it passes ``--JOB_RUN_ID`` (with ``--JOB_ID`` and
    ``--JOB_NAME``) to every job run; nothing else does."""
    return "--JOB_RUN_ID" in argv


def parse_args(argv: list[str]) -> dict[str, str]:
    """Job arguments with their defaults, the Glue way when Glue started the run.

    ``getResolvedOptions`` makes every option it is asked for required: it is asked only for
    the ones given (and ``JOB_NAME``), the others take their defaults.
    """
    if not on_glue(argv):
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        for name, (default, text) in ARGUMENTS.items():
            parser.add_argument(f"--{name}", default=default, required=default is None, help=text)
        return vars(parser.parse_args(argv[1:]))
    from awsglue.utils import getResolvedOptions

    given = [n for n, (default, _) in ARGUMENTS.items() if default is None or f"--{n}" in argv]
    resolved: dict[str, str] = getResolvedOptions(argv, ["JOB_NAME", *given])  # JOB_RUN_ID included
    # The required ones (no default) are among those resolved: each argument has a value.
    return {n: default for n, (default, _) in ARGUMENTS.items() if default is not None} | resolved


#: Arguments that stand for a database setting (``--db_host``: ``DB_HOST``).
DATABASE_ARGUMENTS = ("db_host", "db_port", "db_name")


def options_from(args: dict[str, str], env: Mapping[str, str] | None = None) -> JobOptions:
    """JobOptions from parsed arguments; an argument standing for a setting wins over its
    variable in ``env`` (the process's environment by default), which is never written."""
    env = os.environ if env is None else env

    def setting(variable: settings.Setting[T], argument: str) -> T:
        return variable.value_of(args.get(argument) or env.get(variable.name))

    lake = settings.LAKE_BUCKET.read(env)
    database = {n.upper(): args[n] for n in DATABASE_ARGUMENTS if args.get(n)}
    return JobOptions(
        job_run_id=args.get("JOB_RUN_ID") or f"pid {os.getpid()}",
        source=args["source"],
        countries=args["countries"],
        run_id=args["run_id"] or runs.new_run_id(),
        curated_location=args["curated_location"] or f"s3://{lake}/curated/",
        rejected_location=args["rejected_location"] or f"s3://{lake}/rejected/",
        catalog_database=setting(settings.CATALOG_DATABASE, "catalog_database"),
        min_segment_rows=setting(settings.MIN_SEGMENT_ROWS, "min_segment_rows"),
        lease_s=setting(settings.RUN_LEASE_SECONDS, "run_lease_seconds"),
        database={**env, **database} if database else None,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv if argv is None else argv
    logs.configure()  # JSON lines at INFO, each with the run's id
    args = parse_args(argv)
    options = options_from(args)
    with logs.about_run(options.run_id):
        if not on_glue(argv):
            outcome = _run_once(session.local(), options)
        else:
            with session.glue_job(args) as spark:
                outcome = _run_once(spark, options)
        if outcome and on_glue(argv):
            log.info("run summary\n%s", format_summary(outcome))
        elif outcome:  # a run asked for here: the summary for the person who asked
            print(format_summary(outcome), flush=True)
    return 0


#: Why a job run may find nothing to do: not an error. S3 repeats events; an object overwritten
#: before its run started is run by its newer version's event (the run's record says so); a job
#: started twice for one run leaves it to the job run that took it.
NOTHING_TO_DO = (
    runs.AlreadyProcessed,
    runs.ObjectChanged,
    runs.AlreadyRunning,
    runs.AlreadyFinished,
)


def _run_once(spark: SparkSession, options: JobOptions) -> RunOutcome | None:
    """Run, or say why there is nothing to do."""
    try:
        return run(spark, options)
    except NOTHING_TO_DO as done:
        log.info("%s: %s; nothing to do", options.source, done)
        return None


if __name__ == "__main__":
    # Stopped (Glue's StopJobRun, a supervisor): unwind, so the run records why it ended.
    signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(128 + signum))
    sys.exit(main())
