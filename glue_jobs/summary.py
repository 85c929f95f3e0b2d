"""A run's summary as plain-text tables (job log, ``make pipeline``)."""

from __future__ import annotations

from chalicelib import rules, runs
from chalicelib.text import amount_text
from glue_jobs.pipeline import RunOutcome


def _share(amount: float, rows: int, total: int) -> str:
    return f"{amount_text(amount)} ({rows:,}/{total:,})"


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned first column, right-aligned numbers, a rule under the header."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def format_summary(outcome: RunOutcome) -> str:
    """Rows in, kept and rejected per reason, then the selected voucher per segment, per country."""
    result = outcome.result
    stats = result.countries
    header = ["", *(s.country for s in stats)]
    counts = [
        ["rows in", *(f"{s.rows_in:,}" for s in stats)],
        ["kept", *(f"{s.rows_kept:,}" for s in stats)],
        *(
            [f"rejected: {code}", *(f"{s.rejected_by_reason[code]:,}" for s in stats)]
            for code in rules.REASON_CODES
        ),
        *(
            [f"kept without {r.name}", *(f"{s.unsegmented[r.name]:,}" for s in stats)]
            for r in rules.SEGMENT_RULES
        ),
    ]
    chosen = {(s.country_key, s.segment_name, s.segment): s for s in result.selections}
    fallback = {f.country_key: f for f in result.fallbacks}
    published = [s.country for s in stats if s.country_key in outcome.published]

    selections = [
        [
            f"{rule.name} {seg.label}",
            *(
                _share(c.voucher_amount, c.voucher_rows, c.segment_rows)
                if (c := chosen.get((s.country_key, rule.name, seg.label)))
                else "-"
                for s in stats
            ),
        ]
        for rule in rules.SEGMENT_RULES
        for seg in rule.segments
    ]
    selections.append(
        [
            "country fallback",
            *(
                _share(f.voucher_amount, f.voucher_rows, f.country_rows)
                if (f := fallback.get(s.country_key))
                else "-"
                for s in stats
            ),
        ]
    )
    return "\n".join(
        [
            f"Run {outcome.run_id}: {result.rows_read:,} rows read, "
            f"{result.rows_out_of_scope:,} out of scope",
            "",
            _table(header, counts),
            "",
            "Selected voucher per segment (rows with that amount / rows in the segment)",
            _table(header, selections),
            "",
            f"Published: {', '.join(published) or 'nothing'}",
            *(_serving(s, outcome) for s in stats),
            *_changed(outcome),
            *_registered(outcome),
        ]
    )


def _changed(outcome: RunOutcome) -> list[str]:
    """Per country published, the selections that differ from the result it replaced."""
    if not outcome.published:
        return []
    names = {s.country_key: s.country for s in outcome.result.countries}
    lines = ["", "What changed (against the result each published country replaced)"]
    for key in outcome.published:
        changes = [c for c in outcome.changes if c.country_key == key]
        if changes and changes[0].replaced_run_id is None:
            lines.append(f"  {names[key]}: its first result ({len(changes)} selections)")
        elif not changes:
            lines.append(f"  {names[key]}: no selection changed")
        else:
            lines.append(f"  {names[key]}, against run {changes[0].replaced_run_id}:")
            lines.extend(
                f"    {c.segment_name or 'country'} {c.segment or 'fallback'}: "
                f"{_with_share(c.old_amount, c.old_share)} -> "
                f"{_with_share(c.new_amount, c.new_share)}"
                for c in changes
            )
    return lines


def _with_share(amount: float | None, share: float | None) -> str:
    return "none" if amount is None or share is None else f"{amount_text(amount)} ({share:.0%})"


def _registered(outcome: RunOutcome) -> list[str]:
    if not outcome.registered:
        return []
    added = ", ".join(f"{n} new partition(s) of {table}" for table, n in outcome.registered.items())
    return [f"Lake tables: {added}"]


def _serving(stats: runs.CountryStats, outcome: RunOutcome) -> str:
    """Which run serves a country of the run now, and why when it is another one."""
    serving = outcome.serving.get(stats.country_key)
    if serving == outcome.run_id:
        return f"  {stats.country} is served by run {serving} (this run)"
    if serving is None:
        return f"  {stats.country} is not served: no kept rows"
    why = "no kept rows" if stats.rows_kept == 0 else "it read a newer upload"
    return f"  {stats.country} is served by run {serving} ({why})"
