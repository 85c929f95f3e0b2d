"""The job's steps as pure DataFrame-in/DataFrame-out functions.

read (one DataFrame per distinct file schema) -> :func:`unify` (each checked, cast to one canonical
schema, unioned) -> :func:`select_in_scope` -> :func:`distinct_rows` (exact duplicates
found through a cheap hash-first pass) -> :func:`classify` (normalise, reason per row) ->
:func:`assign_segments` -> :func:`kept_rows` / :func:`rejected_rows` (the lake outputs) ->
:func:`tally`, the counts of those outputs, with the amounts behind each choice ranked and
bounded (:func:`usage`): the aggregate that is all that reaches the driver
(:mod:`glue_jobs.selection` reads it as statistics, selections and their usage).

Native Spark expressions only: no Python UDFs, so the same code runs from a 3 MB file in local
mode to billions of rows on a Glue cluster. The rules themselves (order, codes, bounds) come from
``chalicelib.rules``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import reduce

from pyspark.sql import Column, DataFrame, Observation, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from chalicelib import rules
from chalicelib.runs import USAGE_TOP_AMOUNTS
from chalicelib.sources import InputError
from chalicelib.text import shown

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
_TIME_COLUMNS = ("timestamp", "last_order_ts", "first_order_ts")


def input_columns(names: Sequence[str], files: str = "input") -> dict[str, str]:
    """Each input column's name as stored among ``names`` (matched by ``rules.column_key``);
    fails naming ``files`` and any input column missing, or stored under two names."""
    stored: dict[str, list[str]] = {}
    for name in names:
        stored.setdefault(rules.column_key(name), []).append(name)
    missing = [c for c in rules.INPUT_COLUMNS if c not in stored]
    if missing:
        raise InputError(
            f"{files} lacks required column(s) {', '.join(missing)}; "
            f"found {', '.join(shown(n) for n in names) or 'no columns'}"
        )
    twice = [stored[c] for c in rules.INPUT_COLUMNS if len(stored[c]) > 1]
    if twice:
        raise InputError(
            f"{files} stores an input column twice (names that differ only in case or"
            " surrounding whitespace): "
            + "; ".join(" and ".join(shown(n) for n in names) for names in twice)
        )
    return {c: stored[c][0] for c in rules.INPUT_COLUMNS}


def check_input(df: DataFrame, files: str = "input") -> DataFrame:
    """The six input columns under their own names, whatever the case of their names in ``df``;
    fails with a message naming ``files`` and any missing, doubled or ill-typed column."""
    stored = input_columns(df.columns, files)
    wrong = [
        f"{c} is {df.schema[stored[c]].dataType.simpleString()}"
        for c in rules.INPUT_COLUMNS
        if not isinstance(df.schema[stored[c]].dataType, ACCEPTED_TYPES[c])
    ]
    if wrong:
        raise InputError(f"{files}: input column(s) of an unusable type: {'; '.join(wrong)}")
    return df.select(*(df[_quoted(stored[c])].alias(c) for c in rules.INPUT_COLUMNS))


def _quoted(name: str) -> str:
    """A column name as Spark resolves it literally (dots, spaces, backticks and all)."""
    return "`" + name.replace("`", "``") + "`"


def _canonical(column: str, types: list[T.DataType]) -> T.DataType:
    """One type for a column that files store differently. A column stored one way everywhere
    keeps its type (a single file is read as it is); times of several time types become
    timestamps, numbers of several numeric types doubles; when text is among them, the column is
    compared as text (so exact duplicates stay exact: text is never reinterpreted)."""
    if all(t == types[0] for t in types):
        return types[0]
    if any(isinstance(t, T.StringType) for t in types):
        return T.StringType()
    return T.TimestampType() if column in _TIME_COLUMNS else T.DoubleType()


def _cast(column: str, source: T.DataType, target: T.DataType) -> Column:
    value = F.col(column)
    if source == target:
        return value
    if isinstance(target, T.StringType) and isinstance(source, T.FractionalType):
        # Decimal notation that reads back as the same number; infinities included.
        value = (
            F.when(F.col(column) == _INF, F.lit("1e999"))
            .when(F.col(column) == -_INF, F.lit("-1e999"))
            .otherwise(F.col(column).cast("string"))
        )
    return value.cast(target).alias(column)


def unify(parts: Sequence[tuple[DataFrame, str]]) -> DataFrame:
    """The input as one DataFrame: each part (a DataFrame of files sharing one schema, and how
    to name them) checked, cast to the canonical schema, and unioned by column name."""
    checked = [(check_input(df, files), files) for df, files in parts]
    schema = {
        c: _canonical(c, [df.schema[c].dataType for df, _ in checked]) for c in rules.INPUT_COLUMNS
    }
    frames = [
        df.select(*(_cast(c, df.schema[c].dataType, schema[c]) for c in rules.INPUT_COLUMNS))
        for df, _ in checked
    ]
    return reduce(DataFrame.unionByName, frames)


def _trimmed_sql(name: str) -> str:
    """SQL of text column ``name`` with ``rules.WHITESPACE`` (all of Unicode's) trimmed.

    Spark's trim of a set of characters is slow (a search of the set for every end character it
    looks at, tenths of a microsecond a value), so it runs only for text whose first or last
    character could be whitespace: below '!' or beyond ASCII (every whitespace character is).
    """
    c = f"`{name}`"
    maybe = (
        f"{c} < '!' OR {c} >= '\\u0080' OR substring({c}, -1) < '!'"
        f" OR substring({c}, -1) >= '\\u0080'"
    )
    return f"CASE WHEN {maybe} THEN trim(BOTH {_WS_SQL} FROM {c}) ELSE {c} END"


def country_key(name: str) -> Column:
    """The Spark twin of ``rules.country_key``: ``rules.WHITESPACE`` trimmed, lower case."""
    return F.lower(F.expr(_trimmed_sql(name)))


def select_in_scope(
    df: DataFrame, country_keys: tuple[str, ...] | None, seen: Observation | None = None
) -> DataFrame:
    """Rows of the requested countries (``None``: every named country), with ``country_key``.

    ``seen`` observes every row read (``rows``) and the most bytes a ``country_code`` has
    (``widest``), before the scope filter. Observing there also keeps Spark from computing each
    row's key twice, once for the filter and once for the column.
    """
    keyed = df.select(*rules.INPUT_COLUMNS, country_key("country_code").alias("country_key"))
    if seen is not None:
        keyed = keyed.observe(
            seen,
            F.count(F.lit(1)).alias("rows"),
            F.max(F.octet_length("country_code")).alias("widest"),
        )
    key = F.col("country_key")
    return keyed.where(key != "" if country_keys is None else key.isin(list(country_keys)))


#: What makes a row: its six input columns and the key of its country.
ROW_KEY = (*rules.INPUT_COLUMNS, "country_key")


def _row_hash() -> Column:
    return F.xxhash64(*rules.INPUT_COLUMNS).alias("row_hash")


def repeated_hashes(scoped: DataFrame) -> DataFrame:
    """The 64-bit hashes of the six columns that more than one row has.

    Only rows with such a hash can be exact duplicates: finding them is one pass over a long per
    row instead of over six columns of text, and its result is tiny on real data. A count over a
    window of each hash (a shuffle of the longs, then a sort) rather than a hash aggregation: the
    hashes are almost all distinct, so an aggregation's map-side combine only costs.
    """
    copies = F.count(F.lit(1)).over(Window.partitionBy("row_hash"))
    hashed = scoped.select(_row_hash())
    return hashed.select("row_hash", copies.alias("n")).where("n > 1").select("row_hash").distinct()


def duplicate_groups(scoped: DataFrame, repeated: DataFrame) -> DataFrame:
    """The rows whose hash repeats, grouped on their columns, with their ``copies``.

    Grouping on the columns themselves means a hash collision never makes two different rows
    duplicates (such rows come out as groups of one copy each).
    """
    return (
        scoped.select(_row_hash(), *ROW_KEY)
        .join(repeated, "row_hash", "left_semi")
        .groupBy("row_hash", *ROW_KEY)
        .agg(F.count("*").alias("copies"))
    )


def distinct_rows(
    scoped: DataFrame, repeated: DataFrame | None = None, groups: DataFrame | None = None
) -> DataFrame:
    """One row per distinct input row, with its ``copies``.

    Rows whose hash is not in ``repeated`` pass through with one copy; the others are replaced by
    their ``groups``. The job passes both materialised (they are small); without them they are
    computed here.
    """
    if repeated is None or groups is None:
        repeated = repeated_hashes(scoped)
        groups = duplicate_groups(scoped, repeated)
    once = (
        scoped.select(_row_hash(), *ROW_KEY)
        .join(repeated, "row_hash", "left_anti")
        .withColumn("copies", F.lit(1).cast("long"))
    )
    return once.unionByName(groups).drop("row_hash")


def _full_date(text: str) -> Column:
    """Whether the text of SQL expression ``text`` holds a whole date: a year before a first
    '-', then another. Spark's cast reads every accepted shape, but it also reads a bare year
    ("2018"), a year and month ("2018-05") and a time of day alone ("10:00", as today)."""
    return F.expr(f"instr({text}, '-') > 1 AND locate('-', {text}, instr({text}, '-') + 1) > 0")


def _timestamp(df: DataFrame, name: str) -> Column:
    """A timestamp from text (``YYYY-MM-DD[ HH:MM:SS[.f]]`` or ISO 8601, whitespace trimmed) or
    from a time type; unreadable text gives null. Text is read as it is first (the cast trims
    ASCII spaces itself) and trimmed of Unicode whitespace only when that fails: the same answer,
    without trimming the common case."""
    if not isinstance(df.schema[name].dataType, T.StringType):
        return F.col(name).cast("timestamp")
    trimmed = _trimmed_sql(name)
    return F.coalesce(
        *(
            F.when(_full_date(text), F.expr(text).cast("timestamp"))
            for text in (f"`{name}`", trimmed)
        )
    )


def _number(df: DataFrame, name: str) -> Column:
    """A double from a number, or from text in decimal notation (``rules.DECIMAL_NUMBER``,
    whitespace trimmed, as for times only when the text as it is is not one); any other text
    gives null."""
    if not isinstance(df.schema[name].dataType, T.StringType):
        return F.col(name).cast("double")
    decimal = f"^{rules.DECIMAL_NUMBER}$"
    return F.coalesce(
        *(
            F.when(text.rlike(decimal), text.cast("double"))
            for text in (F.col(name), F.expr(_trimmed_sql(name)))
        )
    )


def _first_match(cases: Iterable[tuple[Column, object]]) -> Column:
    """``CASE WHEN c1 THEN v1 WHEN c2 THEN v2 ... END`` from (condition, value) pairs."""
    (condition, value), *others = cases
    column = F.when(condition, value)
    for condition, value in others:
        column = column.when(condition, value)
    return column


def _blank(value: Column) -> Column:
    return value.isNull() | F.isnan(value)


#: The UTC day of each timestamp, computed once per row for every rule and measure using it.
_DAYS = {"voucher_ts": "voucher_day", "last_order": "last_day", "first_order": "first_day"}
_MICROS_PER_DAY = 86_400_000_000


def _utc_day(ts: str) -> Column:
    """Days from 1970-01-01 to the UTC date of timestamp column ``ts``: whole-number arithmetic,
    cheaper than ``to_date``, which builds a java.time date per row (the session is in UTC)."""
    micros = f"unix_micros(`{ts}`)"
    return F.expr(f"({micros} - pmod({micros}, {_MICROS_PER_DAY})) div {_MICROS_PER_DAY}")


def classify(distinct: DataFrame, counted: Observation | None = None) -> DataFrame:
    """Normalised values and the rejection ``reason`` of each distinct row (null: kept).

    The ``reason`` is the first cleaning rule the row fails; duplicate copies beyond the first
    are counted in ``copies`` and materialised by :func:`rejected_rows`. Numbers come from numbers
    or their decimal text, times from time types or their text (whitespace trimmed; empty or
    unreadable text gives null); dates of timestamps are UTC dates. ``counted`` observes the
    distinct rows (``rows``) and the kept ones (``kept``); observing also keeps Spark from
    evaluating the rules again below the kept or rejected filter of an output.
    """
    typed = distinct.select(
        *ROW_KEY,
        "copies",
        _timestamp(distinct, "timestamp").alias("voucher_ts"),
        _timestamp(distinct, "last_order_ts").alias("last_order"),
        _timestamp(distinct, "first_order_ts").alias("first_order"),
        _number(distinct, "total_orders").alias("orders"),
        _number(distinct, "voucher_amount").alias("amount"),
    )
    normalised = typed.select("*", *(_utc_day(ts).alias(day) for ts, day in _DAYS.items()))
    orders, amount = F.col("orders"), F.col("amount")
    voucher_day, last_day, first_day = (F.col(day) for day in _DAYS.values())
    checks = {
        "missing_value": _blank(orders)
        | _blank(amount)
        | voucher_day.isNull()
        | last_day.isNull()
        | first_day.isNull(),
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
    classified = normalised.withColumn("reason", reason)
    if counted is None:
        return classified
    return classified.observe(
        counted,
        F.count(F.lit(1)).alias("rows"),
        F.count(F.when(F.col("reason").isNull(), True)).alias("kept"),
    )


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
        "recency_days": (F.col("voucher_day") - F.col("last_day")).cast("int"),
    }
    with_measures = classified.select(
        "*", *(F.when(kept, value).alias(name) for name, value in measures.items())
    )
    return with_measures.select(
        "*", *(_segment(r, F.col(r.measure)).alias(r.name) for r in rules.SEGMENT_RULES)
    )


#: The curated output's columns, each from its column of the segmented rows: ``total_orders`` is
#: the frequency measure, ``recency_days`` the recency one.
CURATED_COLUMNS = {
    "timestamp": "voucher_ts",
    "country_key": "country_key",
    "last_order_ts": "last_order",
    "first_order_ts": "first_order",
    "total_orders": "frequency",
    "voucher_amount": "amount",
    "recency_days": "recency_days",
    **{r.name: r.name for r in rules.SEGMENT_RULES},
}


def kept_rows(segmented: DataFrame) -> DataFrame:
    """Rows that passed every rule, typed, with their measures and segments (the curated output)."""
    return segmented.where(F.col("reason").isNull()).select(
        *(F.col(source).alias(name) for name, source in CURATED_COLUMNS.items())
    )


def rejected_rows(classified: DataFrame) -> DataFrame:
    """Every rejected row as found in the input (values as text) with its reason code.

    A distinct row seen ``copies`` times yields ``copies - 1`` ``duplicate_row`` rows, plus itself
    (first) when it fails another rule: one pass, each distinct row expanded in place.
    """
    failed = F.col("reason").isNotNull().cast("int")
    rejected = F.posexplode(F.array_repeat("reason", failed + F.col("copies").cast("int") - 1))
    return classified.select(
        *(F.col(c).cast("string").alias(c) for c in rules.INPUT_COLUMNS), "country_key", rejected
    ).select(*rules.INPUT_COLUMNS, "country_key", copy_reason().alias("reason"))


def copy_reason() -> Column:
    """The reason of a copy of a distinct row, as ``posexplode`` of its reasons makes them
    (``pos``, ``col``): the row's own reason for the first copy, ``duplicate_row`` for the others.
    """
    return F.coalesce(F.when(F.col("pos") == 0, F.col("col")), F.lit(rules.REASON_CODES[0]))


def amount_counts(kept: DataFrame) -> DataFrame:
    """Kept rows per country, voucher amount and segment of each rule (``rows``)."""
    segments = [r.name for r in rules.SEGMENT_RULES]
    return kept.groupBy("country_key", "voucher_amount", *segments).agg(F.count("*").alias("rows"))


def _choices() -> Column:
    """The choices a kept row counts in: its country's fallback (no segment name), then its
    segment of each rule (a null segment where it has none)."""
    none = F.lit(None).cast("string")
    return F.array(
        F.struct(none.alias("segment_name"), none.alias("segment")),
        *(
            F.struct(F.lit(r.name).alias("segment_name"), F.col(r.name).alias("segment"))
            for r in rules.SEGMENT_RULES
        ),
    )


def usage(kept: DataFrame, top: int = USAGE_TOP_AMOUNTS) -> DataFrame:
    """The usage behind each choice, ranked and bounded in Spark: per country, segment name and
    segment (both null: the country's fallback), the ``rows`` of each amount at its
    ``position``, most rows first and a tie to the lower amount (1 is the choice, 2 the
    runner-up); past ``top``, one row at ``top + 1`` with a null amount sums the rest and counts
    their ``amounts``. At most ``top + 1`` rows per choice, however many amounts there are.
    """
    if top < 2:
        raise ValueError(f"the usage names at least the winner and the runner-up, not {top}")
    choice = ["country_key", "segment_name", "segment"]
    per_amount = (
        amount_counts(kept)
        .select("country_key", "voucher_amount", "rows", F.explode(_choices()).alias("choice"))
        .select("country_key", "choice.*", "voucher_amount", "rows")
        .where(F.col("segment_name").isNull() | F.col("segment").isNotNull())
        # Rows of a choice together once: the sum per amount, the ranking and the cut below
        # then need no shuffle of their own (their input is a few rows per amount).
        .repartition(*choice)
        .groupBy(*choice, "voucher_amount")
        .agg(F.sum("rows").alias("rows"))
    )
    rank = F.row_number().over(
        Window.partitionBy(*choice).orderBy(F.desc("rows"), F.asc("voucher_amount"))
    )
    ranked = per_amount.select("*", rank.alias("rank"))
    named = F.col("rank") <= top
    return ranked.groupBy(*choice, F.least("rank", F.lit(top + 1)).alias("position")).agg(
        F.max(F.when(named, F.col("voucher_amount"))).alias("voucher_amount"),
        F.sum("rows").alias("rows"),
        F.count("*").cast("int").alias("amounts"),
    )


def tally(kept: DataFrame, rejected: DataFrame, top: int = USAGE_TOP_AMOUNTS) -> DataFrame:
    """The counts behind every statistic and selection, taken from the two outputs themselves:
    the :func:`usage` of the kept rows, and per country and reason the rejected rows (duplicate
    copies included), each with its ``rows``. Bounded by the countries, the segments and ``top``,
    not by the rows nor the amounts: this is what reaches the driver. ``country`` is the display
    name of ``country_key``.
    """
    counted = usage(kept, top).unionByName(
        rejected.groupBy("country_key", "reason").agg(F.count("*").alias("rows")),
        allowMissingColumns=True,
    )
    return counted.select("*", F.initcap("country_key").alias("country"))
