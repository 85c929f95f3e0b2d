"""Property: any parquet a real exporter writes is processed per the SPEC.

Each example writes two to four files under one folder with pyarrow, each with physical types of
its own per column (text, int32/int64, float/double, decimal; date32, timestamps in ms/us/ns with
or without UTC adjustment, INT96; plain, dictionary-encoded and large strings), holding a random
mix of good, bad and extreme values: dates of any era (year 1 sentinels, 1500, 9999), text times
with offsets and Unicode padding, odd number text (``3d``, ``0x1p2``, ``1_000``, ``NaN``, Arabic
digits), country names padded with no-break and ideographic spaces, and exact duplicates (within a
file, and across files that share a schema). The whole job runs on the folder (read, rules,
lake outputs, the run's record and publish), and its per-country rows in, kept, rejected by
reason, selections and fallbacks must equal the SPEC computed from the files as pyarrow reads them
(``tests/oracle.py``).

Bounded in ``make test``; ``HYPOTHESIS_PROFILE=exporters-deep`` runs hundreds of examples with
shrinking (README, "Tests").
"""

from __future__ import annotations

import math
import os
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from chalicelib.runs import new_run_id
from glue_jobs.pipeline import JobOptions, run
from tests import oracle

SLOW = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
#: ``make test``: a few examples (each is a run of the job, seconds of Spark), no shrinking.
BOUNDED = settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=SLOW,
)
settings.register_profile("deep", max_examples=300, deadline=None, suppress_health_check=SLOW)
PROFILE = (
    settings.get_profile("deep") if os.environ.get("HYPOTHESIS_PROFILE") == "deep" else (BOUNDED)
)

# --------------------------------------------------------------------------------- the values

ERAS = [1, 1500, 1582, 1899, 1969, 2018, 2018, 2018, 2261, 3000, 9998]
FIRST_TO_LAST = [0, -1, 1, 7, 60]
LAST_TO_VOUCHER = [0, -1, 1, 30, 61, 91, 121, 181, 400, -1000]
PADDING = ["", " ", "\t", "\u00a0", "\u3000", "\u2003"]
TIME_TYPES = ["text", "ts_us_utc", "ts_us", "ts_ms_utc", "ts_ns", "date32"]
ORDERS_TYPES = ["text", "int32", "int64", "double", "float", "decimal"]
AMOUNT_TYPES = ["double", "text", "int64", "float", "decimal"]
COUNTRY_TYPES = ["string", "large_string", "dictionary"]
COUNTRIES = [
    "Peru",
    "Peru\u00a0",
    "\u3000peru",
    " PERU\t",
    "Latvia",
    "latvia\u2003",
    "China",
    "Perú",
    "",
    "\u00a0",
    None,
]
ORDER_TEXT = [
    "1",
    "2.0",
    " 3 ",
    "\u00a04\u00a0",
    "+5",
    "1e1",
    ".5e1",
    "13.0",
    "37",
    "38",
    "0",
    "-1",
    "2.5",
    "",
    None,
    "3d",
    "0x1p2",
    "1_000",
    "NaN",
    "Infinity",
    "١٢",
    "1e300",
]
ORDER_NUMBERS = [1, 2, 3, 5, 13, 14, 37, 38, 0, -1, None]
AMOUNTS = [2640.0, 2640.0, 4400.0, 1760.0, 0.5, 12.25, 0.0, -5.0, None]
AMOUNT_TEXT = [
    "2640",
    "2640.0",
    " 4400 ",
    "\u00a01760\u00a0",
    "0.5",
    "1e999",
    "-0.0",
    "NaN",
    "2,640",
    "3d",
    "",
]


@st.composite
def moments(draw) -> tuple[datetime, datetime, datetime]:
    """A voucher's moment, its customer's last and first orders (naive UTC), in any era."""
    year = draw(st.sampled_from(ERAS))
    first = datetime(
        year,
        draw(st.integers(1, 12)),
        draw(st.integers(1, 28)),
        draw(st.integers(0, 23)),
        draw(st.integers(0, 59)),
        draw(st.integers(0, 59)),
        draw(st.integers(0, 999_999)),
    )  # unique enough: rows never collide by chance
    last = shifted(first, draw(st.sampled_from(FIRST_TO_LAST)))
    voucher = shifted(last, draw(st.sampled_from(LAST_TO_VOUCHER)))
    return voucher, last, first


def shifted(moment: datetime, days: int) -> datetime:
    """``moment`` moved by ``days``, kept within the calendar (a day inside either end)."""
    low, high = datetime(1, 1, 2), datetime(9999, 12, 30)
    days = max(min(days, (high - moment).days), (low - moment).days)
    return moment + timedelta(days=days)


@st.composite
def time_text(draw, moment: datetime) -> str | None:
    """A moment as a writer might put it in text; sometimes no time at all."""
    if draw(st.integers(0, 12)) == 0:
        return draw(st.sampled_from([None, "", "  ", "yesterday", "2018-13-45", "0000-00-00"]))
    shapes = [
        moment.isoformat(sep=" ", timespec="microseconds"),
        moment.date().isoformat(),
        moment.isoformat(timespec="seconds") + "Z",
    ]
    if 1 < moment.year < 9999:  # an offset may move the UTC date across a year
        shapes.append(moment.replace(tzinfo=timezone(timedelta(hours=-5))).isoformat())
    pad = draw(st.sampled_from(PADDING))
    return pad + draw(st.sampled_from(shapes)) + draw(st.sampled_from(PADDING))


@st.composite
def file_schema(draw) -> dict[str, str]:
    return {
        "timestamp": draw(st.sampled_from(TIME_TYPES)),
        "country_code": draw(st.sampled_from(COUNTRY_TYPES)),
        "last_order_ts": draw(st.sampled_from(TIME_TYPES)),
        "first_order_ts": draw(st.sampled_from(TIME_TYPES)),
        "total_orders": draw(st.sampled_from(ORDERS_TYPES)),
        "voucher_amount": draw(st.sampled_from(AMOUNT_TYPES)),
        "int96": draw(st.booleans()),  # every timestamp column of the file stored as INT96
    }


def time_value(kind: str, moment: datetime, as_text):
    if kind == "text":
        return as_text
    if kind == "date32":
        return moment.date()
    return moment.replace(tzinfo=UTC) if kind.endswith("_utc") else moment


@st.composite
def row_for(draw, schema: dict[str, str]) -> dict:
    moments_ = dict(
        zip(("timestamp", "last_order_ts", "first_order_ts"), draw(moments()), strict=True)
    )
    row = {}
    for column, moment in moments_.items():
        absent = draw(st.integers(0, 15)) == 0
        row[column] = (
            None if absent else time_value(schema[column], moment, draw(time_text(moment)))
        )
    row["country_code"] = draw(st.sampled_from(COUNTRIES))
    orders = schema["total_orders"]
    if orders == "text":
        row["total_orders"] = draw(st.sampled_from(ORDER_TEXT))
    else:
        value = draw(
            st.sampled_from(
                ORDER_NUMBERS + ([2.5, math.nan] if orders in ("double", "float") else [])
            )
        )
        if orders == "int64" and draw(st.integers(0, 20)) == 0:
            value = 2**62  # beyond a double's whole numbers
        row["total_orders"] = value
    amount = schema["voucher_amount"]
    if amount == "text":
        row["voucher_amount"] = draw(st.sampled_from(AMOUNT_TEXT))
    elif amount == "int64":
        row["voucher_amount"] = draw(st.sampled_from([2640, 2640, 4400, 1760, 0, -5, None]))
    else:
        floats = [math.nan, math.inf] if amount in ("double", "float") else []
        row["voucher_amount"] = draw(st.sampled_from(AMOUNTS + floats))
    return row


ARROW = {
    "text": pa.string(),
    "date32": pa.date32(),
    "ts_us_utc": pa.timestamp("us", tz="UTC"),
    "ts_us": pa.timestamp("us"),
    "ts_ms_utc": pa.timestamp("ms", tz="UTC"),
    "ts_ns": pa.timestamp("ns"),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "double": pa.float64(),
    "float": pa.float32(),
    "decimal": pa.decimal128(14, 2),
    "string": pa.string(),
    "large_string": pa.large_string(),
    "dictionary": pa.dictionary(pa.int32(), pa.string()),
}


def arrow_table(schema: dict[str, str], rows: list[dict]) -> pa.Table:
    columns = {}
    for column in oracle.COLUMNS:
        kind, values = schema[column], [row[column] for row in rows]
        if kind == "ts_ns" and any(v and not 1678 <= v.year <= 2261 for v in values):
            kind = "ts_us"  # nanoseconds since 1970 reach 1677-2262 only
        if kind == "decimal":
            values = [
                None if v is None or not math.isfinite(v) else Decimal(f"{v:.2f}") for v in values
            ]
        columns[column] = pa.array(values, ARROW[kind] if kind != "dictionary" else pa.string())
        if kind == "dictionary":
            columns[column] = columns[column].dictionary_encode()
    return pa.table(columns)


@st.composite
def exports(draw) -> list[tuple[dict[str, str], list[dict]]]:
    """Two to four files: ``(schema, rows)`` each, duplicates within and across twin files."""
    files = []
    for _ in range(draw(st.integers(2, 4))):
        if files and draw(st.integers(0, 3)) == 0:  # a twin: another file's schema and rows
            schema, rows = draw(st.sampled_from(files))
            schema = dict(schema)
            rows = draw(st.lists(st.sampled_from(rows), min_size=1, max_size=4))
        else:
            schema = draw(file_schema())
            rows = draw(st.lists(row_for(schema), min_size=3, max_size=14))
            rows += draw(st.lists(st.sampled_from(rows), max_size=3))  # exact duplicates
        files.append((schema, draw(st.permutations(rows))))
    return files


# ------------------------------------------------------------------------------------- the test


def written(folder, files) -> list[dict]:
    """Write the files; return every row as the tables handed to the writer hold it (what the
    oracle judges: truncated to milliseconds, dates and decimals as stored). Not read back:
    pyarrow 18 reads INT96 timestamps before 1970 wrongly (Spark reads them right)."""
    rows = []
    for n, (schema, file_rows) in enumerate(files):
        table = arrow_table(schema, file_rows)
        pq.write_table(
            table, folder / f"part-{n:05d}.parquet", use_deprecated_int96_timestamps=schema["int96"]
        )
        rows += [{c: _plain(v) for c, v in row.items()} for row in table.to_pylist()]
    return rows


def _plain(value):
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    return value


@settings(PROFILE)
@given(files=exports(), scope=st.sampled_from(["all", "Peru", "Peru,Latvia"]))
def test_any_exporters_parquet_is_processed_per_spec(stack, spark, tmp_path_factory, files, scope):
    folder = tmp_path_factory.mktemp("export")
    rows = written(folder, files)
    keys = None if scope == "all" else tuple(k.lower() for k in scope.split(","))
    out = tmp_path_factory.mktemp("lake")
    options = JobOptions(str(folder), scope, new_run_id(), f"{out}/curated", f"{out}/rejected")

    result = run(spark, options).result

    want = oracle.outcomes(rows, keys)
    assert result.rows_read == len(rows)
    assert {
        c.country_key: (
            c.rows_in,
            c.rows_kept,
            {k: v for k, v in c.rejected_by_reason.items() if v},
        )
        for c in result.countries
    } == {
        key: (sum(c.values()), c[None], {r: n for r, n in c.items() if r})
        for key, c in want.items()
    }
    segments, fallbacks = oracle.selections(rows, keys)
    assert {
        (s.country_key, s.segment_name, s.segment): (
            s.voucher_amount,
            s.voucher_rows,
            s.segment_rows,
        )
        for s in result.selections
    } == segments
    assert {
        f.country_key: (f.voucher_amount, f.voucher_rows, f.country_rows) for f in result.fallbacks
    } == fallbacks


def test_the_generator_makes_what_it_claims():
    """The strategies above can produce every type and kind of value they name (a generator that
    silently lost one would test less than it says)."""
    schema = {
        "timestamp": "ts_ns",
        "country_code": "dictionary",
        "last_order_ts": "date32",
        "first_order_ts": "ts_ms_utc",
        "total_orders": "decimal",
        "voucher_amount": "float",
        "int96": False,
    }
    row = {
        "timestamp": datetime(1, 1, 2),
        "country_code": "Peru\u00a0",
        "last_order_ts": date(1500, 3, 1),
        "first_order_ts": datetime(9998, 1, 1, tzinfo=UTC),
        "total_orders": 2.0,
        "voucher_amount": 2640.0,
    }
    table = arrow_table(schema, [row])
    assert [str(f.type) for f in table.schema] == [  # year 1 cannot be nanoseconds: micros
        "timestamp[us]",
        "dictionary<values=string, indices=int32, ordered=0>",
        "date32[day]",
        "timestamp[ms, tz=UTC]",
        "decimal128(14, 2)",
        "float",
    ]
    assert oracle.number(" \u00a03\u3000") == 3.0 and oracle.number("3d") is None
    assert oracle.number("0x1p2") is None and oracle.number("1_000") is None
    assert oracle.number("١٢") is None and oracle.number("NaN") is None
    assert oracle.utc_day("\u3000 0001-01-01 00:00:00") == date(1, 1, 1)
    assert oracle.country({"country_code": "\u3000peru\u00a0"}) == "peru"
