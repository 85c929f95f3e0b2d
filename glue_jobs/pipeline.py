"""One run of the voucher selection: read, clean, segment, select, write, publish.

The steps are the pure functions of :mod:`glue_jobs.transforms`; this module wires them to the
lake and the database, records the run, and reports progress. Only aggregates reach the driver:
the repeated row hashes stay in Spark; the tally has, per country, a row per reason and, per choice
(the fallback and each segment), one per amount up to ``runs.USAGE_TOP_AMOUNTS`` and one "other"
row: bounded whatever the input's rows and amounts.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from chalicelib import db, rules, runs, settings
from chalicelib.sources import Described, InputError, is_s3, split_s3
from chalicelib.text import shown
from glue_jobs import catalog, lake_io, session
from glue_jobs import transforms as t
from glue_jobs.lake_io import Lake, cause_text
from glue_jobs.selection import result_from_tally

log = logging.getLogger("voucher_selection")


@dataclass(frozen=True)
class JobOptions:
    source: str
    countries: str
    run_id: str
    curated_location: str
    rejected_location: str
    #: The Glue Data Catalog database of the lake tables; empty: the run registers nothing.
    catalog_database: str = ""
    #: The fewest kept rows a segment's own selection needs (``rules.MIN_SEGMENT_ROWS``).
    min_segment_rows: int = rules.MIN_SEGMENT_ROWS
    #: Who executes the run (Glue's JobRunId, or ``pid <n>``): only it may renew the run's lease.
    job_run_id: str | None = None
    #: Seconds the run may go without a heartbeat (``None``: ``RUN_LEASE_SECONDS``).
    lease_s: int | None = None
    #: Where the database settings (``chalicelib.settings``) are read (``None``: the environment).
    database: Mapping[str, str] | None = None


#: How both lake outputs are partitioned.
PARTITIONS = ["run_id", "country_key"]


@contextlib.contextmanager
def phase(spark: SparkSession, name: str) -> Iterator[None]:
    """Label the Spark jobs the block runs with the transform's phase (``voucher:<name>``), so
    that Spark's own event log and UI say where a run's time goes."""
    context = spark.sparkContext
    context.setJobGroup(f"voucher:{name}", name, interruptOnCancel=False)
    try:
        yield
    finally:
        # None clears a local property (the stubs only know strings).
        context.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
        context.setLocalProperty("spark.job.description", None)  # type: ignore[arg-type]


def build_result(
    tallied: DataFrame, rows_read: int, min_segment_rows: int = rules.MIN_SEGMENT_ROWS
) -> runs.RunResult:
    """Collect the tally (:func:`glue_jobs.transforms.tally`, already ranked and bounded in
    Spark) and read it as the run's result on the driver."""
    return result_from_tally(
        (row.asDict() for row in tallied.collect()), rows_read, min_segment_rows
    )


def check_country_names(scoped: DataFrame, widest: int | None) -> None:
    """Fail, before anything is written, on a country name too long to name its lake folder.

    ``widest`` is the most bytes any ``country_code`` has: a key has at most as many characters,
    so the keys themselves are only looked at when some text is that long.
    """
    if (widest or 0) <= rules.MAX_COUNTRY_CHARS:
        return
    too_long = scoped.where(F.length("country_key") > rules.MAX_COUNTRY_CHARS)
    # At most five distinct names reach the driver, never rows: enough to name the problem.
    names = [r[0] for r in too_long.select(F.initcap("country_key")).distinct().limit(5).collect()]
    if not names:
        return
    raise InputError(
        f"country_code longer than {rules.MAX_COUNTRY_CHARS} characters, too long for a"
        f" country name: {', '.join(shown(name) for name in sorted(names))}"
    )


@dataclass(frozen=True)
class Transformed:
    """The run's statistics and selections, and the driver's seconds per phase of the transform
    (the same names label its Spark jobs: ``voucher:<phase>``)."""

    result: runs.RunResult
    phases: dict[str, float]
    #: Each output's schema as written (``curated``, ``rejected``).
    schemas: dict[str, T.StructType]


def _outputs(classified: DataFrame, options: JobOptions) -> dict[str, tuple[str, DataFrame]]:
    """What the run writes where: its kept rows with their segments (curated) and its rejected
    rows with their reasons, each row tagged with the run."""
    run = F.lit(options.run_id).alias("run_id")
    return {
        "curated": (
            options.curated_location,
            t.kept_rows(t.assign_segments(classified)).select(run, "*"),
        ),
        "rejected": (options.rejected_location, t.rejected_rows(classified).select(run, "*")),
    }


def transform(
    spark: SparkSession, lake: Lake, options: JobOptions, inputs: Described | None = None
) -> Transformed:
    """Write the curated and rejected outputs, then count them into the run's statistics.

    Each pass scans the input again instead of caching it (memory is bounded at any size):
    0. ``read``: the files' footers and one Spark read per distinct schema (no row is read);
    1. ``duplicates``: the row hashes that repeat (observing the rows read and the widest
       country name on the way), then the exact duplicate groups behind them (both tiny);
    2. ``curated`` and 3. ``rejected``: the two outputs, each row's rules evaluated once a pass;
    4. ``tally``: what the two outputs hold, read back (narrow columns only).
    """
    timer = _Phases(spark)
    with timer("read"):  # the files' footers, one read per schema, the canonical frame
        inputs = inputs or lake_io.describe(options.source)
        spark.conf.set("spark.sql.shuffle.partitions", str(shuffle_partitions(spark, inputs)))
        country_keys = rules.requested_country_keys(options.countries)
        raw = t.unify(lake.read_parts(inputs))

    def scoped(seen: Observation | None = None) -> DataFrame:
        return t.select_in_scope(raw, country_keys, seen)

    read = Observation("read")
    repeated = t.repeated_hashes(scoped(read)).cache()
    groups = None
    try:
        with timer("duplicates"):
            # Materialised before anything joins it, so that its size decides how the joins run
            # (a cached plan is fixed when cached): a broadcast while it is small (as on real
            # data), a shuffle join beyond Spark's threshold.
            repeated.count()
            rows_read = read.get["rows"]
            log.info("read %s rows from %s", f"{rows_read:,}", options.source)
            check_country_names(scoped(), read.get["widest"])
            groups = t.duplicate_groups(scoped(), repeated).cache()
        read_again, counted = Observation("read again"), Observation("classified")
        distinct = t.distinct_rows(scoped(read_again), repeated, groups)
        outputs = _outputs(t.classify(distinct, counted), options)
        written = {}
        for name, (uri, df) in outputs.items():
            with timer(name):
                written[name] = lake.write_parquet(df, uri, PARTITIONS)
        if read_again.get["rows"] != rows_read:
            raise InputError(
                f"{options.source} changed while the run read it: {rows_read:,} rows, then"
                f" {read_again.get['rows']:,}"
            )
        log.info(
            "wrote %s kept of %s distinct rows to %s and the rejected rows to %s",
            f"{counted.get['kept']:,}",
            f"{counted.get['rows']:,}",
            options.curated_location,
            options.rejected_location,
        )
        with timer("tally"):
            kept, rejected = (
                lake.read_written(f"{written[name]}/run_id={options.run_id}", df)
                for name, (_, df) in outputs.items()
            )
            result = build_result(t.tally(kept, rejected), rows_read, options.min_segment_rows)
        log.info(
            "counted %s in-scope rows, %s of them exact duplicate copies",
            f"{sum(c.rows_in for c in result.countries):,}",
            f"{sum(c.rejected_by_reason['duplicate_row'] for c in result.countries):,}",
        )
    finally:
        if groups is not None:
            groups.unpersist()
        repeated.unpersist()
    schemas = {name: df.schema for name, (_, df) in outputs.items()}
    return Transformed(result, timer.seconds, schemas)


#: Input bytes per shuffle partition: a small input is not cut into many tiny tasks, a large
#: one is cut finely enough to spread over a cluster.
_BYTES_PER_SHUFFLE_PARTITION = 64 * 2**20


def shuffle_partitions(spark: SparkSession, inputs: Described) -> int:
    """Shuffle partitions for a run, sized from its input (at least the cores, at most 2,000)."""
    cores = spark.sparkContext.defaultParallelism
    wanted = sum(size for _, size in inputs.objects) // _BYTES_PER_SHUFFLE_PARTITION
    return max(cores, min(2_000, wanted))


class _Phases:
    """Times the transform's phases on the driver and labels their Spark jobs (``phase``)."""

    def __init__(self, spark: SparkSession):
        self.spark = spark
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        with phase(self.spark, name):
            yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.monotonic() - started


@dataclass(frozen=True)
class RunOutcome:
    """What a run computed, the countries it published, and which run serves each now."""

    run_id: str
    result: runs.RunResult
    published: list[str]
    serving: dict[str, str]
    phases: dict[str, float]
    #: Lake table -> partitions this run added to it (none when it names no catalog database).
    registered: dict[str, int]
    #: The selections that differ from the results this run replaced, per country it published.
    changes: list[runs.SelectionChange]


class Heartbeat:
    """Renews the run's lease from a daemon thread, four times a lease, while the block runs.

    A beat that fails, whatever the error (the database, Secrets Manager, the network), is
    logged and tried again at the next one: only a silent job loses its lease. Once the lease is
    refused (it ran out: the run is failed for good), the job's Spark work is cancelled and
    :meth:`check` raises ``runs.NotRunning``: a fenced job stops, and never publishes.
    """

    def __init__(self, spark: SparkSession, options: JobOptions, lease_s: int):
        self.spark = spark
        self.run_id = options.run_id
        self.lease_s = lease_s
        self.job_run_id = options.job_run_id
        self.database = options.database
        self.lost = threading.Event()
        self._stop = threading.Event()
        # The thread logs with the run's context (its id on every line).
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._beat,), name=f"heartbeat {self.run_id}", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            try:
                renewed = db.with_connection(
                    runs.renew_lease, self.run_id, self.job_run_id, env=self.database
                )
            except Exception as exc:
                log.warning(
                    "run %s: heartbeat not recorded (tried again in %.0f s): %s",
                    self.run_id,
                    self.lease_s / 4,
                    error_message(exc),
                )
                continue
            if not renewed:
                log.error(
                    "run %s lost its lease (no heartbeat recorded for %d s): it is failed for"
                    " good; stopping its work, nothing is published",
                    self.run_id,
                    self.lease_s,
                )
                self.lost.set()
                self.spark.sparkContext.cancelAllJobs()
                return

    def check(self) -> None:
        """Raise ``runs.NotRunning`` once the lease was lost."""
        if self.lost.is_set():
            raise runs.NotRunning(self.run_id, "failed (its lease ran out)")


def run(spark: SparkSession, options: JobOptions) -> RunOutcome:
    """Record the run, transform, then publish atomically, renewing the run's lease throughout.

    A failure (an interruption included) records its error and publishes nothing, so the previous
    result keeps serving. An event run of an object already processed for these countries raises
    ``runs.AlreadyProcessed``; one overwritten since the run was queued fails the run and raises
    ``runs.ObjectChanged``. A run asked for by hand always runs, and publishes.
    """
    session.configure(spark)  # whoever built the session (Glue's, a test's): the rules need it
    started = time.monotonic()
    country_keys = rules.requested_country_keys(options.countries)
    lease_s = options.lease_s or settings.RUN_LEASE_SECONDS.read()
    database = functools.partial(db.with_connection, env=options.database)
    claim = (options.run_id, country_keys, lease_s, options.job_run_id)
    try:
        inputs = lake_io.describe(options.source)
    except InputError as missing:  # recorded like any run, then failed with the reason
        bucket, key = split_s3(options.source) if is_s3(options.source) else (None, options.source)
        database(runs.start_run, claim[0], runs.Source(bucket, key), *claim[1:])
        _record_failure(options, lease_s, missing)
        raise
    try:
        database(runs.start_run, claim[0], inputs.source, *claim[1:])
    except (runs.ObjectChanged, runs.AlreadyProcessed) as done:  # it ends here: say why
        _record_failure(options, lease_s, done)
        raise
    log.info(
        "run %s started for %s (countries: %s, %d object(s))",
        options.run_id,
        options.source,
        options.countries,
        inputs.source.objects,
    )
    beat = Heartbeat(spark, options, lease_s)
    try:
        with beat, Lake(spark) as lake:
            try:
                transformed = transform(spark, lake, options, inputs)
            finally:
                beat.check()  # a fenced job's cancelled work fails for that reason
            result = transformed.result
            registered = register_partitions(spark, options, transformed)
            beat.check()
            published = database(runs.publish_run, options.run_id, result)
    except BaseException as exc:
        _record_failure(options, lease_s, exc)
        raise
    serving = database(runs.serving, [c.country_key for c in result.countries])
    changes = database(runs.changes_of, options.run_id)
    log.info(
        "run %s published %s in %.1f s",
        options.run_id,
        ", ".join(published) or "nothing",
        time.monotonic() - started,
    )
    return RunOutcome(
        options.run_id, result, published, serving, transformed.phases, registered, changes
    )


def register_partitions(
    spark: SparkSession, options: JobOptions, transformed: Transformed
) -> dict[str, int]:
    """Add the run's partitions, one per country each output wrote, to the lake tables (before
    publishing: a run whose rows the catalog cannot find is not published)."""
    if not options.catalog_database:
        return {}
    countries = transformed.result.countries
    wrote = {
        "curated": (options.curated_location, [c.country_key for c in countries if c.rows_kept]),
        "rejected": (
            options.rejected_location,
            [c.country_key for c in countries if sum(c.rejected_by_reason.values())],
        ),
    }
    registered = {
        table: catalog.register(
            spark,
            options.catalog_database,
            table,
            location,
            transformed.schemas[table],
            [[options.run_id, k] for k in keys],
        )
        for table, (location, keys) in wrote.items()
    }
    log.info(
        "run %s registered %s in the catalog database %s",
        options.run_id,
        ", ".join(f"{n} partition(s) of {table}" for table, n in registered.items()),
        options.catalog_database,
    )
    return registered


#: Attempts at recording a run's failure, and the pause before each retry.
_RECORD_ATTEMPTS = 3
_RECORD_PAUSE_S = 2.0


def _record_failure(options: JobOptions, lease_s: int, exc: BaseException) -> None:
    """Record the run as failed, trying again on any error; when it cannot be recorded, say so
    and what follows (the caller re-raises)."""
    run_id, message = options.run_id, error_message(exc)
    log.error("run %s failed: %s", run_id, message)
    for attempt in range(1, _RECORD_ATTEMPTS + 1):
        try:
            db.with_connection(runs.fail_run, run_id, message, env=options.database)
            return
        except Exception as unrecorded:
            if attempt < _RECORD_ATTEMPTS:
                time.sleep(_RECORD_PAUSE_S * attempt)
                continue
            log.error(
                "run %s: the failure could not be recorded (%s); its record stays 'running'"
                " until its lease of %d s runs out (then it counts as abandoned, failed for"
                " good); before then, a retry of this job run with the same arguments"
                " (--run_id %s, as Glue's next attempt) takes the run over",
                run_id,
                error_message(unrecorded),
                lease_s,
                run_id,
            )


def error_message(exc: BaseException) -> str:
    """A one-line, secret-free description of why a run failed."""
    if isinstance(
        exc,
        InputError
        | runs.ObjectChanged
        | runs.AlreadyProcessed
        | runs.NotRunning
        | runs.AlreadyRunning
        | runs.AlreadyFinished,
    ):
        return str(exc)
    if isinstance(exc, SystemExit | KeyboardInterrupt):
        return f"the job was stopped ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})"
    return db.redact(f"{type(exc).__name__}: {cause_text(exc)}")
