"""The voucher for one customer: segment resolution with the rules the published run used."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.api.errors import bad_request, not_found
from chalicelib.api.published import Published
from chalicelib.api.request import VoucherRequest
from chalicelib.api.responses import amount
from chalicelib.runs import Selection
from chalicelib.text import shown

#: Per measure of the rules: the request field it needs and how it is computed from the request.
MEASURES: dict[str, tuple[str, Callable[[VoucherRequest], int | None]]] = {
    "frequency": ("total_orders", lambda r: r.total_orders),
    "recency_days": (
        "last_order_ts",
        lambda r: None if r.last_order is None else (r.moment - r.last_order).days,
    ),
}


def answer_voucher(request: VoucherRequest, published: Published) -> dict[str, Any]:
    """The segment's most used voucher, or the country's fallback (a 404 in strict mode)."""
    country = published.country(request.country_code, "country_code")
    rule = country.rules.get(request.segment_name)
    if rule is None:
        raise bad_request(
            "unknown_segment_name",
            f"unknown segment_name {shown(request.segment_name)};"
            f" use one of: {', '.join(country.rules)}",
            "segment_name",
        )
    field, measure = MEASURES[rule.measure]
    value = measure(request)
    if value is None:
        raise bad_request("missing_field", f"{field} is required for {rule.name}", field)
    segment = rule.segment_for(value)
    selection = country.selections.get((rule.name, segment)) if segment else None
    why = _why_not_segment(
        rule.name, segment, rule.measure, value, selection, country.min_segment_rows
    )
    if selection is not None and why is None:
        voucher, basis = selection.voucher_amount, "segment"
    elif why is not None and request.strict:
        code, message = why
        raise not_found(
            code,
            f"{message} (strict mode: no fallback)",
            field if code == "no_segment" else "segment_name",
        )
    else:
        voucher, basis = country.fallback.voucher_amount, "country"
    answer = {
        "voucher_amount": amount(voucher),
        "customer_id": request.customer_id,
        "country_code": country.name,
        "segment_name": rule.name,
        "segment": segment,
        "basis": basis,
    }
    if why is not None:
        answer["fallback_reason"] = why[1]
    return answer


def _why_not_segment(
    segment_name: str,
    segment: str | None,
    measure: str,
    value: int,
    selection: Selection | None,
    min_rows: int,
) -> tuple[str, str] | None:
    """Why the segment's own selection does not serve (a code and a message), or ``None``."""
    if segment is None:
        return "no_segment", f"{measure} {value} falls in no segment of {segment_name}"
    if selection is None:
        return (
            "segment_without_history",
            f"segment {segment} of {segment_name} has no voucher history in this country",
        )
    if selection.segment_rows < min_rows:
        return (
            "segment_below_min_rows",
            f"segment {segment} of {segment_name} has {selection.segment_rows} kept rows in"
            f" this country, fewer than the {min_rows} its run requires (MIN_SEGMENT_ROWS)",
        )
    return None
