"""Errors that arise before a handler runs, in the product's one error shape.

Chalice answers a wrong method (405) or a wrong content type (415) itself, with a body of its own
(``{"Code", "Message"}``); :func:`one_error_shape`, an HTTP middleware, rewrites those answers.
The development server's own refusals (an unknown route, and a keyed route without the local
key) are rewritten in ``infra/local/serve.py`` and API Gateway's in the app stack's gateway
responses, with the same codes.
"""

from __future__ import annotations

from chalice.app import Response

from chalicelib.api.errors import ApiError, internal_error
from chalicelib.api.responses import error_response

#: An unknown path (and, in the cloud, a method a route does not declare): the message everywhere.
UNKNOWN_ROUTE_MESSAGE = "no route answers this method and path; the routes are in /openapi.json"


def _method_not_allowed(response: Response) -> ApiError:
    allowed = response.headers.get("Allow", "")
    return ApiError(
        405,
        "method_not_allowed",
        f"this route answers {allowed or 'other methods'} only; the routes are in /openapi.json",
    )


def _unsupported_media_type(response: Response) -> ApiError:
    return ApiError(
        415,
        "unsupported_media_type",
        "this route takes a JSON body: send Content-Type: application/json",
    )


#: Chalice's error names -> the product's error for them.
_CHALICE_ERRORS = {
    "MethodNotAllowedError": _method_not_allowed,
    "UnsupportedMediaType": _unsupported_media_type,
}


def unknown_route() -> ApiError:
    return ApiError(404, "unknown_route", UNKNOWN_ROUTE_MESSAGE)


def api_key_required() -> ApiError:
    """A keyed route (prod) called without the stage's key: API Gateway's refusal (the app
    stack's gateway response), and the local stage's when it requires a key."""
    return ApiError(
        403, "api_key_required", "this route needs a valid API key in the x-api-key header"
    )


def one_error_shape(response: Response) -> Response:
    """``response`` itself, or Chalice's own error answer rewritten in the product's shape."""
    body = response.body
    if not (isinstance(body, dict) and set(body) == {"Code", "Message"}):
        return response
    rewrite = _CHALICE_ERRORS.get(body["Code"])
    if rewrite is not None:
        error = rewrite(response)
    elif response.status_code >= 500:  # Chalice caught an exception: it has logged it
        error = internal_error()
    else:
        error = ApiError(response.status_code, "bad_request", str(body["Message"]))
    rewritten = error_response(error)
    rewritten.headers = {**response.headers, **rewritten.headers}  # Allow, CORS
    return rewritten
