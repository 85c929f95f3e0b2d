"""The numbers of the report, computed by the pipeline's own functions on a Spark session.

Rows are classified, segmented, tallied and selected by :mod:`glue_jobs.transforms` and
:func:`glue_jobs.pipeline.build_result` exactly as a run of the job does (every country in
scope); this module only counts what they produce. Every aggregation runs in Spark over all rows
(no sampling) and brings a few thousand numbers at most to the driver.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from chalicelib import rules
from explore.inputs import stored_schema
from glue_jobs import lake_io
from glue_jobs import transforms as t
from glue_jobs.lake_io import Lake
from glue_jobs.pipeline import build_result

#: Where the ``country_code`` was null or blank: out of scope for every run.
NO_COUNTRY = ""


def _days(start: str, end: str) -> Column:
    """Calendar days between two of the classified rows' UTC days: recency as
    :func:`~glue_jobs.transforms.assign_segments` measures it, here on rejected rows too."""
    return (F.col(end) - F.col(start)).cast("int")


@dataclass(frozen=True)
class Measure:
    """A whole-number measure of every in-scope row, counted per unit within ``[low, high]``."""

    name: str
    label: str
    value: Callable[[], Column]
    unit: str
    low: int
    high: int
    segment_rule: str | None = None

    def clipped(self) -> Column:
        """The value, with ``low - 1`` standing for anything below and ``high + 1`` above."""
        return F.greatest(F.least(self.value(), F.lit(self.high + 1)), F.lit(self.low - 1))


MEASURES = (
    Measure(
        "total_orders",
        "total_orders (orders before the voucher)",
        lambda: F.when(~F.isnan("orders"), F.floor("orders")),
        "orders",
        0,
        1_000,
        "frequent_segment",
    ),
    Measure(
        "tenure_days",
        "tenure: first to last order (days)",
        lambda: _days("first_day", "last_day"),
        "days",
        0,
        5_000,
    ),
    Measure(
        "recency_days",
        "recency: last order to voucher (days)",
        lambda: _days("last_day", "voucher_day"),
        "days",
        -3_650,
        3_650,
        "recency_segment",
    ),
)
MEASURE = {m.name: m for m in MEASURES}


def profile(spark: SparkSession, source: str) -> dict:
    """Every number of the report for ``source`` (a local path or ``s3://`` URI), JSON-ready."""
    stored = stored_schema(source)
    with Lake(spark) as lake:
        raw = t.unify(lake.read_parts(lake_io.describe(source)))
        rows_read = raw.count()
        quality = _quality(raw)
        segmented = t.assign_segments(t.classify(t.distinct_rows(t.select_in_scope(raw, None))))
        segmented = segmented.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            run = asdict(build_result(tally(segmented), rows_read))
            counted = {
                "distributions": _distributions(segmented),
                "by_year": _by_year(segmented),
                "mix": _mix(t.amount_counts(t.kept_rows(segmented))),
            }
        finally:
            segmented.unpersist()
    return {
        "source": source,
        "stored": stored,
        "rules": {"reasons": rules.REASONS, "segments": rules.rules_to_rows()},
        "measures": [{k: v for k, v in asdict(m).items() if k != "value"} for m in MEASURES],
        "run": run,
        "quality": quality,
        **counted,
    }


def tally(segmented: DataFrame) -> DataFrame:
    """The job's tally of the outputs these rows make."""
    return t.tally(t.kept_rows(segmented), t.rejected_rows(segmented))


def _quality(raw: DataFrame) -> dict:
    """Per country key: rows, spellings of ``country_code``, and per column the nulls, empty
    strings (text columns) and NaN (floating columns)."""
    checks: dict[tuple[str, str], Column] = {}
    for field in raw.schema.fields:
        column = F.col(field.name)
        checks[field.name, "null"] = column.isNull()
        if isinstance(field.dataType, T.StringType):
            checks[field.name, "empty"] = column == ""
        if isinstance(field.dataType, T.DoubleType | T.FloatType):
            checks[field.name, "nan"] = F.isnan(column)
    aliases = {f"{name}__{kind}": (name, kind) for name, kind in checks}
    per_spelling = raw.groupBy("country_code").agg(
        F.count("*").alias("rows"),
        *(F.count(F.when(checks[key], True)).alias(alias) for alias, key in aliases.items()),
    )
    out: dict[str, dict] = {}
    for row in per_spelling.collect():
        spelling = row["country_code"]
        key = NO_COUNTRY if spelling is None else rules.country_key(spelling)
        entry = out.setdefault(key, {"rows": 0, "spellings": {}, "columns": defaultdict(dict)})
        entry["rows"] += row["rows"]
        entry["spellings"]["(null)" if spelling is None else spelling] = row["rows"]
        for alias, (name, kind) in aliases.items():
            entry["columns"][name][kind] = entry["columns"][name].get(kind, 0) + row[alias]
    return {key: {**entry, "columns": dict(entry["columns"])} for key, entry in sorted(out.items())}


def _distributions(segmented: DataFrame) -> dict:
    """Per measure and country: rows (input copies) and kept rows per value, in one pass."""
    measured = segmented.select(
        "country_key",
        "copies",
        F.col("reason").isNull().alias("kept"),
        F.explode(
            F.array(
                *(
                    F.struct(F.lit(m.name).alias("measure"), m.clipped().alias("value"))
                    for m in MEASURES
                )
            )
        ).alias("m"),
    )
    counts = (
        measured.where(F.col("m.value").isNotNull())
        .groupBy(
            "country_key", F.col("m.measure").alias("measure"), F.col("m.value").alias("value")
        )
        .agg(F.sum("copies").alias("rows"), F.count(F.when(F.col("kept"), True)).alias("kept"))
    )
    out: dict[str, dict] = {m.name: {} for m in MEASURES}
    for key, name, value, rows, kept in sorted(counts.collect()):
        measure = MEASURE[name]
        entry = out[name].setdefault(key, {"counts": [], "below": [0, 0], "above": [0, 0]})
        if value < measure.low:
            entry["below"] = [rows, kept]
        elif value > measure.high:
            entry["above"] = [rows, kept]
        else:
            entry["counts"].append([value, rows, kept])
    for per_country in out.values():
        for entry in per_country.values():
            entry["kept_stats"] = kept_stats(entry)
    return out


def kept_stats(entry: dict) -> dict:
    """Kept rows, min, median, 95th percentile and max (nearest rank) of one distribution;
    ``None`` for a statistic beyond the counted range."""
    below, above = entry["below"][1], entry["above"][1]
    cumulative, running = [], below
    for value, _, kept in entry["counts"]:
        running += kept
        cumulative.append((running, value))
    rows = running + above

    def rank(share: float) -> int | None:
        wanted = max(1, math.ceil(share * rows))
        if wanted <= below:
            return None
        return next((value for total, value in cumulative if total >= wanted), None)

    stats = {"p0": 0.0, "p50": 0.5, "p95": 0.95, "p100": 1.0}
    return {"rows": rows, **({k: rank(s) for k, s in stats.items()} if rows else {})}


def _by_year(segmented: DataFrame) -> dict:
    """Per country and year of the voucher: the pipeline's own statistics (:func:`build_result`)
    of that year's rows, the year folded into the country key."""
    year = F.coalesce(F.year("voucher_ts").cast("string"), F.lit("unknown"))
    keyed = segmented.withColumn("country_key", F.concat_ws("|", "country_key", year))
    out: dict[str, dict] = {}
    for stats in build_result(tally(keyed), rows_read=0).countries:
        country_key, _, voucher_year = stats.country_key.partition("|")
        out.setdefault(country_key, {})[voucher_year] = {
            "rows_in": stats.rows_in,
            "rows_kept": stats.rows_kept,
            **stats.rejected_by_reason,
        }
    return out


def _mix(kept: DataFrame) -> dict:
    """Per country: kept rows per voucher amount (every amount, unlike the usage a run
    publishes), over all kept rows and within each segment, from
    :func:`glue_jobs.transforms.amount_counts`."""
    names = [r.name for r in rules.SEGMENT_RULES]
    counts: dict[tuple[str, str | None, str | None], Counter] = defaultdict(Counter)
    for row in kept.collect():
        counts[row["country_key"], None, None][row["voucher_amount"]] += row["rows"]
        for name in names:
            if row[name] is not None:
                counts[row["country_key"], name, row[name]][row["voucher_amount"]] += row["rows"]
    out: dict[str, dict] = {}
    for (key, name, segment), amounts in sorted(counts.items(), key=lambda kv: str(kv[0])):
        entry = out.setdefault(key, {"all": [], "segments": {n: {} for n in names}})
        mix = [[amount, rows] for amount, rows in sorted(amounts.items())]
        if name is None:
            entry["all"] = mix
        else:
            entry["segments"][name][segment] = mix
    return out
