"""The selection criteria: per published country, its rules, selected vouchers and run, and on
request the details behind them (:mod:`chalicelib.api.detail`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.api.detail import Details, load_details
from chalicelib.api.errors import bad_request
from chalicelib.api.published import CountryResult, LastChange, Published
from chalicelib.api.responses import amount, amount_or_none
from chalicelib.db import Connection
from chalicelib.rules import WHITESPACE, Segment
from chalicelib.runs import FALLBACK_KEY, AmountUsage, Choice

#: Runs a query on the API's database connection (``PublishedStore.read``).
Reader = Callable[[Callable[[Connection], Details]], Details]


def selection_criteria(
    published: Published,
    country: str | None,
    details: frozenset[str] = frozenset(),
    read: Reader | None = None,
) -> dict[str, Any]:
    """Every published country, or only ``country`` (matched like the pipeline does), with the
    ``details`` asked for, read through ``read``."""
    if country is None:
        countries = list(published.countries.values())
    elif not country.strip(WHITESPACE):
        raise bad_request("invalid_field", "country must be a country name such as Peru", "country")
    else:
        countries = [published.country(country, "country")]
    found = None
    if details and read is not None:
        served = {c.stats.country_key: c.run.run_id for c in countries}
        found = read(lambda conn: load_details(conn, served, details))
    return {"countries": [_country_criteria(c, details, found) for c in countries]}


def _country_criteria(
    country: CountryResult, details: frozenset[str], found: Details | None
) -> dict[str, Any]:
    stats, run, fallback = country.stats, country.run, country.fallback
    key = stats.country_key
    return {
        "country_code": country.name,
        "country_key": stats.country_key,
        "run": {
            "run_id": run.run_id,
            "source": {"bucket": run.source.bucket, "key": run.source.key, "etag": run.source.etag},
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "published_at": run.published_at,
        },
        "rows": {
            "in": stats.rows_in,
            "kept": stats.rows_kept,
            "rejected": stats.rows_rejected,
            "rejected_by_reason": stats.rejected_by_reason,
            "unsegmented": stats.unsegmented,
        },
        "min_segment_rows": country.min_segment_rows,
        "fallback": {
            "voucher_amount": amount(fallback.voucher_amount),
            "voucher_rows": fallback.voucher_rows,
            "country_rows": fallback.country_rows,
            **strength(
                fallback.voucher_rows,
                fallback.country_rows,
                fallback.runner_up_amount,
                fallback.runner_up_rows,
            ),
            "last_changed": _last_changed(country.last_changed.get(FALLBACK_KEY)),
            **_choice_details((key, *FALLBACK_KEY), details, found),
        },
        "segment_rules": [
            {
                "segment_name": rule.name,
                "measure": rule.measure,
                "description": rule.description,
                "segments": [
                    {
                        **_segment_criteria(country, rule.name, seg),
                        **_choice_details((key, rule.name, seg.label), details, found),
                    }
                    for seg in rule.segments
                ],
            }
            for rule in country.rules.values()
        ],
        **(
            {"recent_runs": [vars(r) for r in found.recent_runs.get(key, [])]}
            if found is not None and "changes" in details
            else {}
        ),
    }


def _choice_details(
    choice: Choice, details: frozenset[str], found: Details | None
) -> dict[str, Any]:
    """A choice's details as asked for: its ``usage`` (``None`` where its run did not record
    one), and its ``changes`` over the country's last runs, newest first."""
    shown: dict[str, Any] = {}
    if found is None:
        return shown
    if "usage" in details:
        recorded = choice[0] in found.recorded
        shown["usage"] = _usage(found.usage.get(choice, [])) if recorded else None
    if "changes" in details:
        shown["changes"] = [
            {
                "run_id": c.run_id,
                "changed_at": c.changed_at,
                "old_voucher_amount": amount_or_none(c.old_amount),
                "new_voucher_amount": amount_or_none(c.new_amount),
                "old_share": c.old_share,
                "new_share": c.new_share,
            }
            for c in found.changes.get(choice, [])
        ]
    return shown


def _usage(bars: list[AmountUsage]) -> dict[str, Any]:
    """The rows of each amount, most used first, and the "other" bucket past the limit."""
    other = [
        {"rows": u.voucher_rows, "amounts": u.amounts} for u in bars if u.voucher_amount is None
    ]
    return {
        "amounts": [
            {"voucher_amount": amount(u.voucher_amount), "rows": u.voucher_rows}
            for u in bars
            if u.voucher_amount is not None
        ],
        "other": other[0] if other else None,
    }


def _segment_criteria(
    country: CountryResult, segment_name: str, segment: Segment
) -> dict[str, Any]:
    selection = country.selections.get((segment_name, segment.label))
    rows = selection.segment_rows if selection else 0
    return {
        "segment": segment.label,
        "lower_bound": segment.lower,
        "upper_bound": segment.upper,
        "voucher_amount": amount(selection.voucher_amount) if selection else None,
        "voucher_rows": selection.voucher_rows if selection else 0,
        "segment_rows": rows,
        **strength(
            selection.voucher_rows if selection else 0,
            rows,
            selection.runner_up_amount if selection else None,
            selection.runner_up_rows if selection else 0,
        ),
        "below_min_rows": rows < country.min_segment_rows,
        "last_changed": _last_changed(country.last_changed.get((segment_name, segment.label))),
    }


def strength(rows: int, total: int, runner_up: float | None, runner_up_rows: int) -> dict[str, Any]:
    """How strong a selection is: the winner's share of the rows, the runner-up, and the lead
    (the winner's share minus the runner-up's; the whole share when it had no rival)."""
    if not total:
        return {"share": None, "runner_up": None, "lead": None}
    share, rival = rows / total, runner_up_rows / total
    return {
        "share": share,
        "runner_up": None
        if runner_up is None
        else {"voucher_amount": amount(runner_up), "voucher_rows": runner_up_rows, "share": rival},
        "lead": share - rival,
    }


def _last_changed(change: LastChange | None) -> dict[str, Any] | None:
    if change is None:
        return None
    return {
        "run_id": change.run_id,
        "changed_at": change.changed_at,
        "old_voucher_amount": amount_or_none(change.old_amount),
    }
