"""The single pass, measured: the job's transforms with both outputs written as one dataset.

The job writes the curated and the rejected rows in two passes, each reading and classifying
every row again, because the two outputs differ: typed values and segments under ``curated/``,
the values as found (text) and the reason under ``rejected/``. One pass needs one write of one
schema: here, one dataset partitioned by ``kind`` whose rows carry both sets of columns, those of
the other kind null, then the same counts read back from it. Everything else is the job's own
code and settings, so ours over this engine is what that change of the lake's layout would save.
"""

from __future__ import annotations

from pyspark.sql import Observation, SparkSession
from pyspark.sql import functions as F

from chalicelib import rules
from glue_jobs import lake_io
from glue_jobs import transforms as t
from glue_jobs.pipeline import build_result, shuffle_partitions


def one_pass(spark: SparkSession, source: str, out: str, countries: str) -> dict[str, dict]:
    """Per country key, the rows in, kept and rejected by reason, as one dataset under ``out``."""
    inputs = lake_io.describe(source)
    spark.conf.set("spark.sql.shuffle.partitions", str(shuffle_partitions(spark, inputs)))
    keys = rules.requested_country_keys(countries)
    read = Observation("read")
    with lake_io.Lake(spark) as lake:
        raw = t.unify(lake.read_parts(inputs))
        repeated = t.repeated_hashes(t.select_in_scope(raw, keys, read)).cache()
        groups = None
        try:
            repeated.count()
            scoped = t.select_in_scope(raw, keys)
            groups = t.duplicate_groups(scoped, repeated).cache()
            # Observed, as in the job, so that Spark evaluates the rules once a row.
            classified = t.classify(t.distinct_rows(scoped, repeated, groups), Observation())
            # Each distinct row becomes its copies: the first is curated when it passed every rule.
            n = F.col("copies").cast("int")
            copies = t.assign_segments(classified).select(
                "*", F.posexplode(F.array_repeat("reason", n))
            )
            curated = (F.col("pos") == 0) & F.col("reason").isNull()
            mixed = copies.select(
                F.when(curated, "curated").otherwise("rejected").alias("kind"),
                "country_key",
                *(
                    F.when(curated, F.col(c)).alias(name)
                    for name, c in t.CURATED_COLUMNS.items()
                    if name != "country_key"
                ),
                *(
                    F.when(~curated, F.col(c).cast("string")).alias(f"{c}_text")
                    for c in rules.INPUT_COLUMNS
                ),
                F.when(~curated, t.copy_reason()).alias("reason"),
            )
            mixed.write.mode("overwrite").partitionBy("kind", "country_key").parquet(out)
            written = spark.read.schema(mixed.schema).parquet(out)
            kept, rejected = (written.where(F.col("kind") == k) for k in ("curated", "rejected"))
            result = build_result(t.tally(kept, rejected), read.get["rows"])
        finally:
            if groups is not None:
                groups.unpersist()
            repeated.unpersist()
    return {
        c.country_key: {
            "rows_in": c.rows_in,
            "rows_kept": c.rows_kept,
            "rejected_by_reason": dict(c.rejected_by_reason),
        }
        for c in result.countries
    }
