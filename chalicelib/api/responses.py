"""HTTP responses: JSON answers, errors in the one error shape, pages and files."""

from __future__ import annotations

import json
from datetime import date

from chalice import Response

from chalicelib.api.errors import ApiError

JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"
#: The pages are self-contained: they may run their inline code and call this API, nothing else.
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def amount(value: float) -> int | float:
    """A voucher amount as an integer when whole, else the float."""
    return int(value) if float(value).is_integer() else value


def amount_or_none(value: float | None) -> int | float | None:
    """:func:`amount`, where there may be none."""
    return None if value is None else amount(value)


def _encode(value: object) -> str:
    if isinstance(value, date):  # datetimes too
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_response(body: object, status: int = 200) -> Response:
    text = json.dumps(body, default=_encode, separators=(",", ":"), allow_nan=False)
    return text_response(text, JSON_TYPE, status)


def error_response(error: ApiError) -> Response:
    return json_response(error.body(), error.status)


def text_response(text: str, content_type: str, status: int = 200) -> Response:
    return Response(body=text, status_code=status, headers={"Content-Type": content_type})


def page_response(html: str) -> Response:
    return Response(
        body=html,
        status_code=200,
        headers={
            "Content-Type": HTML_TYPE,
            "Content-Security-Policy": PAGE_POLICY,
            "X-Content-Type-Options": "nosniff",
        },
    )
