"""Vouchers for a list of customers: each item answered like ``POST /voucher``, all from one
published snapshot, an item's refusal kept as its own answer."""

from __future__ import annotations

from datetime import date
from typing import Any

from chalicelib.api.errors import ApiError
from chalicelib.api.published import Published
from chalicelib.api.request import voucher_request
from chalicelib.api.voucher import answer_voucher
from chalicelib.rules import country_key


def answer_vouchers(
    customers: list[dict[str, Any]], published: Published, today: date
) -> dict[str, Any]:
    """``{"results": [...]}`` in the customers' order (an answer, or ``{"error", "index"}``), and
    ``runs``: the run that answered for each country named in an answer."""
    results: list[dict[str, Any]] = []
    for index, customer in enumerate(customers):
        try:
            results.append(answer_voucher(voucher_request(customer, today), published))
        except ApiError as refused:
            results.append({**refused.body(), "index": index})
    answered = {r["country_code"] for r in results if "error" not in r}
    runs = {name: published.countries[country_key(name)].run.run_id for name in sorted(answered)}
    return {"results": results, "runs": runs}
