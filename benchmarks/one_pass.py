"""The single pass, measured: the job's transforms with both outputs written as one dataset.

The job writes the curated and the rejected rows in two passes, each reading and classifying
every row again, because the two outputs differ: typed values and segments under ``curated/``,
the values as found (text) and the reason under ``rejected/``. One pass needs one write of one
schema: here, one dataset partitioned by ``kind`` whose rows carry both sets of columns, those of
the other kind null, then the same counts read back from it. Everything else is the job's own
code, so ours over this engine is what that change of the lake's layout would save.
"""

from __future__ import annotations

from pyspark.sql import Observation, SparkSession
from pyspark.sql import functions as F

from chalicelib import rules
from glue_jobs import lake_io
from glue_jobs import transforms as t
from glue_jobs.pipeline import build_result


def one_pass(spark: SparkSession, source: str, out: str, countries: str) -> dict[str, dict]:
    """Per country key, the rows in, kept and rejected by reason, as one dataset under ``out``."""
    with lake_io.Lake(spark) as lake:
        raw = t.unify(lake.read_parts(lake_io.describe(source)))
        scoped = t.select_in_scope(raw, rules.requested_country_keys(countries))
        read = Observation("read")
        repeated = t.repeated_hashes(t.select_in_scope(raw, None, read)).cache()
        repeated.count()
        groups = t.duplicate_groups(scoped, repeated).cache()
        segmented = t.assign_segments(
            t.classify(t.distinct_rows(scoped, repeated, groups), Observation("classified"))
        )
        # Each distinct row becomes its copies: the first is curated when it passed every rule.
        n = F.col("copies").cast("int")
        copies = segmented.select("*", F.posexplode(F.array_repeat("reason", n)))
        first = F.col("pos") == 0
        curated = first & F.col("reason").isNull()
        reason = F.when(first, F.col("col")).otherwise(F.lit(rules.REASON_CODES[0]))
        text = rules.INPUT_COLUMNS
        mixed = copies.select(
            F.when(curated, "curated").otherwise("rejected").alias("kind"),
            "country_key",
            *(
                F.when(curated, F.col(c)).alias(name)
                for name, c in t.CURATED_COLUMNS.items()
                if name != "country_key"
            ),
            *(F.when(~curated, F.col(c).cast("string")).alias(f"{c}_text") for c in text),
            F.when(~curated, reason).alias("reason"),
        )
        mixed.write.mode("overwrite").partitionBy("kind", "country_key").parquet(out)
        written = spark.read.schema(mixed.schema).parquet(out)
        kept, rejected = (written.where(F.col("kind") == kind) for kind in ("curated", "rejected"))
        result = build_result(t.tally(kept, rejected), read.get["rows"])
        repeated.unpersist()
        groups.unpersist()
    return {
        c.country_key: {
            "rows_in": c.rows_in,
            "rows_kept": c.rows_kept,
            "rejected_by_reason": dict(c.rejected_by_reason),
        }
        for c in result.countries
    }
