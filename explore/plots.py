"""The report's figures, drawn with matplotlib from a profile (see :mod:`explore.profile`).

Every function takes the profile dict and returns a :class:`~matplotlib.figure.Figure`; nothing
here computes a statistic the profile does not hold, except the re-binning of its exact counts.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, PercentFormatter

from chalicelib import rules
from chalicelib.text import amount_text
from explore.profile import MEASURE

KEPT_COLOUR = "#2e7d32"
IN_COLOUR = "#9e9e9e"
REASON_COLOURS = dict(
    zip(
        rules.REASON_CODES,
        ("#6a1b9a", "#ef6c00", "#c62828", "#1565c0", "#00838f", "#ad1457"),
        strict=True,
    )
)
#: Bin widths tried for a distribution, smallest first, until it has at most MAX_BINS bins.
BIN_WIDTHS = (1, 2, 5, 7, 10, 14, 30, 60, 90, 180, 365)
MAX_BINS = 150
THOUSANDS = FuncFormatter(lambda value, _: f"{value:,.0f}")


def countries(profile: dict) -> list[tuple[str, str]]:
    """``(country_key, name)`` of every in-scope country, in key order."""
    return [(c["country_key"], c["country"]) for c in profile["run"]["countries"]]


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _grid(count: int, title: str, row_height: float = 3.4, **options) -> tuple[Figure, list]:
    """A figure with one panel per country, two per row; unused panels hidden."""
    columns = 2 if count > 1 else 1
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(12, 0.9 + row_height * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False, **options)).ravel()
    for unused in axes[count:]:
        unused.set_visible(False)
    figure.suptitle(title, fontsize=14, fontweight="bold")
    return figure, list(axes[:count])


def waterfall(profile: dict) -> Figure:
    """Rows in, rows removed by each cleaning rule in the order applied, rows kept."""
    stats = profile["run"]["countries"]
    figure, axes = _grid(len(stats), "Rows removed by each cleaning rule, in order", sharey=True)
    labels = ["rows in", *(f"{n}. {code}" for n, code in enumerate(rules.REASON_CODES, 1)), "kept"]
    for ax, country in zip(axes, stats, strict=True):
        remaining, rows_in = country["rows_in"], country["rows_in"]
        bars = [(0, rows_in, IN_COLOUR, f"{rows_in:,}")]
        for code in rules.REASON_CODES:
            removed = country["rejected_by_reason"][code]
            remaining -= removed
            share = f" ({removed / rows_in:.1%})" if removed >= rows_in / 1000 else ""
            text = f"−{removed:,}{share}" if removed else "0"
            bars.append((remaining, removed, REASON_COLOURS[code], text))
        bars.append((0, country["rows_kept"], KEPT_COLOUR, f"{country['rows_kept']:,}"))
        y = np.arange(len(bars))
        ax.barh(y, [b[1] for b in bars], left=[b[0] for b in bars], color=[b[2] for b in bars])
        for position, (left, width, _, text) in zip(y, bars, strict=True):
            ax.text(left + width, position, f" {text}", va="center", fontsize=8)
        ax.set_yticks(y, labels)
        ax.set_ylim(len(bars) - 0.5, -0.5)  # top down; shared, so not invert_yaxis per panel
        ax.set_xlim(0, rows_in * 1.35 or 1)
        ax.xaxis.set_major_formatter(THOUSANDS)
        ax.set_xlabel("rows")
        ax.set_title(country["country"])
    return figure


def _bin_width(span: int) -> int:
    return next((w for w in BIN_WIDTHS if span / w <= MAX_BINS), BIN_WIDTHS[-1])


def _display_range(measure_name: str, entries: list[dict]) -> tuple[int, int]:
    """From the measure's lower limit to the 95th percentile of all rows (at least the last
    bounded segment and a margin)."""
    measure = MEASURE[measure_name]
    low = max(measure.low, 0)
    values = np.array([c[0] for e in entries for c in e["counts"]] or [low])
    rows = np.array([c[1] for e in entries for c in e["counts"]] or [0])
    order = np.argsort(values)
    cumulative = np.cumsum(rows[order])
    high = int(values[order][np.searchsorted(cumulative, 0.95 * cumulative[-1])]) + 1
    if measure.segment_rule:
        rule = next(r for r in rules.SEGMENT_RULES if r.name == measure.segment_rule)
        high = max(high, max(s.upper or s.lower for s in rule.segments) + 20)
    return low, max(high, low + 10)


def _segment_bands(ax, rule_name: str, high: int) -> None:
    """Shade each segment of the rule, mark its bounds and label it at the top."""
    rule = next(r for r in rules.SEGMENT_RULES if r.name == rule_name)
    for n, segment in enumerate(rule.segments):
        left = segment.lower - 0.5
        right = (segment.upper if segment.upper is not None else high) + 0.5
        ax.axvspan(left, right, color="#fbc02d" if n % 2 else "#4fc3f7", alpha=0.15, lw=0)
        for bound in (left, right) if segment.upper is not None else (left,):
            ax.axvline(bound, color="#555555", lw=0.8, ls="--")
        ax.text(
            (left + min(right, high)) / 2,
            0.98,
            segment.label,
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=8,
            color="#333333",
        )


def distribution(profile: dict, measure_name: str) -> Figure:
    """One measure per country: all in-scope rows and kept rows, segment bounds drawn."""
    measure = MEASURE[measure_name]
    per_country = profile["distributions"][measure_name]
    keys = [(k, n) for k, n in countries(profile) if k in per_country]
    low, high = _display_range(measure_name, [per_country[k] for k, _ in keys])
    width = _bin_width(high - low)
    edges = np.arange(low - 0.5, high + width, width)
    unit = measure.unit
    title = f"Distribution of {measure.label.split(':')[0].split(' (')[0]}"
    if measure.segment_rule:
        title += f" with the {measure.segment_rule} bounds"
    figure, axes = _grid(len(keys), title)
    for ax, (key, name) in zip(axes, keys, strict=True):
        counts = np.array(per_country[key]["counts"] or [[low, 0, 0]], dtype=float)
        values = counts[:, 0]
        shown = (values >= low) & (values < edges[-1])
        all_rows, _ = np.histogram(values[shown], edges, weights=counts[shown, 1])
        kept_rows, _ = np.histogram(values[shown], edges, weights=counts[shown, 2])
        ax.stairs(all_rows, edges, fill=True, color=IN_COLOUR, alpha=0.5, label="all in-scope rows")
        ax.stairs(kept_rows, edges, color=KEPT_COLOUR, lw=1.4, label="kept rows")
        if measure.segment_rule:
            _segment_bands(ax, measure.segment_rule, high)
        below = per_country[key]["below"][0] + counts[values < low, 1].sum()
        above = per_country[key]["above"][0] + counts[values >= edges[-1], 1].sum()
        ax.set_title(
            f"{name}\nnot shown: {below:,.0f} rows < {low} {unit}, {above:,.0f} rows > "
            f"{edges[-1] - 0.5:,.0f} {unit}",
            fontsize=10,
        )
        ax.set_xlim(edges[0], edges[-1])
        ax.set_ylim(0, max(all_rows.max(), 1) * 1.12)
        ax.set_xlabel(measure.label)
        ax.set_ylabel(f"rows per {width} {unit}" if width > 1 else f"rows per {unit[:-1]}")
        ax.yaxis.set_major_formatter(THOUSANDS)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2)
    return figure


def amounts(profile: dict) -> Figure:
    """Kept rows per voucher amount and country; the most used one (the fallback) stands out."""
    keys = [(k, n) for k, n in countries(profile) if k in profile["mix"]]
    fallback = {f["country_key"]: f["voucher_amount"] for f in profile["run"]["fallbacks"]}
    figure, axes = _grid(len(keys), "Voucher amounts of kept rows (darkest: most used)")
    for ax, (key, name) in zip(axes, keys, strict=True):
        mix = profile["mix"][key]["all"]
        total = sum(rows for _, rows in mix)
        colours = [KEPT_COLOUR if a == fallback.get(key) else "#a5d6a7" for a, _ in mix]
        bars = ax.bar(range(len(mix)), [rows for _, rows in mix], color=colours)
        ax.bar_label(bars, [f"{rows / total:.0%}" for _, rows in mix], fontsize=8)
        ax.set_xticks(range(len(mix)), [amount_text(a) for a, _ in mix])
        ax.set_title(f"{name} ({total:,} kept rows)")
        ax.set_xlabel("voucher_amount (currency units as stored)")
        ax.set_ylabel("kept rows")
        ax.margins(y=0.12)
        ax.yaxis.set_major_formatter(THOUSANDS)
    return figure


def mix(profile: dict, country_key: str) -> Figure:
    """Share of each voucher amount in every segment of one country, the selection marked."""
    name = dict(countries(profile))[country_key]
    entry = profile["mix"][country_key]
    selected = {
        (s["segment_name"], s["segment"]): s
        for s in profile["run"]["selections"]
        if s["country_key"] == country_key
    }
    fallback = next(f for f in profile["run"]["fallbacks"] if f["country_key"] == country_key)
    all_amounts = [a for a, _ in entry["all"]]
    palette = dict(zip(all_amounts, _palette(len(all_amounts)), strict=True))
    rows = [("all kept rows (fallback)", entry["all"], fallback["voucher_amount"])]
    for rule in rules.SEGMENT_RULES:
        for segment in rule.segments:
            choice = selected.get((rule.name, segment.label))
            rows.append(
                (
                    f"{rule.name} {segment.label}",
                    entry["segments"][rule.name].get(segment.label, []),
                    choice and choice["voucher_amount"],
                )
            )
    figure = Figure(figsize=(12, 1.4 + 0.42 * len(rows)), layout="constrained")
    ax = figure.subplots()
    for y, (_, counts, chosen) in enumerate(rows):
        total = sum(n for _, n in counts)
        left = 0.0
        for amount, n in counts:
            share = 100 * n / total
            ax.barh(
                y,
                share,
                left=left,
                color=palette[amount],
                edgecolor="black" if amount == chosen else "white",
                lw=2 if amount == chosen else 0.5,
            )
            left += share
        note = (
            f"selected {amount_text(chosen)}: {dict(counts)[chosen]:,} of {total:,} rows"
            if chosen is not None
            else "no kept rows: the country's fallback answers"
        )
        ax.text(101, y, note, va="center", fontsize=9)
    ax.set_yticks(range(len(rows)), [label for label, _, _ in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.xaxis.set_major_formatter(PercentFormatter())
    ax.set_xlabel("share of the segment's kept rows (%)")
    ax.set_ylabel("segment (segment_name and bounds)")
    ax.set_title(
        f"{name}: voucher mix per segment (outlined: the selected amount)",
        fontsize=13,
        fontweight="bold",
    )
    handles = [Patch(color=palette[a], label=amount_text(a)) for a in all_amounts]
    figure.legend(
        handles=handles,
        title="voucher_amount",
        loc="outside lower center",
        ncols=len(handles),
        fontsize=9,
    )
    return figure


def _palette(count: int) -> list:
    return [colormaps["tab10"](n % 10) for n in range(count)]


def by_year(profile: dict) -> Figure:
    """Rows per year of the voucher's timestamp: kept, or rejected by the rule that caught them."""
    keys = [(k, n) for k, n in countries(profile) if k in profile["by_year"]]
    figure, axes = _grid(len(keys), "Rows by year of the voucher: kept or rejected (first rule)")
    outcomes = [("rows_kept", "kept", KEPT_COLOUR)] + [
        (code, code, REASON_COLOURS[code]) for code in rules.REASON_CODES
    ]
    for ax, (key, name) in zip(axes, keys, strict=True):
        years = profile["by_year"][key]
        x = np.arange(len(years))
        bottom = np.zeros(len(years))
        ax.set_ylim(0, max(y["rows_in"] for y in years.values()) * 1.08 or 1)
        for field, label, colour in outcomes:
            heights = np.array([years[y][field] for y in years], dtype=float)
            ax.bar(x, heights, bottom=bottom, color=colour, label=label, width=0.6)
            bottom += heights
        ax.set_xticks(x, list(years))
        ax.set_title(name)
        ax.set_xlabel("year of the voucher (timestamp)")
        ax.set_ylabel("rows")
        ax.yaxis.set_major_formatter(THOUSANDS)
    figure.legend(
        *axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=4, fontsize=9
    )
    return figure


def figures(profile: dict) -> Iterator[tuple[str, Figure]]:
    """Every figure of the report as ``(slug, figure)``, one at a time (none without an
    in-scope row)."""
    if not countries(profile):
        return
    yield "waterfall", waterfall(profile)
    yield "by_year", by_year(profile)
    for measure in profile["distributions"]:
        yield f"distribution_{measure}", distribution(profile, measure)
    yield "amounts", amounts(profile)
    for key, _ in countries(profile):
        if key in profile["mix"]:
            yield f"mix_{key}", mix(profile, key)
