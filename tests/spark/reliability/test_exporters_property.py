"""Property: any parquet a real exporter writes is processed per the SPEC.

Each example writes two to four files under one folder with pyarrow, each with physical types of
its own per column (text plain, large or dictionary-encoded; int16/int32/int64, uint32/uint64,
float/double, decimal; date32, timestamps in ms/us/ns with or without UTC adjustment, INT96),
holding a random mix of good, bad and extreme values: dates of any era (year 1 sentinels, 1500,
9999), text times with offsets and Unicode padding, odd number text (``3d``, ``0x1p2``,
``1_000``, ``NaN``, Arabic digits), country names padded with no-break and ideographic spaces,
and exact duplicates (within a file, and across files that share a schema). The whole job runs
on the folder (read, rules, lake outputs, the run's record and publish), and its per-country rows
in, kept, rejected by reason, selections and fallbacks must equal the SPEC computed from the
files as pyarrow reads them (``tests/oracle.py``). The second property writes the same files
again with the six column names in any case and padding, among extra columns of every type
pyarrow writes: the job's results must not change.

Bounded in ``make test``; ``HYPOTHESIS_PROFILE=deep`` runs hundreds of examples with shrinking
(README, "Tests and benchmarks")."""

from __future__ import annotations

import math
import os
import random
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from chalicelib.runs import RunResult, new_run_id
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
DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"
PROFILE = settings.get_profile("deep") if DEEP else BOUNDED
#: Two runs an example: half as many.
EXTRAS_PROFILE = settings(PROFILE, max_examples=PROFILE.max_examples // 2)
SCOPES = ["all", "Peru", "Peru,Latvia"]

# --------------------------------------------------------------------------------- the values

ERAS = [1, 1500, 1582, 1899, 1969, 2018, 2018, 2018, 2261, 3000, 9998]
FIRST_TO_LAST = [0, -1, 1, 7, 60]
LAST_TO_VOUCHER = [0, -1, 1, 30, 61, 91, 121, 181, 400, -1000]
PADDING = ["", " ", "\t", "\u00a0", "\u3000", "\u2003"]
#: Text as writers store it: plain, large (64-bit offsets) and dictionary-encoded.
TEXT_TYPES = ["text", "large_text", "dictionary"]
TIME_TYPES = [
    *TEXT_TYPES,
    "ts_us_utc",
    "ts_us",
    "ts_ms_utc",
    "ts_ms",
    "ts_ns",
    "ts_ns_utc",
    "date32",
]
ORDERS_TYPES = [*TEXT_TYPES, "int16", "int32", "int64", "uint32", "uint64", "double", "float"]
ORDERS_TYPES += ["decimal"]
AMOUNT_TYPES = ["double", *TEXT_TYPES, "int32", "int64", "float", "decimal"]
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
    if kind in TEXT_TYPES:
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
    if orders in TEXT_TYPES:
        row["total_orders"] = draw(st.sampled_from(ORDER_TEXT))
    else:
        numbers = [n for n in ORDER_NUMBERS if not orders.startswith("uint") or not n or n > 0]
        value = draw(
            st.sampled_from(numbers + ([2.5, math.nan] if orders in ("double", "float") else []))
        )
        if orders in ("int64", "uint64") and draw(st.integers(0, 20)) == 0:
            value = 2**62  # beyond a double's whole numbers
        row["total_orders"] = value
    amount = schema["voucher_amount"]
    if amount in TEXT_TYPES:
        row["voucher_amount"] = draw(st.sampled_from(AMOUNT_TEXT))
    elif amount in ("int32", "int64"):
        row["voucher_amount"] = draw(st.sampled_from([2640, 2640, 4400, 1760, 0, -5, None]))
    else:
        floats = [math.nan, math.inf] if amount in ("double", "float") else []
        row["voucher_amount"] = draw(st.sampled_from(AMOUNTS + floats))
    return row


ARROW = {
    "text": pa.string(),
    "large_text": pa.large_string(),
    "date32": pa.date32(),
    "ts_us_utc": pa.timestamp("us", tz="UTC"),
    "ts_us": pa.timestamp("us"),
    "ts_ms_utc": pa.timestamp("ms", tz="UTC"),
    "ts_ms": pa.timestamp("ms"),
    "ts_ns": pa.timestamp("ns"),
    "ts_ns_utc": pa.timestamp("ns", tz="UTC"),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
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
        if kind.startswith("ts_ns") and any(v and not 1678 <= v.year <= 2261 for v in values):
            kind = kind.replace("ns", "us")  # nanoseconds since 1970 reach 1677-2262 only
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


def written(folder, files, layouts=None) -> list[dict]:
    """Write the files (each with its ``layout``, when given: names as spelled, extra columns);
    return every row as the tables handed to the writer hold it (what the oracle judges:
    truncated to milliseconds, dates and decimals as stored). Not read back: pyarrow 18 reads
    INT96 timestamps before 1970 wrongly (Spark reads them right)."""
    rows = []
    spelled = layouts or [None] * len(files)
    for n, ((schema, file_rows), spelling) in enumerate(zip(files, spelled, strict=True)):
        table = arrow_table(schema, file_rows)
        rows += [{c: _plain(v) for c, v in row.items()} for row in table.to_pylist()]
        if spelling is not None:
            table = with_layout(table, spelling)
        pq.write_table(
            table, folder / f"part-{n:05d}.parquet", use_deprecated_int96_timestamps=schema["int96"]
        )
    return rows


def _plain(value):
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    return value


def run_on(spark, tmp_path_factory, folder, scope: str) -> RunResult:
    out = tmp_path_factory.mktemp("lake")
    options = JobOptions(str(folder), scope, new_run_id(), f"{out}/curated", f"{out}/rejected")
    return run(spark, options).result


def outcome(result: RunResult) -> tuple:
    """A run's counts, selections and fallbacks, as the oracle states them."""
    counts = {
        c.country_key: (
            c.rows_in,
            c.rows_kept,
            {k: v for k, v in c.rejected_by_reason.items() if v},
        )
        for c in result.countries
    }
    segments = {
        (s.country_key, s.segment_name, s.segment): (
            s.voucher_amount,
            s.voucher_rows,
            s.segment_rows,
        )
        for s in result.selections
    }
    fallbacks = {
        f.country_key: (f.voucher_amount, f.voucher_rows, f.country_rows) for f in result.fallbacks
    }
    return result.rows_read, counts, segments, fallbacks


def per_spec(rows: list[dict], scope: str) -> tuple:
    """:func:`outcome` of a run over ``rows``, as the SPEC in plain Python computes it."""
    keys = None if scope == "all" else tuple(k.lower() for k in scope.split(","))
    counts = {
        key: (sum(c.values()), c[None], {r: n for r, n in c.items() if r})
        for key, c in oracle.outcomes(rows, keys).items()
    }
    return len(rows), counts, *oracle.selections(rows, keys)


@settings(PROFILE)
@given(files=exports(), scope=st.sampled_from(SCOPES))
def test_any_exporters_parquet_is_processed_per_spec(stack, spark, tmp_path_factory, files, scope):
    folder = tmp_path_factory.mktemp("export")
    rows = written(folder, files)

    assert outcome(run_on(spark, tmp_path_factory, folder, scope)) == per_spec(rows, scope)


# ------------------------------------------------- names in any spelling, columns not needed


#: Extra columns: types Spark's reader refuses (times of day, decimals beyond 38 digits) and
#: types no rule reads (durations, unsigned and small integers, binaries, nested lists, maps and
#: structs, dictionary-encoded anything, nulls), each as pyarrow writes it. pyarrow 18 writes no
#: month_day_nano interval, string_view, binary_view, list_view, union or run-end-encoded column
#: to parquet (ArrowNotImplementedError): the INTERVAL a Java writer stores is in
#: ``test_inputs.py``; so is float16, whose FLOAT16 logical type keeps Spark 3.5 from reading
#: any column of the file.
EXTRA_TYPES = {
    "time32[s]": (
        pa.time32("s"),
        lambda r: time(r.randrange(24), r.randrange(60), r.randrange(60)),
    ),
    "time32[ms]": (
        pa.time32("ms"),
        lambda r: time(r.randrange(24), 0, 0, r.randrange(1000) * 1000),
    ),
    "time64[us]": (pa.time64("us"), lambda r: time(r.randrange(24), 0, 0, r.randrange(10**6))),
    "time64[ns]": (pa.time64("ns"), lambda r: time(0, r.randrange(60))),
    "duration[s]": (pa.duration("s"), lambda r: timedelta(seconds=r.randrange(10**6))),
    "duration[ns]": (pa.duration("ns"), lambda r: timedelta(microseconds=r.randrange(10**9))),
    "uint8": (pa.uint8(), lambda r: r.randrange(256)),
    "uint64": (pa.uint64(), lambda r: r.randrange(2**64)),
    "int8": (pa.int8(), lambda r: r.randrange(-128, 128)),
    "large_string": (pa.large_string(), lambda r: r.choice(["x", "", "Peru", "\u00a0"])),
    "large_binary": (pa.large_binary(), lambda r: bytes(r.randrange(256) for _ in range(3))),
    "fixed_size_binary": (pa.binary(4), lambda r: b"\x00\xffab"),
    "decimal256": (pa.decimal256(40, 2), lambda r: Decimal(r.randrange(10**30)) / 100),
    "list": (pa.list_(pa.int64()), lambda r: [r.randrange(9) for _ in range(r.randrange(3))]),
    "large_list": (pa.large_list(pa.string()), lambda r: ["a"] * r.randrange(3)),
    "fixed_size_list": (pa.list_(pa.int32(), 2), lambda r: [1, r.randrange(9)]),
    "map": (pa.map_(pa.string(), pa.int64()), lambda r: [("k", r.randrange(9))]),
    "struct": (
        pa.struct([("timestamp", pa.int64()), ("country_code", pa.time64("us"))]),
        lambda r: {"timestamp": r.randrange(9), "country_code": time(1)},
    ),
    "nested": (
        pa.struct([("a", pa.list_(pa.struct([("b", pa.map_(pa.string(), pa.time64("us")))])))]),
        lambda r: {"a": [{"b": [("k", time(r.randrange(24)))]}]},
    ),
    "dictionary<string>": (pa.dictionary(pa.int8(), pa.string()), lambda r: r.choice("ab")),
    "dictionary<int64>": (pa.dictionary(pa.int32(), pa.int64()), lambda r: r.randrange(3)),
    "dictionary<time64>": (pa.dictionary(pa.int32(), pa.time64("us")), lambda r: time(1)),
    "dictionary<timestamp>": (
        pa.dictionary(pa.int32(), pa.timestamp("ns", tz="UTC")),
        lambda r: datetime(2020, 1, 1, tzinfo=UTC),
    ),
    "null": (pa.null(), lambda r: None),
    "bool": (pa.bool_(), lambda r: r.random() < 0.5),
    "date64": (pa.date64(), lambda r: date(r.randrange(1, 9999), 1, 1)),
}
#: Names an extra column may have: none of them is an input column (``rules.column_key``).
EXTRA_NAMES = ["note", "Country Code", "timestamp_local", "TOTAL_ORDERS_2", "voucher", "ts", "_x"]
PADDING_OF_NAMES = ["", " ", "\t", "\u00a0", "\u3000"]


def extra_array(kind: str, rows: int, rnd: random.Random) -> pa.Array:
    arrow_type, value = EXTRA_TYPES[kind]
    # pyarrow 18 cannot write a null fixed-size list ("Lists with non-zero length null
    # components are not supported"): those have values in every row.
    nulls = 0 if pa.types.is_fixed_size_list(arrow_type) else 0.2
    values = [None if rnd.random() < nulls else value(rnd) for _ in range(rows)]
    if pa.types.is_dictionary(arrow_type):
        return pa.array(values, arrow_type.value_type).dictionary_encode()
    return pa.array(values, arrow_type)


@st.composite
def layout(draw) -> dict:
    """How one file spells the input columns, and which extra columns it has (with a seed for
    their values)."""
    spell = {"lower": str.lower, "upper": str.upper, "title": str.title}
    names = {
        c: draw(st.sampled_from(PADDING_OF_NAMES))
        + spell[draw(st.sampled_from(sorted(spell)))](c)
        + draw(st.sampled_from(PADDING_OF_NAMES))
        for c in oracle.COLUMNS
    }
    kinds = draw(st.lists(st.sampled_from(sorted(EXTRA_TYPES)), min_size=1, max_size=5))
    extras = [
        (
            f"{draw(st.sampled_from(EXTRA_NAMES))} {n}"
            if n
            else draw(st.sampled_from(EXTRA_NAMES)),
            kind,
        )
        for n, kind in enumerate(kinds)
    ]
    return {"names": names, "extras": extras, "seed": draw(st.integers(0, 2**32))}


def with_layout(table: pa.Table, layout: dict) -> pa.Table:
    """``table`` with its columns spelled as ``layout`` says and its extra columns, each at a
    place of its own among them."""
    rnd = random.Random(layout["seed"])
    table = table.rename_columns([layout["names"][c] for c in table.column_names])
    for name, kind in layout["extras"]:
        table = table.add_column(
            rnd.randint(0, table.num_columns), name, extra_array(kind, table.num_rows, rnd)
        )
    return table


@settings(EXTRAS_PROFILE)
@given(files=exports(), scope=st.sampled_from(SCOPES), data=st.data())
def test_names_in_any_case_and_columns_the_job_does_not_need_never_change_a_run(
    stack, spark, tmp_path_factory, files, scope, data
):
    """The same rows twice: as the exporters wrote them (canonical names, the six columns only),
    and with the names upper, title or lower case, padded with whitespace, among extra columns
    of every type pyarrow writes (Spark refuses some of them). Both runs give the same counts,
    selections and fallbacks, and those of the SPEC."""
    layouts = [data.draw(layout(), label=f"layout of file {n}") for n in range(len(files))]
    plain, odd = tmp_path_factory.mktemp("plain"), tmp_path_factory.mktemp("odd")
    rows = written(plain, files)
    written(odd, files, layouts)  # the same rows

    got = outcome(run_on(spark, tmp_path_factory, odd, scope))

    assert got == outcome(run_on(spark, tmp_path_factory, plain, scope)) == per_spec(rows, scope)


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
