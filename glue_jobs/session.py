"""The job's Spark session, configured the one way the rules need, on Glue or anywhere else."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from pyspark.sql import SparkSession

from chalicelib import settings


def configure(spark: SparkSession) -> None:
    """Session settings the rules rely on, the same on Glue and in local mode."""
    spark.conf.set("spark.sql.session.timeZone", "UTC")  # dates of timestamps are UTC dates
    # Dates of any era are dates: parquet is read and written in the proleptic Gregorian
    # calendar, never refused as "ancient" (a 0001-01-01 sentinel, a first order in 1500).
    for mode in (
        "datetimeRebaseModeInRead",
        "datetimeRebaseModeInWrite",
        "int96RebaseModeInRead",
        "int96RebaseModeInWrite",
    ):
        spark.conf.set(f"spark.sql.parquet.{mode}", "CORRECTED")
    # Nanosecond timestamps (pandas' default) as numbers: the reader turns them into timestamps.
    spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
    spark.conf.set("spark.sql.ansi.enabled", "false")  # unparseable text becomes null, not an error
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")  # rerun = same files
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")  # not legacy INT96
    # The run's observations (rows read, widest name, rows classified) sit below shuffles; an
    # empty shuffle output must not let adaptive execution drop the plan that holds them.
    spark.conf.set(
        "spark.sql.adaptive.optimizer.excludedRules",
        "org.apache.spark.sql.execution.adaptive.AQEPropagateEmptyRelation",
    )
    # HotSpot compiles no method over 8,000 bytes of bytecode: a bigger whole-stage method would
    # run interpreted, several times slower (Spark's own advice for HotSpot).
    spark.conf.set("spark.sql.codegen.hugeMethodLimit", "8000")
    # Country keys name the outputs' folders: read back as the text they were, never as numbers.
    spark.conf.set("spark.sql.sources.partitionColumnTypeInference.enabled", "false")


def local() -> SparkSession:
    """A configured Spark session for a laptop: local mode, or the standalone master named by
    ``SPARK_MASTER``.

    ``SPARK_CLASS_ARCHIVE`` may name a JVM class-data archive (``infra/local/spark_classes.py``):
    when it exists, the JVM maps Spark's classes from it and starts seconds sooner.
    """
    builder = SparkSession.builder
    archive = settings.SPARK_CLASS_ARCHIVE.read()
    if archive and os.path.isfile(archive):  # a stale archive is ignored, silently
        builder = builder.config(
            "spark.driver.extraJavaOptions",
            f"-XX:SharedArchiveFile={archive} -Xlog:cds=off -Xlog:cds+dynamic=off",
        )
    spark = (
        builder.master(settings.SPARK_MASTER.read())
        .appName("voucher-selection")
        .config("spark.driver.host", "127.0.0.1")  # loopback only
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", settings.SPARK_DRIVER_MEMORY.read())
        .config("spark.sql.shuffle.partitions", str(settings.SPARK_SHUFFLE_PARTITIONS.read()))
        .config("spark.sql.files.maxPartitionBytes", settings.SPARK_SPLIT_BYTES.read())
        .getOrCreate()
    )
    configure(spark)
    return spark


@contextlib.contextmanager
def glue_job(args: dict[str, str]) -> Iterator[SparkSession]:
    """The Glue job's configured session, between ``Job.init`` and ``Job.commit``."""
    from awsglue.context import GlueContext
    from awsglue.job import Job
    from pyspark.context import SparkContext

    glue = GlueContext(SparkContext.getOrCreate())
    job = Job(glue)
    job.init(args["JOB_NAME"], args)
    spark = glue.spark_session
    configure(spark)
    yield spark
    job.commit()
