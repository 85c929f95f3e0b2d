"""The selection criteria: per published country, its rules, selected vouchers and run."""

from __future__ import annotations

from chalicelib.api.errors import bad_request
from chalicelib.api.published import CountryResult, LastChange, Published
from chalicelib.api.responses import amount
from chalicelib.rules import WHITESPACE, Segment
from chalicelib.runs import FALLBACK_KEY


def selection_criteria(published: Published, country: str | None) -> dict:
    """Every published country, or only ``country`` (matched like the pipeline does)."""
    if country is None:
        countries = list(published.countries.values())
    elif not country.strip(WHITESPACE):
        raise bad_request("invalid_field", "country must be a country name such as Peru", "country")
    else:
        countries = [published.country(country, "country")]
    return {"countries": [_country_criteria(c) for c in countries]}


def _country_criteria(country: CountryResult) -> dict:
    stats, run, fallback = country.stats, country.run, country.fallback
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
        },
        "segment_rules": [
            {
                "segment_name": rule.name,
                "measure": rule.measure,
                "description": rule.description,
                "segments": [_segment_criteria(country, rule.name, seg) for seg in rule.segments],
            }
            for rule in country.rules.values()
        ],
    }


def _segment_criteria(country: CountryResult, segment_name: str, segment: Segment) -> dict:
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


def strength(rows: int, total: int, runner_up: float | None, runner_up_rows: int) -> dict:
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


def _last_changed(change: LastChange | None) -> dict | None:
    if change is None:
        return None
    old = None if change.old_amount is None else amount(change.old_amount)
    return {"run_id": change.run_id, "changed_at": change.changed_at, "old_voucher_amount": old}
