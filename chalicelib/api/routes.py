"""The HTTP routes, declared once: a Chalice Blueprint that ``app.py`` registers. Each route is a
few lines calling the module that does the work, and never answers with a stack trace: a refusal
is an :class:`ApiError` in the error shape; anything unexpected is logged (passwords redacted)
and answered with a generic 500 in the same shape.
"""

from __future__ import annotations

import functools
import logging
import re
import traceback
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from chalice import Blueprint
from chalice.app import Response

from chalicelib import settings
from chalicelib.api.batch import answer_vouchers
from chalicelib.api.criteria import selection_criteria
from chalicelib.api.detail import parse_details
from chalicelib.api.errors import ApiError, internal_error
from chalicelib.api.request import parse_batch, parse_voucher_request
from chalicelib.api.responses import (
    JSON_TYPE,
    error_response,
    json_response,
    page_response,
    text_response,
)
from chalicelib.api.run_history import latest_runs, one_run, parse_limit, parse_statuses
from chalicelib.api.store import default_store
from chalicelib.api.voucher import answer_voucher
from chalicelib.db import redact

log = logging.getLogger(__name__)

api = Blueprint(__name__)
STATIC_DIR = Path(__file__).with_name("static")


def api_key_required() -> bool:
    """Whether the stage asks for the API key (prod): its ``API_KEY_REQUIRED`` variable."""
    return settings.API_KEY_REQUIRED.read()


#: Where a stage asks for the API key (prod), every route with the product's answers or its
#: operational data (buckets, keys, ETags, errors) asks for it; /health then says only "ok".
#: /selection_criteria is keyed, not a public view: its core is the winning voucher of every
#: segment, every answer of POST /voucher at once, which a view without sources, ETags and row
#: counts would still give away.
KEYED = api_key_required()


@functools.cache
def static_text(name: str) -> str:
    """A file served as it is (the OpenAPI document), read once."""
    return (STATIC_DIR / name).read_text(encoding="utf-8")


#: ``/* include name */`` in a page: the static file ``name`` goes there (what the pages share:
#: ``pages.css``, ``pages.js``), so that each page stays one self-contained answer.
_INCLUDE = re.compile(r"/\* include ([a-z_]+\.(?:css|js)) \*/")


@functools.cache
def page(name: str) -> str:
    """A page with what it includes, assembled once."""
    return _INCLUDE.sub(lambda found: static_text(found[1]), static_text(name))


def answers(view: Callable[..., object]) -> Callable[..., Response]:
    """A view's answer as a response: a JSON body (or the view's own response), or its error."""

    @functools.wraps(view)
    def run(**path_params: str) -> Response:  # Chalice passes a path's parameters by name
        try:
            answer = view(**path_params)
        except ApiError as e:
            return error_response(e)
        except Exception:
            log.error("%s failed: %s", view.__name__, redact(traceback.format_exc()))
            return error_response(internal_error())
        return answer if isinstance(answer, Response) else json_response(answer)

    return run


def _today() -> date:
    return datetime.now(UTC).date()


@api.route("/voucher", methods=["POST"], content_types=["*/*"], api_key_required=KEYED)
@answers
def voucher() -> dict[str, Any]:
    parsed = parse_voucher_request(api.current_request.raw_body, today=_today())
    return answer_voucher(parsed, default_store().published())


@api.route("/vouchers", methods=["POST"], content_types=["*/*"], api_key_required=KEYED)
@answers
def vouchers() -> dict[str, Any]:
    """A list of customers, answered from the one snapshot ``published()`` returns: a publish
    during the request cannot mix runs."""
    customers = parse_batch(api.current_request.raw_body)
    return answer_vouchers(customers, default_store().published(), _today())


@api.route("/selection_criteria", methods=["GET"], api_key_required=KEYED)
@answers
def criteria() -> dict[str, Any]:
    query: Mapping[str, str] = api.current_request.query_params or {}
    details = parse_details(query.get("detail"))
    store = default_store()
    return selection_criteria(store.published(), query.get("country"), details, store.read)


# The pages are public (their HTML holds no data); what they show comes from the routes above,
# with the key where the stage requires one.
@api.route("/search_voucher", methods=["GET"])
@answers
def search_page() -> Response:
    return page_response(page("search_voucher.html"))


@api.route("/selection", methods=["GET"])
@answers
def selection_page() -> Response:
    return page_response(page("selection.html"))


@api.route("/health", methods=["GET"])
@answers
def health() -> Response:
    """The service's health; where the stage keys its routes, an anonymous caller's answer is
    its status alone (the published runs and the database are operational data)."""
    status, body = default_store().health()
    if api_key_required():
        body = {"status": body["status"]}
    return json_response(body, status)


@api.route("/runs", methods=["GET"], api_key_required=KEYED)
@answers
def runs() -> dict[str, Any]:
    query = api.current_request.query_params
    limit, statuses = parse_limit(query), parse_statuses(query)
    return {"runs": default_store().read(lambda conn: latest_runs(conn, limit, statuses))}


@api.route("/runs/page", methods=["GET"])
@answers
def runs_page() -> Response:
    return page_response(page("runs.html"))


@api.route("/runs/{run_id}", methods=["GET"], api_key_required=KEYED)
@answers
def run(run_id: str) -> dict[str, Any]:
    return default_store().read(lambda conn: one_run(conn, run_id))


@api.route("/openapi.json", methods=["GET"])
@answers
def openapi() -> Response:
    return text_response(static_text("openapi.json"), JSON_TYPE)
