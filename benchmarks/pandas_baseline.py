"""The comparison baseline: the cleaning rules the way most public solutions write them.

pandas reads the whole file, cleans, segments and groups in memory. Written plainly from the
SPEC's rules (not from the job's code) and only for comparison: the benchmark checks that its
kept and rejected counts match the Glue job's on the real file.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from chalicelib.rules import INPUT_COLUMNS

COLUMNS = list(INPUT_COLUMNS)  # the file's schema, not a rule: shared with the job
REASONS = [
    "duplicate_row",
    "missing_value",
    "invalid_value",
    "zero_orders_with_order_dates",
    "first_after_last",
    "voucher_before_last_order",
]
SEGMENTS = {
    "frequent_segment": ("frequency", [("0-4", 0, 4), ("5-13", 5, 13), ("14-37", 14, 37)]),
    "recency_segment": (
        "recency_days",
        [
            ("30-60", 30, 60),
            ("61-90", 61, 90),
            ("91-120", 91, 120),
            ("121-180", 121, 180),
            ("180+", 181, np.inf),
        ],
    ),
}


def _time(column: pd.Series) -> pd.Series:
    if column.dtype == object:
        column = column.str.strip()
    return pd.to_datetime(column, errors="coerce", format="ISO8601")


def _number(column: pd.Series) -> pd.Series:
    if column.dtype == object:
        column = column.str.strip()
    return pd.to_numeric(column, errors="coerce")


def run(path: str, countries: str = "all") -> dict:
    """Counts per country (in, kept, rejected by reason) and the selected voucher per segment."""
    df = pd.read_parquet(path, columns=COLUMNS)
    df["country_key"] = df["country_code"].str.strip().str.lower()
    if countries.strip().lower() == "all":
        df = df[df["country_key"].notna() & (df["country_key"] != "")]
    else:
        df = df[df["country_key"].isin([c.strip().lower() for c in countries.split(",")])]

    voucher, last, first = (_time(df[c]) for c in ("timestamp", "last_order_ts", "first_order_ts"))
    orders, amount = _number(df["total_orders"]), _number(df["voucher_amount"])
    voucher_day, last_day, first_day = (t.dt.normalize() for t in (voucher, last, first))
    conditions = [
        df.duplicated(subset=COLUMNS, keep="first"),
        orders.isna() | amount.isna() | voucher.isna() | last.isna() | first.isna(),
        (orders < 0) | (orders % 1 != 0) | (amount <= 0) | np.isinf(amount),
        orders == 0,
        first_day > last_day,
        voucher_day < last_day,
    ]
    df["reason"] = np.select(conditions, REASONS, default="")

    kept = df[df["reason"] == ""].assign(
        voucher_amount=amount, frequency=orders, recency_days=(voucher_day - last_day).dt.days
    )
    selections = {}
    for name, (measure, bounds) in SEGMENTS.items():
        values = kept[measure]
        kept[name] = np.select(
            [(values >= lo) & (values <= hi) for _, lo, hi in bounds],
            [label for label, _, _ in bounds],
            default="",
        )
        counts = (
            kept[kept[name] != ""]
            .groupby(["country_key", name, "voucher_amount"])
            .size()
            .reset_index(name="rows")
        )
        counts = counts.sort_values(
            ["country_key", name, "rows", "voucher_amount"], ascending=[True, True, False, True]
        )
        for row in counts.drop_duplicates(["country_key", name]).itertuples(index=False):
            selections[f"{row.country_key}/{name}/{getattr(row, name)}"] = float(row.voucher_amount)

    per_reason = df.groupby(["country_key", "reason"]).size()
    result = {}
    for key, rows_in in df.groupby("country_key").size().items():
        by_reason = per_reason.get(key, pd.Series(dtype=int))
        result[key] = {
            "rows_in": int(rows_in),
            "rows_kept": int(by_reason.get("", 0)),
            "rejected_by_reason": {code: int(by_reason.get(code, 0)) for code in REASONS},
        }
    return {"countries": result, "selections": selections}
