"""The selection criteria: per published country, its rules, selected vouchers and run."""

from __future__ import annotations

from chalicelib.api.errors import bad_request
from chalicelib.api.published import CountryResult, Published
from chalicelib.api.responses import amount
from chalicelib.rules import WHITESPACE, Segment


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
        "fallback": {
            "voucher_amount": amount(fallback.voucher_amount),
            "voucher_rows": fallback.voucher_rows,
            "country_rows": fallback.country_rows,
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
    return {
        "segment": segment.label,
        "lower_bound": segment.lower,
        "upper_bound": segment.upper,
        "voucher_amount": amount(selection.voucher_amount) if selection else None,
        "voucher_rows": selection.voucher_rows if selection else 0,
        "segment_rows": selection.segment_rows if selection else 0,
    }
