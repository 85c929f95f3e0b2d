"""The route handlers: each takes Chalice's request and returns a response, never a stack trace.

A refusal is an :class:`ApiError` rendered in the error shape; anything unexpected is logged
(passwords redacted) and answered with a generic 500 in the same shape.
"""

from __future__ import annotations

import functools
import logging
import os
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from chalice.app import Request, Response

from chalicelib.api.batch import answer_vouchers
from chalicelib.api.criteria import selection_criteria
from chalicelib.api.errors import ApiError, internal_error
from chalicelib.api.request import parse_batch, parse_voucher_request
from chalicelib.api.responses import (
    JSON_TYPE,
    error_response,
    json_response,
    page_response,
    text_response,
)
from chalicelib.api.run_history import latest_runs, one_run, parse_limit
from chalicelib.api.store import default_store
from chalicelib.api.voucher import answer_voucher
from chalicelib.db import redact

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")


@functools.cache
def static_text(name: str) -> str:
    """A file served as it is (the OpenAPI document, the search page), read once."""
    return (STATIC_DIR / name).read_text(encoding="utf-8")


def guarded(handler: Callable[..., Response]) -> Callable[..., Response]:
    @functools.wraps(handler)
    def run(request: Request, *path_params: str) -> Response:
        try:
            return handler(request, *path_params)
        except ApiError as e:
            return error_response(e)
        except Exception:
            log.error("%s failed: %s", handler.__name__, redact(traceback.format_exc()))
            return error_response(internal_error())

    return run


@guarded
def voucher(request: Request) -> Response:
    parsed = parse_voucher_request(request.raw_body, today=datetime.now(UTC).date())
    return json_response(answer_voucher(parsed, default_store().published()))


@guarded
def vouchers(request: Request) -> Response:
    """A list of customers, answered from the one snapshot ``published()`` returns: a publish
    during the request cannot mix runs."""
    customers = parse_batch(request.raw_body)
    today = datetime.now(UTC).date()
    return json_response(answer_vouchers(customers, default_store().published(), today))


@guarded
def criteria(request: Request) -> Response:
    country = (request.query_params or {}).get("country")
    return json_response(selection_criteria(default_store().published(), country))


def api_key_required() -> bool:
    """Whether the stage asks for the API key (prod): its ``API_KEY_REQUIRED`` variable."""
    return os.environ.get("API_KEY_REQUIRED") == "true"


@guarded
def health(request: Request) -> Response:
    """The service's health; where the stage keys its routes, an anonymous caller's answer is
    its status alone (the published runs and the database are operational data)."""
    status, body = default_store().health()
    if api_key_required():
        body = {"status": body["status"]}
    return json_response(body, status)


@guarded
def search_page(request: Request) -> Response:
    return page_response(static_text("search_voucher.html"))


@guarded
def openapi(request: Request) -> Response:
    return text_response(static_text("openapi.json"), JSON_TYPE)


@guarded
def runs(request: Request) -> Response:
    limit = parse_limit(request.query_params)
    return json_response({"runs": default_store().read(lambda conn: latest_runs(conn, limit))})


@guarded
def run(request: Request, run_id: str) -> Response:
    return json_response(default_store().read(lambda conn: one_run(conn, run_id)))
