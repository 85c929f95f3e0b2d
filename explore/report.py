"""The report: one self-contained HTML page (figures embedded as PNG) and a JSON summary.

The page links no outside resource and runs no script, so it opens offline in any browser.
"""

from __future__ import annotations

import base64
import json
from collections import Counter, defaultdict
from collections.abc import Collection
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from urllib.parse import urlparse

from chalicelib import rules
from chalicelib.text import amount_text
from explore import plots
from explore.profile import MEASURE, NO_COUNTRY

SUFFIXES = (".parquet", ".gzip", ".gz", ".snappy")
CAPTIONS = {
    "waterfall": "Each row is rejected by the first rule it fails, in the pipeline's order; "
    "the bars are the run statistics of glue_jobs.pipeline.build_result.",
    "by_year": "Rows per calendar year of the voucher's timestamp, by outcome.",
    "distribution_total_orders": "total_orders as the job parses it, per order; "
    "shaded: the frequent_segment bounds.",
    "distribution_tenure_days": "Days from the first to the last order (no segment uses it).",
    "distribution_recency_days": "Days from the last order to the voucher; shaded: the "
    "recency_segment bounds. Negative values (vouchers dated before the last order) are counted "
    "in the panel titles.",
    "amounts": "Kept rows per voucher amount; the darkest bar is the country's fallback.",
}
STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1240px;margin:auto;padding:1rem 2rem 4rem;background:#fff}
h1{margin-bottom:.2rem} h2{border-bottom:2px solid #ddd;padding-top:1rem}
.meta{color:#555} code{background:#f2f2f2;padding:0 .25em;border-radius:3px}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:14px}
th,td{border:1px solid #ddd;padding:.25rem .55rem;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums} th{background:#f2f2f2}
figure{margin:1rem 0} img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:14px} nav ol{columns:2}
.decision{margin:.6rem 0} .rule{color:#2e7d32;font-weight:600}
"""


def report_name(source: str) -> str:
    """``eda_<input name>`` without parquet and compression suffixes."""
    name = Path(urlparse(source).path.rstrip("/")).name or "input"
    while name.endswith(SUFFIXES):
        name = name.rsplit(".", 1)[0]
    return f"eda_{name}"


def write(
    profile: dict, folder: Path, figures_folder: Path | None = None, only: Collection[str] = ()
) -> tuple[Path, Path]:
    """Write ``<name>.html`` and ``<name>.json`` into ``folder``; return the two paths.

    With ``figures_folder``, each figure (or those named in ``only``) is also written there as
    ``eda_<slug>.png``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    images = {slug: plots.png(figure) for slug, figure in plots.figures(profile)}
    if figures_folder is not None:
        figures_folder.mkdir(parents=True, exist_ok=True)
        for slug, image in images.items():
            if not only or slug in only:
                (figures_folder / f"eda_{slug}.png").write_bytes(image)
    name = report_name(profile["source"])
    generated = {"generated_at": f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC", **profile}
    html_path, json_path = folder / f"{name}.html", folder / f"{name}.json"
    html_path.write_text(render(generated, images), encoding="utf-8")
    json_path.write_text(json.dumps(generated, indent=1) + "\n", encoding="utf-8")
    return html_path, json_path


def _cell(value) -> str:
    if value is None:
        return "<td>—</td>"
    if isinstance(value, int | float):
        text = amount_text(value) if isinstance(value, float) else f"{value:,}"
        return f'<td class="n">{text}</td>'
    return f"<td>{value}</td>"  # already HTML


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(f"<tr>{''.join(_cell(v) for v in row)}</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(slug: str, images: dict[str, bytes], caption: str = "") -> str:
    if slug not in images:
        return "<p>No in-scope row: nothing to draw.</p>"
    data = base64.b64encode(images[slug]).decode("ascii")
    text = caption or CAPTIONS.get(slug, "")
    return (
        f'<figure id="fig-{slug}"><img alt="{escape(slug.replace("_", " "))}" '
        f'src="data:image/png;base64,{data}"><figcaption>{escape(text)}</figcaption></figure>'
    )


def _country_names(profile: dict) -> dict[str, str]:
    return {NO_COUNTRY: "(no country)", **dict(plots.countries(profile))}


def _overview(profile: dict) -> str:
    run = profile["run"]
    rows = [
        [
            escape(c["country"]),
            c["rows_in"],
            c["rows_kept"],
            c["rows_in"] - c["rows_kept"],
            f"{c['rows_kept'] / c['rows_in']:.1%}" if c["rows_in"] else "—",
        ]
        for c in run["countries"]
    ]
    return (
        f"<p>{run['rows_read']:,} rows read; {run['rows_out_of_scope']:,} without a country "
        f"(out of scope for every run).</p>"
        + _table(["country", "rows in", "kept", "rejected", "kept share"], rows)
    )


def _schema(profile: dict) -> str:
    stored = profile["stored"]
    rows = [
        [
            f"<code>{escape(c['column'])}</code>",
            escape(c["arrow_type"]),
            escape(c["physical_type"]),
            escape(c["logical_type"]),
            escape(str(c["compression"])),
        ]
        for c in stored["columns"]
    ]
    return (
        f"<p>{stored['files']} file(s), {stored['rows']:,} rows in {stored['row_groups']} row "
        f"group(s), {stored['bytes']:,} bytes, written by <code>{escape(str(stored['created_by']))}"
        "</code>.</p>"
        + _table(["column", "arrow type", "physical type", "logical type", "compression"], rows)
    )


def _quality(profile: dict) -> str:
    names = _country_names(profile)
    quality = profile["quality"]
    keys = list(quality)
    counted = {c: kinds for q in quality.values() for c, kinds in q["columns"].items()}
    columns = [(c, kind) for c, kinds in counted.items() for kind in kinds]
    rows = [
        [f"<code>{escape(c)}</code>", kind, *(quality[k]["columns"][c][kind] for k in keys)]
        for c, kind in columns
    ]
    spellings = [
        [
            escape(names.get(k, k)),
            ", ".join(
                f"<code>{escape(repr(s))}</code> {n:,}" for s, n in quality[k]["spellings"].items()
            ),
        ]
        for k in keys
    ]
    return (
        "<p>Counted on every row as stored, grouped by the country key (whitespace trimmed, case "
        "ignored).</p>"
        + _table(["column", "count of", *(names.get(k, k) for k in keys)], rows)
        + "<h3>Spellings of <code>country_code</code></h3>"
        + _table(["country", "spellings as stored (rows)"], spellings)
    )


def _distributions(profile: dict, images: dict[str, bytes]) -> str:
    names = _country_names(profile)
    rows = [
        [
            escape(MEASURE[measure].label),
            escape(names[key]),
            *(entry["kept_stats"].get(k) for k in ("rows", "p0", "p50", "p95", "p100")),
        ]
        for measure, per_country in profile["distributions"].items()
        for key, entry in per_country.items()
    ]
    return (
        "<p>Kept rows, exact (nearest rank):</p>"
        + _table(["measure", "country", "kept rows", "min", "median", "p95", "max"], rows)
        + "".join(_figure(f"distribution_{m}", images) for m in profile["distributions"])
    )


def _anomalies(profile: dict, images: dict[str, bytes]) -> str:
    names = _country_names(profile)
    rows = [
        [
            escape(names[key]),
            escape(year),
            stats["rows_in"],
            stats["rows_kept"],
            *(stats[code] for code in rules.REASON_CODES),
        ]
        for key, years in profile["by_year"].items()
        for year, stats in years.items()
    ]
    headers = ["country", "voucher year", "rows in", "kept", *rules.REASON_CODES]
    return (
        "<p>Each rejected row counts under the first rule it fails, as in the pipeline.</p>"
        + _table(headers, rows)
        + _figure("by_year", images)
    )


def _waterfall(profile: dict, images: dict[str, bytes]) -> str:
    countries = profile["run"]["countries"]
    rows = [
        [
            f'<span id="rule-{code}">{n}</span>',
            f"<code>{code}</code>",
            escape(text),
            *(c["rejected_by_reason"][code] for c in countries),
        ]
        for n, (code, text) in enumerate(rules.REASONS.items(), 1)
    ]
    rows.append(["", "kept", "", *(c["rows_kept"] for c in countries)])
    headers = ["#", "reason", "rule", *(c["country"] for c in countries)]
    return _table(headers, rows) + _figure("waterfall", images)


def _selection(profile: dict, images: dict[str, bytes]) -> str:
    names = _country_names(profile)
    position = {(r["segment_name"], r["segment"]): n for n, r in enumerate(rules.rules_to_rows())}
    selections = sorted(
        profile["run"]["selections"],
        key=lambda s: (
            s["country_key"],
            position.get((s["segment_name"], s["segment"]), len(position)),
        ),
    )
    rows = [
        [
            escape(names[s["country_key"]]),
            f"<code>{s['segment_name']}</code>",
            escape(s["segment"]),
            s["voucher_amount"],
            s["voucher_rows"],
            s["segment_rows"],
        ]
        for s in selections
    ] + [
        [
            escape(names[f["country_key"]]),
            "fallback",
            "all kept rows",
            f["voucher_amount"],
            f["voucher_rows"],
            f["country_rows"],
        ]
        for f in profile["run"]["fallbacks"]
    ]
    headers = ["country", "segment_name", "segment", "selected amount", "its rows", "segment rows"]
    mixes = "".join(
        _figure(
            f"mix_{key}",
            images,
            f"{name}: share of each amount in every segment; outlined: "
            "the amount selected by glue_jobs.selection.",
        )
        for key, name in plots.countries(profile)
        if f"mix_{key}" in images
    )
    return _table(headers, rows) + _figure("amounts", images) + mixes


def share(part: int, whole: int) -> str:
    """A percentage that never shows a non-zero count as 0.0%."""
    if not part or not whole:
        return "0%"
    return f"{part / whole:.1%}" if part / whole >= 0.001 else "<0.1%"


def decisions(profile: dict) -> list[tuple[str, str]]:
    """``(finding, decision)`` pairs, in HTML: what the data showed and the rule it motivated."""
    countries = profile["run"]["countries"]
    in_scope = sum(c["rows_in"] for c in countries) or 1

    def removed(code: str) -> str:
        n = sum(c["rejected_by_reason"][code] for c in countries)
        return f"{n:,} rows ({share(n, in_scope)} of in-scope rows)"

    def rule(code: str) -> str:
        n = rules.REASON_CODES.index(code) + 1
        return f'<a class="rule" href="#rule-{code}">rule {n} <code>{code}</code></a>'

    text_columns = [
        c["column"]
        for c in profile["stored"]["columns"]
        if c["logical_type"] == "STRING"
        and rules.column_key(c["column"]) in set(rules.INPUT_COLUMNS) - {"country_code"}
    ]
    quality = profile["quality"].values()
    empty = sum(q["columns"].get("total_orders", {}).get("empty", 0) for q in quality)
    null_amounts = sum(q["columns"].get("voucher_amount", {}).get("null", 0) for q in quality)
    spellings = sum(len(q["spellings"]) for q in quality)
    years: dict[str, Counter] = defaultdict(Counter)
    for per_year in profile["by_year"].values():
        for year, stats in per_year.items():
            years[year].update(stats)
    early = "; ".join(
        f"{n['voucher_before_last_order']:,} of the {n['rows_in']:,} rows dated {year} "
        f"({share(n['voucher_before_last_order'], n['rows_in'])}, {n['rows_kept']:,} of them kept)"
        for year, n in sorted(years.items())
        if n["voucher_before_last_order"]
    )
    empty_segments = ", ".join(
        f"{r.name} {s.label}"
        for r in rules.SEGMENT_RULES
        for s in r.segments
        if not any(s.label in m["segments"][r.name] for m in profile["mix"].values())
    )
    unsegmented = ", ".join(
        f"{c['unsegmented'][r.name]:,} of {escape(c['country'])} by {r.name}"
        for c in countries
        for r in rules.SEGMENT_RULES
        if c["unsegmented"][r.name]
    )
    return [
        (
            f"Columns stored as text: {', '.join(f'<code>{c}</code>' for c in text_columns)}.",
            f"The job parses them; text that is not a number or a date counts as missing "
            f"({rule('missing_value')}).",
        ),
        (
            f"<code>total_orders</code> is the empty string in {empty:,} rows and "
            f"<code>voucher_amount</code> is null in {null_amounts:,}.",
            f"{rule('missing_value')} removes {removed('missing_value')}.",
        ),
        (
            f"Exact duplicates of another row: {removed('duplicate_row')}.",
            f"{rule('duplicate_row')} keeps one copy.",
        ),
        (
            f"<code>total_orders</code> = 0 although the customer has order dates: "
            f"{removed('zero_orders_with_order_dates')} (after rules 1–3).",
            f"{rule('zero_orders_with_order_dates')} rejects them.",
        ),
        (
            f"Vouchers dated before the customer's last order: {early or 'none'}.",
            f"{rule('voucher_before_last_order')} removes {removed('voucher_before_last_order')}.",
        ),
        (
            f"Negative or fractional orders, amounts ≤ 0: {removed('invalid_value')}; first order "
            f"after the last: {removed('first_after_last')}.",
            f"{rule('invalid_value')} and {rule('first_after_last')} guard against them.",
        ),
        (
            f"{spellings} spellings of <code>country_code</code> for {len(countries)} countries.",
            "Countries are matched with whitespace trimmed and case ignored "
            "(<code>chalicelib.rules.country_key</code>).",
        ),
        (
            f"Kept rows outside every segment: {unsegmented or 'none'}. Segments without a kept "
            f"row in any country: {empty_segments or 'none'}.",
            "Such a row is kept and counted as unsegmented, and such a segment has no selection; "
            "for those customers the API answers with the country's most used amount "
            "(<code>basis: country</code>).",
        ),
    ]


def render(profile: dict, images: dict[str, bytes]) -> str:
    """The whole page."""
    stored = profile["stored"]
    sections = [
        ("overview", "Rows per country", _overview(profile)),
        ("schema", "Schema and physical types as stored", _schema(profile)),
        ("quality", "Nulls and empty strings per column and country", _quality(profile)),
        ("distributions", "Distributions", _distributions(profile, images)),
        ("anomalies", "Anomalies by voucher year", _anomalies(profile, images)),
        ("waterfall", "Rows removed by each cleaning rule", _waterfall(profile, images)),
        (
            "selection",
            "Voucher mix per segment and the selected amount",
            _selection(profile, images),
        ),
        (
            "decisions",
            "Decisions: each finding and the rule it motivated",
            "".join(
                f'<p class="decision">{finding}<br>→ {decision}</p>'
                for finding, decision in decisions(profile)
            ),
        ),
    ]
    toc = "".join(f'<li><a href="#{sid}">{escape(title)}</a></li>' for sid, title, _ in sections)
    body = "".join(
        f'<section id="{sid}"><h2>{escape(title)}</h2>{html}</section>'
        for sid, title, html in sections
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Voucher history profile: {escape(profile["source"])}</title>
<style>{STYLE}</style></head>
<body><main>
<h1>Voucher history profile</h1>
<p class="meta">Input <code>{escape(profile["source"])}</code>: {stored["rows"]:,} rows,
{stored["bytes"]:,} bytes. Generated {escape(profile.get("generated_at", ""))} by
<code>python -m explore</code> (<code>make eda</code>).</p>
<p>How: the schema comes from the parquet footers (pyarrow). Every other number comes from one
local Spark session running the pipeline's own functions on all rows, no sampling:
<code>check_input</code>, <code>select_in_scope</code> (every country),
<code>distinct_rows</code>, <code>classify</code>, <code>assign_segments</code>, the
<code>tally</code> of the outputs <code>kept_rows</code> and <code>rejected_rows</code>, then
<code>build_result</code> for the waterfall and the selection. Distributions are exact counts per
order or per day aggregated in Spark, re-binned for the plots.</p>
<nav><ol>{toc}</ol></nav>
{body}
</main></body></html>
"""
