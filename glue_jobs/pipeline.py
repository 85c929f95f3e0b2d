"""One run of the voucher selection: read, clean, segment, select, write, publish.

The steps are the pure functions of :mod:`glue_jobs.transforms`; this module wires them to the
lake and the database, records the run, and reports progress. Only the tiny results of the one
aggregation pass reach the driver.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from chalicelib import db, rules, runs
from glue_jobs import transforms as t
from glue_jobs.lake_io import Lake, describe_source
from glue_jobs.selection import result_from_tally

log = logging.getLogger("voucher_selection")


@dataclass(frozen=True)
class JobOptions:
    source: str
    countries: str
    run_id: str
    curated_location: str
    rejected_location: str


def configure(spark: SparkSession) -> None:
    """Session settings the rules rely on, the same on Glue and in local mode."""
    spark.conf.set("spark.sql.session.timeZone", "UTC")  # dates of timestamps are UTC dates
    spark.conf.set("spark.sql.ansi.enabled", "false")  # unparseable text becomes null, not an error
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")  # rerun = same files


def build_result(tallied: DataFrame, rows_read: int) -> runs.RunResult:
    """Collect the tally (a few hundred rows whatever the input) and reduce it on the driver."""
    return result_from_tally((row.asDict() for row in tallied.collect()), rows_read)


def transform(spark: SparkSession, lake: Lake, options: JobOptions) -> runs.RunResult:
    """Read, classify and write the lake outputs; return the run's statistics and selections."""
    country_keys = rules.requested_country_keys(options.countries)
    raw = t.check_input(lake.read_parquet(options.source))
    rows_read = raw.count()  # parquet footers only: no column is read
    log.info("read %s rows from %s", f"{rows_read:,}", options.source)

    segmented = t.assign_segments(t.classify(t.select_in_scope(raw, country_keys)))
    segmented = segmented.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        result = build_result(t.tally(segmented), rows_read)
        log.info(
            "cleaned and segmented %s in-scope rows",
            f"{sum(c.rows_in for c in result.countries):,}",
        )
        run = F.lit(options.run_id).alias("run_id")
        lake.write_parquet(
            t.kept_rows(segmented).select(run, "*"), options.curated_location, ["run_id", "country"]
        )
        lake.write_parquet(
            t.rejected_rows(segmented).select(run, "*"),
            options.rejected_location,
            ["run_id", "country"],
        )
        log.info(
            "wrote kept rows to %s and rejected rows to %s",
            options.curated_location,
            options.rejected_location,
        )
    finally:
        segmented.unpersist()
    return result


@dataclass(frozen=True)
class RunOutcome:
    """What a run computed, and the countries it actually published."""

    run_id: str
    result: runs.RunResult
    published: list[str]


def run(spark: SparkSession, options: JobOptions) -> RunOutcome:
    """Record the run, transform, then publish atomically.

    A failure records its error and publishes nothing, so the previous result keeps serving.
    An object already processed for these countries raises ``runs.AlreadyProcessed``.
    """
    configure(spark)
    started = time.monotonic()
    country_keys = rules.requested_country_keys(options.countries)
    conn = db.connect(application_name="voucher-selection-job")
    try:
        runs.start_run(conn, options.run_id, describe_source(options.source), country_keys)
        log.info("run %s started for %s (countries: %s)", options.run_id, options.source,
                 options.countries)  # fmt: skip
        try:
            with Lake(spark) as lake:
                result = transform(spark, lake, options)
            published = runs.publish_run(conn, options.run_id, result)
        except Exception as exc:
            runs.fail_run(conn, options.run_id, error_message(exc))
            raise
        log.info("run %s published %s in %.1f s", options.run_id, ", ".join(published) or "nothing",
                 time.monotonic() - started)  # fmt: skip
        return RunOutcome(options.run_id, result, published)
    finally:
        conn.close()


def error_message(exc: Exception) -> str:
    """A one-line, secret-free description of why a run failed."""
    if isinstance(exc, t.InputError):
        return str(exc)
    first = str(getattr(exc, "java_exception", None) or exc).strip().splitlines()
    return db.redact(f"{type(exc).__name__}: {first[0] if first else ''}"[:1000])
