"""The floor: a straightforward Spark job of the same rules, the aim the job is measured against.

What a competent first version of this job would do, in a local session started as the job's
(the same class archive and configuration): read every row, find exact duplicates with a window
over the six raw columns, parse the columns with Spark's native casts, classify each row by the
first rule it fails, compute both measures, write every row once (one dataset partitioned by
country and outcome) and read the counts per country and outcome back from what was written.

It is not the product: it reads any text Spark's casts accept as a number or a time (the job
reads only decimal notation and whole dates), trims ASCII whitespace around a country's name (the
job trims Unicode's), writes one set of columns (the job writes the rejected rows' values as
found, in a second output), computes no statistics or selections and records nothing. Where the
input needs none of those guarantees (the real file, the generated histories) its counts equal
the job's: the benchmark checks them.
"""

from __future__ import annotations

from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F

from chalicelib import rules

#: The value written as the outcome of a row that passed every rule.
KEPT = "kept"
#: What the floor trims around a country's name.
ASCII_WHITESPACE = " \t\n\r\f\v"


def floor(spark: SparkSession, source: str, out: str, countries: str) -> dict[str, dict]:
    """Per country key, the rows in, kept and rejected by reason, written to ``out`` and
    counted from there."""
    rows = spark.read.parquet(source).select(*rules.INPUT_COLUMNS)
    keys = rules.requested_country_keys(countries)
    # ASCII whitespace, as exporters pad names (a tab included); the job also trims Unicode's.
    key = F.lower(F.btrim("country_code", F.lit(ASCII_WHITESPACE)))
    scoped = rows.select("*", key.alias("country_key")).where(
        F.col("country_key") != "" if keys is None else F.col("country_key").isin(list(keys))
    )
    copy = F.row_number().over(
        Window.partitionBy(*rules.INPUT_COLUMNS).orderBy(F.lit(1))  # any copy is the first
    )
    typed = scoped.select(
        "country_key",
        copy.alias("copy"),
        F.col("timestamp").cast("timestamp").alias("voucher_ts"),
        F.col("last_order_ts").cast("timestamp").alias("last_order"),
        F.col("first_order_ts").cast("timestamp").alias("first_order"),
        F.col("total_orders").cast("double").alias("orders"),
        F.col("voucher_amount").cast("double").alias("amount"),
    )
    orders, amount = F.col("orders"), F.col("amount")
    voucher_day, last_day, first_day = (
        F.to_date(c) for c in ("voucher_ts", "last_order", "first_order")
    )
    checks = [
        ("duplicate_row", F.col("copy") > 1),
        (
            "missing_value",
            orders.isNull()
            | F.isnan(orders)
            | amount.isNull()
            | F.isnan(amount)
            | F.col("voucher_ts").isNull()
            | F.col("last_order").isNull()
            | F.col("first_order").isNull(),
        ),
        (
            "invalid_value",
            (orders < 0)
            | (orders != F.floor(orders))
            | (orders > rules.MAX_WHOLE_ORDERS)
            | (amount <= 0)
            | (amount == float("inf")),
        ),
        ("zero_orders_with_order_dates", orders == 0),
        ("first_after_last", first_day > last_day),
        ("voucher_before_last_order", voucher_day < last_day),
    ]
    assert [code for code, _ in checks] == list(rules.REASON_CODES)
    outcome = F.when(checks[0][1], checks[0][0])
    for code, check in checks[1:]:
        outcome = outcome.when(check, code)
    classified = typed.select("*", outcome.otherwise(KEPT).alias("outcome"))
    kept = F.col("outcome") == KEPT
    measured = classified.select(
        "*",
        F.when(kept, orders.cast("long")).alias("frequency"),
        F.when(kept, F.datediff(voucher_day, last_day)).alias("recency_days"),
    ).drop("copy")
    measured.write.mode("overwrite").partitionBy("country_key", "outcome").parquet(out)
    counted = spark.read.parquet(out).groupBy("country_key", "outcome").count().collect()
    result: dict[str, dict] = {}
    for row in counted:
        country = result.setdefault(
            row["country_key"],
            {
                "rows_in": 0,
                "rows_kept": 0,
                "rejected_by_reason": dict.fromkeys(rules.REASON_CODES, 0),
            },
        )
        country["rows_in"] += row["count"]
        if row["outcome"] == KEPT:
            country["rows_kept"] += row["count"]
        else:
            country["rejected_by_reason"][row["outcome"]] += row["count"]
    return result
