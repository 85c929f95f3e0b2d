"""One run of the voucher selection: read, clean, segment, select, write, publish.

The steps are the pure functions of :mod:`glue_jobs.transforms`; this module wires them to the
lake and the database, records the run, and reports progress. Only tiny results reach the driver:
the repeated row hashes stay in Spark, the tally is a few hundred rows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import psycopg2
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from chalicelib import db, rules, runs
from chalicelib.api.errors import shown
from glue_jobs import transforms as t
from glue_jobs.lake_io import Lake, cause_text, describe_source
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
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")  # not legacy INT96
    # Country keys name the outputs' folders: read back as the text they were, never as numbers.
    spark.conf.set("spark.sql.sources.partitionColumnTypeInference.enabled", "false")


#: How both lake outputs are partitioned.
PARTITIONS = ["run_id", "country_key"]


def build_result(tallied: DataFrame, rows_read: int) -> runs.RunResult:
    """Collect the tally (a few hundred rows whatever the input) and reduce it on the driver."""
    return result_from_tally((row.asDict() for row in tallied.collect()), rows_read)


def check_country_names(scoped: DataFrame, widest: int | None) -> None:
    """Fail, before anything is written, on a country name too long to name its lake folder.

    ``widest`` is the most bytes any ``country_code`` has: a key has at most as many characters,
    so the keys themselves are only looked at when some text is that long.
    """
    if (widest or 0) <= rules.MAX_COUNTRY_CHARS:
        return
    too_long = scoped.where(F.length("country_key") > rules.MAX_COUNTRY_CHARS)
    names = [r[0] for r in too_long.select(F.initcap("country_key")).distinct().limit(5).collect()]
    if not names:
        return
    raise t.InputError(
        f"country_code longer than {rules.MAX_COUNTRY_CHARS} characters, too long for a"
        f" country name: {', '.join(shown(name) for name in sorted(names))}"
    )


def transform(spark: SparkSession, lake: Lake, options: JobOptions) -> runs.RunResult:
    """Write the curated and rejected outputs, then count them into the run's statistics.

    Each pass scans the input again instead of caching it (memory is bounded at any size):
    0. the rows read and the widest ``country_code`` (that column alone, no row work);
    1. the row hashes that repeat, and the exact duplicate groups behind them (both tiny);
    2. the curated output and 3. the rejected output, each row's rules evaluated once;
    4. the tally of what the two outputs hold, read back (narrow columns only).
    """
    country_keys = rules.requested_country_keys(options.countries)
    raw = t.check_input(lake.read_parquet(options.source))

    def scoped(seen: Observation | None = None) -> DataFrame:
        return t.select_in_scope(raw, country_keys, seen)

    rows_read, widest = raw.agg(F.count(F.lit(1)), F.max(F.octet_length("country_code"))).first()
    log.info("read %s rows from %s", f"{rows_read:,}", options.source)
    check_country_names(scoped(), widest)
    repeated = t.repeated_hashes(scoped()).cache()
    groups = t.duplicate_groups(scoped(), repeated).cache()
    try:
        duplicated = groups.where(F.col("copies") > 1).count()
        log.info("found %s rows with exact duplicates", f"{duplicated:,}")
        read_again, counted = Observation("read again"), Observation("classified")
        distinct = t.distinct_rows(scoped(read_again), repeated, groups)
        segmented = t.assign_segments(t.classify(distinct, counted))
        run = F.lit(options.run_id).alias("run_id")
        outputs = {
            options.curated_location: t.kept_rows(segmented).select(run, "*"),
            options.rejected_location: t.rejected_rows(segmented).select(run, "*"),
        }
        written = {uri: lake.write_parquet(df, uri, PARTITIONS) for uri, df in outputs.items()}
        if read_again.get["rows"] != rows_read:
            raise t.InputError(
                f"{options.source} changed while the run read it: {rows_read:,} rows, then"
                f" {read_again.get['rows']:,}"
            )
        log.info(
            "wrote %s kept of %s distinct rows to %s and the rejected rows to %s",
            f"{counted.get['kept']:,}", f"{counted.get['rows']:,}",
            options.curated_location, options.rejected_location,
        )  # fmt: skip
        kept, rejected = (
            lake.read_written(f"{written[uri]}/run_id={options.run_id}") or df.limit(0)
            for uri, df in outputs.items()
        )
        result = build_result(t.tally(kept, rejected), rows_read)
        log.info("counted %s in-scope rows", f"{sum(c.rows_in for c in result.countries):,}")
    finally:
        groups.unpersist()
        repeated.unpersist()
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
    An object already processed for these countries raises ``runs.AlreadyProcessed``; one
    overwritten since the run was queued fails the run and raises ``runs.ObjectChanged``.
    """
    configure(spark)
    started = time.monotonic()
    country_keys = rules.requested_country_keys(options.countries)
    source = describe_source(options.source)
    try:
        _in_database(runs.start_run, options.run_id, source, country_keys)
    except runs.ObjectChanged as changed:  # the run ends here: say why in its record
        _record_failure(options.run_id, changed)
        raise
    log.info("run %s started for %s (countries: %s)", options.run_id, options.source,
             options.countries)  # fmt: skip
    try:
        with Lake(spark) as lake:
            result = transform(spark, lake, options)
        published = _in_database(runs.publish_run, options.run_id, result)
    except Exception as exc:
        _record_failure(options.run_id, exc)
        raise
    log.info("run %s published %s in %.1f s", options.run_id, ", ".join(published) or "nothing",
             time.monotonic() - started)  # fmt: skip
    return RunOutcome(options.run_id, result, published)


def _in_database(step, *args):
    """``step(connection, *args)`` on a connection of its own: a run may last hours, and the
    database may restart (or fail over) meanwhile without failing it."""
    conn = db.connect(application_name="voucher-selection-job")
    try:
        return step(conn, *args)
    finally:
        conn.close()


def _record_failure(run_id: str, exc: Exception) -> None:
    """Record the run as failed; when even that is impossible, say so (the caller re-raises)."""
    message = error_message(exc)
    log.error("run %s failed: %s", run_id, message)
    try:
        _in_database(runs.fail_run, run_id, message)
    except psycopg2.Error as unrecorded:
        log.error(
            "run %s: the failure could not be recorded (%s); its record stays 'running' until"
            " the run is retried with --run_id %s once the database is back",
            run_id, error_message(unrecorded), run_id,
        )  # fmt: skip


def error_message(exc: Exception) -> str:
    """A one-line, secret-free description of why a run failed."""
    if isinstance(exc, t.InputError):
        return str(exc)
    return db.redact(f"{type(exc).__name__}: {cause_text(exc)}")
