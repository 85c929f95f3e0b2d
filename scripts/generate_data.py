"""Synthetic voucher history shaped like the real file, quirks included.

Same columns and physical types as ``voucher_history.parquet.gzip``; distributions imitate it
roughly (studied from the real file, none of its rows copied): four countries with their own
voucher amounts, order counts, tenures and recency peaks at ~31 and ~92 days. Each country's
amount mix also shifts with the customer's order count and recency, so the most used amount
differs between segments. Rows come grouped by ``last_order_ts``, as in the real file.
Injected quirks, one or more per cleaning reason of the spec: string timestamps, ``""`` in
``total_orders``, null amounts, vouchers dated ~3 years before the last order, exact duplicates,
``country_code`` in other case or with stray whitespace, zero orders with order dates (about as
common as in the real file, ~10%), negative or fractional orders, first order after last, zero
amounts.

Rows are made in chunks of :data:`CHUNK_ROWS`, chunk ``i`` from the seed ``(seed, i)``, so a
table depends on ``(rows, seed)`` only: :func:`write` streams exactly what :func:`generate`
returns, whatever its ``row_group_size`` or compression. Duplicates are placed within a chunk.
Files are snappy-compressed by default: gzip (the real file's codec) is a third smaller but
slower (10M rows on two cores: snappy 180 MB in ~11 s, gzip 114 MB in 25 s of CPU or more).

CLI: ``python -m scripts.generate_data --rows 1000000 --seed 7 --out /tmp/vouchers.parquet``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

#: Columns and physical types of the real history file.
Floats = NDArray[np.float64]
Ints = NDArray[np.int64]

SCHEMA = pa.schema(
    [
        ("timestamp", pa.string()),
        ("country_code", pa.string()),
        ("last_order_ts", pa.string()),
        ("first_order_ts", pa.timestamp("ms")),
        ("total_orders", pa.string()),
        ("voucher_amount", pa.float64()),
    ]
)

CHUNK_ROWS = 1_000_000

# Shares of the injected quirks (of all rows).
EMPTY_ORDERS = 0.08
OLD_VOUCHER = 0.08
COUNTRY_NOISE = 0.005
DUPLICATES = 0.00005
NEGATIVE_ORDERS = 0.001
FRACTIONAL_ORDERS = 0.001
FIRST_AFTER_LAST = 0.001
ZERO_AMOUNT = 0.001

# When vouchers were given, and how far before their last order the ~3-year-old ones are.
VOUCHER_START = np.datetime64("2018-06-09", "D")
VOUCHER_DAYS = 53
OLD_VOUCHER_DAYS = (1060, 1160)

# Recency in days from the last order to the voucher: two peaks, a long tail, a few too recent.
NEAR_PEAK, FAR_PEAK = 31, 92
RECENCY_TAIL = 0.15
RECENCY_TAIL_SCALE = 90
RECENCY_SHORT = 0.02
MAX_RECENCY = 720

ORDERS_SIGMA = 1.3
MAX_ORDERS = 466
TENURE_SIGMA = 0.9
TENURE_ORDERS_CORRELATION = 0.5
MAX_TENURE = 2900

# Amount habits: log-weights shift by a tilt times a customer's distance from the centres below,
# on the scales log1p(orders) / log(38) (37 orders = 1) and recency / 180 days.
ORDERS_CENTRE = 0.45
RECENCY_CENTRE = 0.4

COUNTRY_VARIANTS: tuple[Callable[[str], str], ...] = (
    str.lower,
    str.upper,
    lambda name: f" {name}",
    lambda name: f"{name} ",
    lambda name: f" {name.lower()} ",
    lambda name: f"{name}\t",
)


@dataclass(frozen=True)
class Habits:
    """How one country's customers look and which voucher amounts they get."""

    name: str
    share: float  # of all rows
    amounts: tuple[float, ...]
    weights: tuple[float, ...]  # of each amount for a customer at the habit centres
    orders_tilt: tuple[float, ...]  # log-weight change per unit of the orders scale
    recency_tilt: tuple[float, ...]  # log-weight change per unit of the recency scale
    null_amount: float  # share of rows without an amount
    orders_median: float
    zero_tenure: float  # share of customers whose first order is their last
    tenure_median: float  # days from first to last order of the others
    near_peak: float  # share of peak recencies at 31 rather than 92 days


COUNTRIES = (
    Habits(
        name="China",
        share=0.349,
        amounts=(1760, 3080, 4400, 5720, 8800),
        weights=(0.52, 0.05, 0.18, 0.06, 0.19),
        orders_tilt=(-1.0, 0, 0, 0, 2.5),
        recency_tilt=(0, 0, 1.5, 0, 0),
        null_amount=0.0034,
        orders_median=5,
        zero_tenure=0.17,
        tenure_median=80,
        near_peak=0.6,
    ),
    Habits(
        name="Australia",
        share=0.275,
        amounts=(1760, 2200, 3520, 5720, 11000),
        weights=(0.06, 0.52, 0.06, 0.2, 0.16),
        orders_tilt=(0, -2.0, 0, 2.0, 0),
        recency_tilt=(0, 0, 0, -1.0, 1.5),
        null_amount=0.0072,
        orders_median=9,
        zero_tenure=0.09,
        tenure_median=170,
        near_peak=0.64,
    ),
    Habits(
        name="Latvia",
        share=0.219,
        amounts=(1540, 3080, 4400, 8800, 13200),
        weights=(0.05, 0.05, 0.32, 0.17, 0.41),
        orders_tilt=(0, 0, 2.0, 0, -2.0),
        recency_tilt=(0, 0, 0, 0, 1.5),
        null_amount=0.0002,
        orders_median=7,
        zero_tenure=0.2,
        tenure_median=90,
        near_peak=0.37,
    ),
    Habits(
        name="Peru",
        share=0.157,
        amounts=(2640, 3520, 4400),
        weights=(0.42, 0.33, 0.25),
        orders_tilt=(1.5, -2.0, 0),
        recency_tilt=(0, 0, 1.5),
        null_amount=0.018,
        orders_median=7,
        zero_tenure=0.19,
        tenure_median=130,
        near_peak=0.47,
    ),
)


def _habit_table(field: str, pad: float) -> Floats:
    """One per-amount field of every country as a (countries, amounts) array, padded."""
    width = max(len(c.amounts) for c in COUNTRIES)
    values = [getattr(c, field) for c in COUNTRIES]
    return np.array([list(v) + [pad] * (width - len(v)) for v in values], dtype=np.float64)


AMOUNTS = _habit_table("amounts", 0.0)
LOG_WEIGHTS = np.log(
    _habit_table("weights", 0.0), where=AMOUNTS > 0, out=np.full(AMOUNTS.shape, -np.inf)
)
ORDERS_TILT = _habit_table("orders_tilt", 0.0)
RECENCY_TILT = _habit_table("recency_tilt", 0.0)
COUNTRY_CODES = [c.name for c in COUNTRIES] + [
    variant(c.name) for c in COUNTRIES for variant in COUNTRY_VARIANTS
]


def _country_array(field: str) -> Floats:
    return np.array([getattr(c, field) for c in COUNTRIES], dtype=np.float64)


def _strings(values: Floats | Ints, text: Callable[[float], str]) -> pa.Array:
    """A string array of ``text(value)`` per value, formatting each distinct value once."""
    distinct, index = np.unique(values, return_inverse=True)
    return pa.array([text(v) for v in distinct], pa.string()).take(index)


def _orders_text(value: float) -> str:
    return "" if np.isnan(value) else str(float(value))


def _customers(rng: np.random.Generator, country: Ints) -> tuple[Floats, Ints]:
    """Order counts and tenures (days from first to last order), correlated through activity."""
    rows = len(country)
    activity = rng.standard_normal(rows)
    orders_mu = np.log(_country_array("orders_median") + 1)[country]
    orders = np.clip(np.rint(np.exp(orders_mu + ORDERS_SIGMA * activity)) - 1, 0, MAX_ORDERS)
    rho = TENURE_ORDERS_CORRELATION
    latent = rho * activity + np.sqrt(1 - rho**2) * rng.standard_normal(rows)
    tenure_mu = np.log(_country_array("tenure_median"))[country]
    tenure = np.minimum(np.ceil(np.exp(tenure_mu + TENURE_SIGMA * latent)), MAX_TENURE)
    tenure[rng.random(rows) < _country_array("zero_tenure")[country]] = 0
    return orders, tenure.astype(np.int64)


def _recency(rng: np.random.Generator, country: Ints) -> Ints:
    """Days from the last order to the voucher: peaks at 31 and 92 days, a tail, a few < 30."""
    rows = len(country)
    kind = rng.random(rows)
    near = rng.random(rows) < _country_array("near_peak")[country]
    tail = NEAR_PEAK - 1 + rng.exponential(RECENCY_TAIL_SCALE, rows).astype(np.int64)
    short = rng.integers(0, NEAR_PEAK - 1, rows)
    return np.select(
        [kind < RECENCY_SHORT, kind < RECENCY_SHORT + RECENCY_TAIL],
        [short, np.minimum(tail, MAX_RECENCY)],
        np.where(near, NEAR_PEAK, FAR_PEAK),
    )


def _amounts(rng: np.random.Generator, country: Ints, orders: Floats, recency: Ints) -> Floats:
    """Draw each row's voucher amount from its country's mix, tilted by orders and recency."""
    orders_scale = np.log1p(orders) / np.log(38) - ORDERS_CENTRE
    recency_scale = np.clip(recency, 0, 365) / 180 - RECENCY_CENTRE
    logits = (
        LOG_WEIGHTS[country]
        + ORDERS_TILT[country] * orders_scale[:, None]
        + RECENCY_TILT[country] * recency_scale[:, None]
    )
    cumulative = np.cumsum(np.exp(logits - logits.max(axis=1, keepdims=True)), axis=1)
    draw = rng.random(len(country)) * cumulative[:, -1]
    drawn: Floats = AMOUNTS[country, (cumulative < draw[:, None]).sum(axis=1)]
    return drawn


def _chunk(rows: int, rng: np.random.Generator) -> pa.Table:
    """``rows`` synthetic rows with their quirks, drawn from ``rng``."""
    shares = _country_array("share")
    country = rng.choice(len(COUNTRIES), rows, p=shares / shares.sum())
    orders, tenure = _customers(rng, country)
    recency = _recency(rng, country)
    voucher_day = VOUCHER_START.astype(np.int64) + rng.integers(0, VOUCHER_DAYS, rows)
    last_day = voucher_day - recency
    first_day = last_day - tenure
    amount = _amounts(rng, country, orders, recency)

    quirk = rng.random((5, rows))
    old = quirk[0] < OLD_VOUCHER
    voucher_day[old] = last_day[old] - rng.integers(*OLD_VOUCHER_DAYS, old.sum())
    late = quirk[1] < FIRST_AFTER_LAST
    first_day[late] = last_day[late] + rng.integers(1, 60, late.sum())
    amount[quirk[2] > 1 - ZERO_AMOUNT] = 0.0
    null_amount = quirk[2] < _country_array("null_amount")[country]
    orders[quirk[3] > 1 - NEGATIVE_ORDERS - FRACTIONAL_ORDERS] += 0.5
    negative = quirk[3] > 1 - NEGATIVE_ORDERS
    orders[negative] = -1 - np.floor(orders[negative] / 10)
    orders[quirk[3] < EMPTY_ORDERS] = np.nan
    variant = len(COUNTRIES) + country * len(COUNTRY_VARIANTS)
    variant += rng.integers(0, len(COUNTRY_VARIANTS), rows)
    code = np.where(quirk[4] < COUNTRY_NOISE, variant, country)

    day_us = 86_400 * 10**6
    time_of_day = np.clip(rng.normal(18.3, 1.9, rows) / 24, 13 / 24, 1 - 1e-9) * day_us
    moment = voucher_day * day_us + time_of_day.astype(np.int64)
    table = pa.table(
        [
            pa.array(moment, pa.timestamp("us")).cast(pa.string()),
            pa.array(COUNTRY_CODES, pa.string()).take(code),
            _strings(last_day, lambda day: str(np.datetime64(int(day), "D"))),
            pa.array(first_day * 86_400_000, pa.timestamp("ms")),
            _strings(orders, _orders_text),
            pa.array(amount, pa.float64(), mask=null_amount),
        ],
        schema=SCHEMA,
    )
    return _arrange(table, last_day, rng)


def _arrange(table: pa.Table, last_day: Ints, rng: np.random.Generator) -> pa.Table:
    """Rows grouped by last order day, as in the real file, a few overwritten by exact copies
    of others (at least one from 1000 rows on)."""
    order = np.argsort(last_day, kind="stable")
    rows = len(order)
    copies = max(int(rows >= 1000), round(rows * DUPLICATES))
    picked = rng.choice(rows, 2 * copies, replace=False)
    order[picked[copies:]] = order[picked[:copies]]
    return table.take(order)


def chunks(rows: int, seed: int = 7) -> Iterator[pa.Table]:
    """The rows of ``generate(rows, seed)`` as tables of at most :data:`CHUNK_ROWS` rows."""
    for index, start in enumerate(range(0, rows, CHUNK_ROWS)):
        yield _chunk(min(CHUNK_ROWS, rows - start), np.random.default_rng([seed, index]))


def generate(rows: int, seed: int = 7) -> pa.Table:
    """``rows`` synthetic history rows, the same for the same ``(rows, seed)``."""
    return pa.concat_tables(chunks(rows, seed)) if rows else SCHEMA.empty_table()


def write(
    path: str | Path,
    rows: int,
    seed: int = 7,
    row_group_size: int = CHUNK_ROWS,
    compression: str = "snappy",
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write ``generate(rows, seed)`` as parquet one chunk at a time; ``progress(rows done)``.

    A chunk is compressed in a thread while the next one is drawn, so at most two are in memory.
    Row groups hold at most ``row_group_size`` rows and never span two chunks.
    """
    path = Path(path)
    done = 0

    def put(table: pa.Table) -> None:
        nonlocal done
        writer.write_table(table, row_group_size=row_group_size)
        done += table.num_rows
        if progress:
            progress(done)

    with (
        pq.ParquetWriter(path, SCHEMA, compression=compression) as writer,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        writing = None
        for table in chunks(rows, seed):
            if writing:
                writing.result()
            writing = pool.submit(put, table)
        if writing:
            writing.result()
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=285_570, help="rows to write")
    parser.add_argument("--seed", type=int, default=7, help="same seed and rows, same file")
    parser.add_argument("--out", type=Path, required=True, help="parquet file to write")
    parser.add_argument("--compression", choices=("snappy", "gzip"), default="snappy")
    args = parser.parse_args(argv)
    if args.rows < 0 or args.seed < 0:
        parser.error("--rows and --seed must not be negative")
    started = time.perf_counter()

    def report(done: int) -> None:
        print(f"{done:,}/{args.rows:,} rows ({time.perf_counter() - started:.1f} s)", flush=True)

    write(args.out, args.rows, args.seed, compression=args.compression, progress=report)
    size = args.out.stat().st_size
    seconds = time.perf_counter() - started
    print(f"wrote {args.rows:,} rows, {size / 1e6:.1f} MB, in {seconds:.1f} s to {args.out}")


if __name__ == "__main__":
    main()
