"""Parsing and validation of a ``POST /voucher`` body into a :class:`VoucherRequest`.

Timestamps count by their UTC date, like the pipeline: a naive timestamp is UTC, an aware one is
converted to UTC first. Every refusal is an :class:`~chalicelib.api.errors.ApiError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, NoReturn

from chalicelib.api.errors import ApiError, bad_request
from chalicelib.rules import MAX_WHOLE_ORDERS, WHITESPACE, decimal_number

MAX_BODY_BYTES = 64 * 1024
#: ``POST /vouchers``: customers per request, the body's size, and the fields it may give once.
MAX_BATCH_ITEMS = 1000
MAX_BATCH_BODY_BYTES = 2 * 2**20
BATCH_DEFAULTS = ("country_code", "segment_name", "timestamp", "strict")
MAX_CUSTOMER_ID_CHARS = 200

# The patterns below are the OpenAPI document's (tests/stack/api/test_routes.py compares them),
# written for both Python's re and ECMA regexes: no lookaround, ``[0-9]`` rather than ``\\d``.
_YEAR = r"(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)"  # 0001 to 9999
_MONTH_DAY = (
    r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
    r"|(?:0[13578]|1[02])-31)"
)
_FOURS = r"(?:0[48]|[2468][048]|[13579][26])"  # two digits divisible by 4, 00 aside
_LEAP_DAY = rf"(?:[0-9]{{2}}{_FOURS}|{_FOURS}00)-02-29"  # leap years: 4 | y, and 400 | y for 100s
_TIME = r"[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:[.][0-9]{1,9})?)?"
_OFFSET = r"(?:Z|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)"
#: A real calendar date ``YYYY-MM-DD`` (years 1 to 9999), optionally with a time of day
#: (``T`` or a space, ``HH:MM[:SS[.f]]``) and ``Z`` or an offset: ISO 8601 as Python reads it.
TIMESTAMP_PATTERN = f"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_DAY})(?:{_TIME}{_OFFSET}?)?$"
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)
_SPACES = "".join(f"\\u{ord(c):04x}" for c in WHITESPACE)
#: ``total_orders`` text with an exponent: the exponent 0 to this, the value below 10 to it.
MAX_ORDERS_EXPONENT = 15
_ORDERS_HINT = (
    f"a non-negative whole number up to {MAX_WHOLE_ORDERS}: a JSON number, or text such as"
    f' "15", "15.0" or "1.5e1" (an exponent from 0 to {MAX_ORDERS_EXPONENT}, the value then'
    f" below 10^{MAX_ORDERS_EXPONENT})"
)


def _digits(low: int, high: int) -> str:
    """``low`` to ``high`` digits, as a regular expression."""
    count = "" if low == high == 1 else f"{{{low}}}" if low == high else f"{{{low},{high}}}"
    return "" if high == 0 else f"[0-9]{count}"


def _up_to(bound: int) -> str:
    """The whole numbers 0 to ``bound`` (at least 10), in digits without leading zeros: fewer
    digits than ``bound``, or as many and smaller at the first digit that differs."""
    digits = str(bound)
    smaller = [
        digits[:i]
        + (f"[{int(i == 0)}-{int(d) - 1}]" if int(d) - 1 > int(i == 0) else str(int(d) - 1))
        + _digits(len(digits) - i - 1, len(digits) - i - 1)
        for i, d in enumerate(digits)
        if int(d) > int(i == 0)
    ]
    return "|".join(["0", f"[1-9]{_digits(0, len(digits) - 2)}", *smaller, digits])


def _shifted(exponent: int) -> str:
    """Mantissas whose value times 10^``exponent`` is whole and below 10^MAX_ORDERS_EXPONENT:
    at most MAX_ORDERS_EXPONENT - ``exponent`` significant digits before the point, and none
    but zeros after the ``exponent``-th digit after it."""
    room = MAX_ORDERS_EXPONENT - exponent
    whole = f"0*[1-9]{_digits(0, room - 1)}|0+" if room else "0+"
    fraction = f"[.]{_digits(0, exponent)}0*"
    alone = f"[.]{_digits(1, exponent)}0*" if exponent else "[.]0+"
    return f"(?:{whole})(?:{fraction})?|{alone}"


#: ``total_orders`` text the API accepts, as the OpenAPI document states it: a non-negative whole
#: number in the pipeline's decimal notation (``rules.DECIMAL_NUMBER``, whitespace around it),
#: with no sign but ``+``: digits (leading zeros allowed) and an optional fraction of zeros, up to
#: ``MAX_WHOLE_ORDERS``; or digits and a fraction with an exponent from 0 to
#: ``MAX_ORDERS_EXPONENT`` (``1.5e1``, ``1.500000e+01``), the value below 10^MAX_ORDERS_EXPONENT.
#: Whole values only, exactly: a regular expression can state that much, where an exponent of
#: any size would need arithmetic.
ORDERS_TEXT_PATTERN = (
    f"^[{_SPACES}]*[+]?(?:0*(?:{_up_to(MAX_WHOLE_ORDERS)})(?:[.]0*)?|[.]0+"
    + "".join(f"|(?:{_shifted(e)})[eE][+]?0*{e}" for e in range(MAX_ORDERS_EXPONENT + 1))
    + f")[{_SPACES}]*$"
)
_ORDERS_TEXT = re.compile(ORDERS_TEXT_PATTERN)
_EXPONENTS = "|".join(str(e) for e in range(MAX_ORDERS_EXPONENT + 1))
#: The ``ORDERS_TEXT_PATTERN`` text whose value is 0 (the document: then no order dates).
ZERO_ORDERS_TEXT_PATTERN = (
    f"^[{_SPACES}]*[+]?(?:0+(?:[.]0*)?|[.]0+)(?:[eE][+]?0*(?:{_EXPONENTS}))?[{_SPACES}]*$"
)
#: Blank text: nothing but whitespace (``rules.WHITESPACE``); the document says "not" this.
BLANK_PATTERN = f"^[{_SPACES}]*$"
#: Longest ``total_orders`` text (the document's ``maxLength``): longer is no number anyone wrote.
MAX_NUMBER_TEXT = 100


def names_pattern(names: tuple[str, ...]) -> str:
    """One or more of ``names``, comma-separated: a query parameter's pattern."""
    one = f"(?:{'|'.join(names)})"
    return f"^{one}(?:,{one})*$"


def parse_names(text: str, names: tuple[str, ...], field: str) -> frozenset[str]:
    """The names a query parameter lists (:func:`names_pattern`); 400 for anything else."""
    if not re.fullmatch(names_pattern(names), text):
        raise bad_request(
            "invalid_field",
            f"{field} must be one or more of {', '.join(names)}, comma-separated",
            field,
        )
    return frozenset(text.split(","))


@dataclass(frozen=True)
class VoucherRequest:
    """A validated voucher request; dates are UTC dates, ``moment`` the voucher's date."""

    customer_id: int | str | None
    country_code: str
    segment_name: str
    total_orders: int | None
    last_order: date | None
    first_order: date | None
    moment: date
    strict: bool


def parse_voucher_request(raw_body: bytes | str | None, today: date) -> VoucherRequest:
    """Validate a request body; ``today`` (a UTC date) stands in for an absent ``timestamp``."""
    return voucher_request(_json_object(raw_body, MAX_BODY_BYTES), today)


def parse_batch(raw_body: bytes | str | None) -> list[dict[str, Any]]:
    """The customers of a ``POST /vouchers`` body, each with the body's shared fields
    (``BATCH_DEFAULTS``) where it gives none of its own; a 400 unless ``customers`` is a list of
    at most ``MAX_BATCH_ITEMS`` objects."""
    body = _json_object(raw_body, MAX_BATCH_BODY_BYTES)
    customers = body.get("customers")
    if not isinstance(customers, list) or not all(isinstance(c, dict) for c in customers):
        raise bad_request(
            "invalid_field",
            "customers must be a list of objects, each a POST /voucher body",
            "customers",
        )
    if len(customers) > MAX_BATCH_ITEMS:
        raise bad_request(
            "too_many_items",
            f"customers has {len(customers)} items; the limit is {MAX_BATCH_ITEMS} per request",
            "customers",
        )
    shared = {f: body[f] for f in BATCH_DEFAULTS if body.get(f) is not None}
    return [shared | {f: v for f, v in c.items() if v is not None} for c in customers]


def voucher_request(body: dict[str, Any], today: date) -> VoucherRequest:
    """Validate one customer's fields (a ``POST /voucher`` body, or an item of a list)."""
    last_order = _date(body, "last_order_ts")
    first_order = _date(body, "first_order_ts")
    moment = _date(body, "timestamp") or today
    total_orders = _orders(body)
    _check_order_of_dates(first_order, last_order, moment, body.get("timestamp") is not None)
    if total_orders == 0 and (last_order or first_order):
        raise bad_request(
            "impossible_value",
            "total_orders is 0 but the customer has order dates: send the number of orders "
            "placed, or leave the order dates out",
            "total_orders",
        )
    return VoucherRequest(
        customer_id=_customer_id(body),
        country_code=_text(body, "country_code"),
        segment_name=_text(body, "segment_name"),
        total_orders=total_orders,
        last_order=last_order,
        first_order=first_order,
        moment=moment,
        strict=_strict(body),
    )


def _json_object(raw_body: bytes | str | None, max_bytes: int) -> dict[str, Any]:
    raw = raw_body.encode() if isinstance(raw_body, str) else (raw_body or b"")
    if len(raw) > max_bytes:
        raise ApiError(
            413, "body_too_large", f"the body is {len(raw)} bytes; the limit is {max_bytes}"
        )
    if not raw.strip():
        raise bad_request("malformed_json", "the body is empty: send a JSON object")
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise bad_request("malformed_json", "the body is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        message = f"the body is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})"
        raise bad_request("malformed_json", message) from None
    except RecursionError:
        raise bad_request("malformed_json", "the body is nested too deeply to be read") from None
    except ValueError:  # NaN or Infinity, a number too long to convert
        raise bad_request("malformed_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("malformed_json", "the body must be a JSON object")
    return body


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _missing(field: str) -> ApiError:
    return bad_request("missing_field", f"{field} is required", field)


def _ill_typed(field: str, expected: str) -> ApiError:
    return bad_request("invalid_field", f"{field} must be {expected}", field)


def _text(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if value is None:
        raise _missing(field)
    if not isinstance(value, str) or not value.strip(WHITESPACE):
        raise _ill_typed(field, "a non-empty string")
    return value


def _customer_id(body: dict[str, Any]) -> int | str | None:
    value = body.get("customer_id")
    ok = (
        value is None
        or (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, str) and 0 < len(value) <= MAX_CUSTOMER_ID_CHARS)
    )
    if not ok:
        expected = f"an integer or a string of 1 to {MAX_CUSTOMER_ID_CHARS} characters"
        raise _ill_typed("customer_id", expected)
    return value


def _strict(body: dict[str, Any]) -> bool:
    value = body.get("strict")
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _ill_typed("strict", "true or false")
    return value


def _orders(body: dict[str, Any]) -> int | None:
    """A whole, non-negative number of orders: a JSON number, or text as
    ``ORDERS_TEXT_PATTERN`` states it (``"15"``, ``"15.0"``, ``" 1.5e1 "``)."""
    value = body.get("total_orders")
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) <= MAX_NUMBER_TEXT and _ORDERS_TEXT.fullmatch(value):
            return int(Decimal(value.strip(WHITESPACE)))
        # Refused either way; a negative whole number is named as such.
        number = decimal_number(value) if len(value) <= MAX_NUMBER_TEXT else None
        value = number if number is not None and number < 0 else None
    if isinstance(value, int) and not isinstance(value, bool):
        orders = value
    elif isinstance(value, float) and value.is_integer():
        orders = int(value)
    else:
        raise _ill_typed("total_orders", _ORDERS_HINT)
    if orders < 0:
        message = f"total_orders cannot be negative: {orders}"
        raise bad_request("impossible_value", message, "total_orders")
    if orders > MAX_WHOLE_ORDERS:
        raise _ill_typed("total_orders", f"at most {MAX_WHOLE_ORDERS}")
    return orders


def _date(body: dict[str, Any], field: str) -> date | None:
    """The UTC date of a timestamp field, ``None`` when absent."""
    value = body.get(field)
    if value is None:
        return None
    shape = "a timestamp such as 2018-05-03, 2018-05-03 00:00:00 or 2018-05-03T00:00:00Z"
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        raise _ill_typed(field, shape)
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC)  # 9999-12-31T23:00-05:00 is past the calendar's end
    except (ValueError, OverflowError) as e:
        message = f"{field} is not a real moment ({e}): {value}"
        raise bad_request("invalid_field", message, field) from None
    return moment.date()


def _check_order_of_dates(
    first_order: date | None, last_order: date | None, moment: date, moment_given: bool
) -> None:
    """First order, last order and the voucher's moment must come in that order (by date)."""
    moment_name = "timestamp" if moment_given else "today's date (UTC)"
    pairs = (
        ("first_order_ts", first_order, "last_order_ts", last_order),
        ("last_order_ts", last_order, moment_name, moment),
        ("first_order_ts", first_order, moment_name, moment),
    )
    for early_name, early, late_name, late in pairs:
        if early is not None and late is not None and early > late:
            raise bad_request(
                "impossible_value",
                f"{early_name} ({early.isoformat()}) is after {late_name} ({late.isoformat()})",
                early_name,
            )
