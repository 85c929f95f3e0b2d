"""The usual public solution's data access, for comparison: one SQL query per request.

A request is parsed, validated and given its segment exactly as the API does (``chalicelib``);
then, instead of the published result the API holds in memory, one query asks PostgreSQL for the
segment's voucher of the published run, and the country's fallback.
"""

from __future__ import annotations

from datetime import date

from chalicelib import rules
from chalicelib.api.errors import ApiError, bad_request, not_found
from chalicelib.api.request import parse_voucher_request
from chalicelib.api.responses import amount
from chalicelib.api.voucher import MEASURES

QUERY = """
SELECT s.voucher_amount, f.voucher_amount
FROM published_country p
JOIN country_fallback f ON f.run_id = p.run_id AND f.country_key = p.country_key
LEFT JOIN voucher_selection s ON s.run_id = p.run_id AND s.country_key = p.country_key
    AND s.segment_name = %s AND s.segment = %s
WHERE p.country_key = %s
"""
RULES = {rule.name: rule for rule in rules.SEGMENT_RULES}


def answer(conn, raw_body: bytes, today: date) -> tuple[int, dict]:
    """``(status, body)`` for one ``POST /voucher`` body, with one query when it is valid."""
    try:
        request = parse_voucher_request(raw_body, today)
        rule = RULES.get(request.segment_name)
        if rule is None:
            raise bad_request("unknown_segment_name", "unknown segment_name", "segment_name")
        field, measure = MEASURES[rule.measure]
        value = measure(request)
        if value is None:
            raise bad_request("missing_field", f"{field} is required for {rule.name}", field)
        segment = rule.segment_for(value)
        with conn.cursor() as cur:
            cur.execute(QUERY, (rule.name, segment, rules.country_key(request.country_code)))
            row = cur.fetchone()
        if row is None:
            raise not_found("country_not_published", "no published result", "country_code")
    except ApiError as error:
        return error.status, error.body()
    selected, fallback = row
    basis = "segment" if selected is not None else "country"
    voucher = amount(selected if selected is not None else fallback)
    return 200, {"voucher_amount": voucher, "segment": segment, "basis": basis}
