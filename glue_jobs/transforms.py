"""The job's steps as pure DataFrame-in/DataFrame-out functions.

read -> :func:`check_input` -> :func:`select_in_scope` -> :func:`classify` (dedup, normalise,
reason per row) -> :func:`assign_segments` -> :func:`kept_rows` / :func:`rejected_rows` (the lake
outputs) and :func:`tally`, the one aggregation pass whose tiny result is all that reaches the
driver (:mod:`glue_jobs.selection` reduces it to statistics and selections).

Native Spark expressions only: no Python UDFs, so the same code runs from a 3 MB file in local
mode to billions of rows on a Glue cluster. The rules themselves (order, codes, bounds) come from
``chalicelib.rules``.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from chalicelib import rules


class InputError(ValueError):
    """The input cannot be processed as a whole (not parquet, a missing or ill-typed column)."""


_TIME_TYPES = (T.StringType, T.TimestampType, T.TimestampNTZType, T.DateType)
_NUMBER_TYPES = (T.StringType, T.NumericType)
#: Physical types accepted per input column; anything else fails the run with a clear message.
ACCEPTED_TYPES: dict[str, tuple[type, ...]] = {
    "timestamp": _TIME_TYPES,
    "country_code": (T.StringType,),
    "last_order_ts": _TIME_TYPES,
    "first_order_ts": _TIME_TYPES,
    "total_orders": _NUMBER_TYPES,
    "voucher_amount": _NUMBER_TYPES,
}

#: ``rules.WHITESPACE`` as a Spark SQL string literal (unicode escapes: no quoting surprises).
_WS_SQL = "'" + "".join(f"\\u{ord(c):04X}" for c in rules.WHITESPACE) + "'"
_INF = float("inf")


def check_input(df: DataFrame) -> DataFrame:
    """The six input columns; fails with a message naming any missing or ill-typed column."""
    missing = [c for c in rules.INPUT_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            f"input lacks required column(s) {', '.join(missing)}; "
            f"found {', '.join(df.columns) or 'no columns'}"
        )
    wrong = [
        f"{c} is {df.schema[c].dataType.simpleString()}"
        for c in rules.INPUT_COLUMNS
        if not isinstance(df.schema[c].dataType, ACCEPTED_TYPES[c])
    ]
    if wrong:
        raise InputError(f"input column(s) of an unusable type: {'; '.join(wrong)}")
    return df.select(*rules.INPUT_COLUMNS)


def _trimmed(name: str) -> Column:
    """Column ``name`` as text without surrounding ``rules.WHITESPACE``."""
    return F.expr(f"trim(BOTH {_WS_SQL} FROM CAST(`{name}` AS STRING))")


def country_key(name: str) -> Column:
    """The Spark twin of ``rules.country_key``: whitespace trimmed, lower case."""
    return F.lower(_trimmed(name))


def select_in_scope(df: DataFrame, country_keys: tuple[str, ...] | None) -> DataFrame:
    """Rows of the requested countries (``None``: every named country), with ``country_key``."""
    keyed = df.withColumn("country_key", country_key("country_code"))
    if country_keys is None:
        return keyed.where(F.col("country_key") != "")
    return keyed.where(F.col("country_key").isin(list(country_keys)))


def _timestamp(df: DataFrame, name: str) -> Column:
    """A timestamp from a string (``YYYY-MM-DD[ HH:MM:SS[.f]]`` or ISO 8601) or a time type."""
    if isinstance(df.schema[name].dataType, T.StringType):
        text = _trimmed(name)  # a full date at least: Spark alone would read "2018" as 2018-01-01
        full_date = (F.length(text) >= 8) & (F.substring(text, 5, 1) == "-")
        return F.when(full_date, text.cast("timestamp"))
    return F.col(name).cast("timestamp")


def _number(df: DataFrame, name: str) -> Column:
    """A double from a number or a numeric string; empty or unparseable text gives null."""
    if isinstance(df.schema[name].dataType, T.StringType):
        return _trimmed(name).cast("double")
    return F.col(name).cast("double")


def _first_match(cases) -> Column:
    """``CASE WHEN c1 THEN v1 WHEN c2 THEN v2 ... END`` from (condition, value) pairs."""
    column = None
    for condition, value in cases:
        column = F.when(condition, value) if column is None else column.when(condition, value)
    return column


def _blank(value: Column) -> Column:
    return value.isNull() | F.isnan(value)


def classify(df: DataFrame) -> DataFrame:
    """One row per distinct input row, its ``copies``, normalised values and rejection ``reason``.

    The ``reason`` is the first cleaning rule the row fails (null: kept). Duplicate copies beyond
    the first are not rows here: they are counted in ``copies`` and materialised by
    :func:`rejected_rows`.
    """
    distinct = df.groupBy(*rules.INPUT_COLUMNS, "country_key").agg(F.count("*").alias("copies"))
    normalised = distinct.select(
        "*",
        F.initcap(F.col("country_key")).alias("country"),
        _timestamp(df, "timestamp").alias("voucher_ts"),
        _timestamp(df, "last_order_ts").alias("last_order"),
        _timestamp(df, "first_order_ts").alias("first_order"),
        _number(df, "total_orders").alias("orders"),
        _number(df, "voucher_amount").alias("amount"),
    )
    orders, amount = F.col("orders"), F.col("amount")
    voucher_day, last_day, first_day = (
        F.to_date(F.col(c)) for c in ("voucher_ts", "last_order", "first_order")
    )
    checks = {
        "missing_value": _blank(orders)
        | _blank(amount)
        | F.col("voucher_ts").isNull()
        | F.col("last_order").isNull()
        | F.col("first_order").isNull(),
        "invalid_value": (orders < 0)
        | (orders != F.floor(orders))
        | (orders > rules.MAX_WHOLE_ORDERS)
        | (amount <= 0)
        | (amount == _INF),
        "zero_orders_with_order_dates": orders == 0,
        "first_after_last": first_day > last_day,
        "voucher_before_last_order": voucher_day < last_day,
    }
    assert tuple(checks) == rules.REASON_CODES[1:], "checks must follow the rules' order"
    reason = _first_match((check, code) for code, check in checks.items())
    return normalised.withColumn("reason", reason)


def _segment(rule: rules.SegmentRule, value: Column) -> Column:
    """The label of the segment of ``rule`` holding ``value`` (null when none does)."""
    return _first_match(
        ((value >= s.lower) if s.upper is None else value.between(s.lower, s.upper), s.label)
        for s in rule.segments
    )


def assign_segments(classified: DataFrame) -> DataFrame:
    """Add the measures and one column per segment rule; all null on rejected rows."""
    kept = F.col("reason").isNull()
    measures = {
        "frequency": F.col("orders").cast("long"),
        "recency_days": F.datediff(F.to_date("voucher_ts"), F.to_date("last_order")),
    }
    with_measures = classified.select(
        "*", *(F.when(kept, value).alias(name) for name, value in measures.items())
    )
    return with_measures.select(
        "*", *(_segment(r, F.col(r.measure)).alias(r.name) for r in rules.SEGMENT_RULES)
    )


def kept_rows(segmented: DataFrame) -> DataFrame:
    """Rows that passed every rule, typed, with their measures and segments (the curated output)."""
    return segmented.where(F.col("reason").isNull()).select(
        F.col("voucher_ts").alias("timestamp"),
        "country",
        F.col("last_order").alias("last_order_ts"),
        F.col("first_order").alias("first_order_ts"),
        F.col("frequency").alias("total_orders"),
        F.col("amount").alias("voucher_amount"),
        "frequency",
        "recency_days",
        *(r.name for r in rules.SEGMENT_RULES),
    )


def rejected_rows(classified: DataFrame) -> DataFrame:
    """Every rejected row as found in the input (values as text) with its reason code.

    A distinct row seen ``copies`` times yields ``copies - 1`` ``duplicate_row`` rows, plus itself
    when it fails another rule.
    """
    raw = [F.col(c).cast("string").alias(c) for c in rules.INPUT_COLUMNS]
    failed = classified.where(F.col("reason").isNotNull()).select(*raw, "country", "reason")
    duplicates = classified.where(F.col("copies") > 1).select(
        *raw,
        "country",
        F.lit(rules.REASON_CODES[0]).alias("reason"),
        F.explode(F.array_repeat(F.lit(0), (F.col("copies") - 1).cast("int"))).alias("_copy"),
    )
    return failed.unionByName(duplicates.drop("_copy"))


def tally(segmented: DataFrame) -> DataFrame:
    """The one aggregation pass behind every statistic and selection.

    One row per country x reason for rejected rows, and per country x amount x segments for kept
    rows, with ``rows`` (distinct rows) and ``copies`` (input rows, duplicates included). Tiny
    whatever the input size: a few countries times a few amounts times a few segments.
    """
    kept = F.col("reason").isNull()
    return segmented.groupBy(
        "country_key",
        "country",
        "reason",
        F.when(kept, F.col("amount")).alias("voucher_amount"),
        *(r.name for r in rules.SEGMENT_RULES),
    ).agg(F.count("*").alias("rows"), F.sum("copies").alias("copies"))
