"""Every refusal a client can receive has the product's error shape, the ones Chalice and its
development server make before a handler runs included: in-process through the app (the Lambda's
view) and over HTTP through ``chalice local``. The cloud's gateway responses are checked in the
packaged template (tests/unit/infra/test_chalice_package.py)."""

from __future__ import annotations

import http.client
import json
import socket
from urllib.parse import urlsplit

import pytest

from chalicelib.api.edge import UNKNOWN_ROUTE_MESSAGE, api_key_required
from infra.local import serve
from infra.local.serve import LOCAL_API_KEY
from scripts.sample_runs import SAMPLE
from tests.helpers import assert_error, schema_of


def _shape(status: int, headers, body: bytes) -> tuple[int, dict]:
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(body)


def test_a_wrong_method_is_a_405_that_names_the_allowed_one(client):
    response = client.http.get("/voucher")
    answer = _shape(response.status_code, response.headers, response.body)
    assert_error(answer, 405, "method_not_allowed", None)
    assert "POST" in answer[1]["error"]["message"]
    assert response.headers["Allow"] == "POST"


def test_a_wrong_content_type_is_a_415_in_the_error_shape(client):
    response = client.http.get("/health", headers={"Content-Type": "text/csv"})
    assert_error(
        _shape(response.status_code, response.headers, response.body),
        415,
        "unsupported_media_type",
        None,
    )


def _over_http(
    url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, dict]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return _shape(response.status, response.headers, response.read())
    finally:
        connection.close()


@pytest.mark.parametrize(
    "method, path", [("GET", "/nowhere"), ("POST", "/voucher/extra"), ("GET", "/runs/1/2")]
)
def test_an_unknown_route_is_a_404_over_chalice_local(local_api, method, path):
    answer = _over_http(local_api, method, path)
    assert_error(answer, 404, "unknown_route", None)
    assert answer[1]["error"]["message"] == UNKNOWN_ROUTE_MESSAGE


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "TRACE", "PROPFIND"])
def test_any_method_a_route_does_not_declare_is_a_405_over_chalice_local(local_api, method):
    assert_error(_over_http(local_api, method, "/voucher"), 405, "method_not_allowed", None)


def test_a_wrong_content_type_is_a_415_over_chalice_local(local_api):
    answer = _over_http(
        local_api, "GET", "/selection_criteria", headers={"Content-Type": "text/csv"}
    )
    assert_error(answer, 415, "unsupported_media_type", None)


def test_a_request_http_server_refuses_is_in_the_error_shape(local_api):
    parts = urlsplit(local_api)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as raw:
        raw.sendall(b"GET /health HTTP/1.1\r\nX-Long: " + b"x" * 70_000 + b"\r\n\r\n")
        reply = b""
        while chunk := raw.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")  # a header line over http.server's limit
    assert b"Content-Type: application/json" in head
    assert_error((431, json.loads(body)), 431, "bad_http_request", None)


def test_the_openapi_document_lists_every_edge_error_code(local_api):
    document = schema_of(local_api, max_examples=1).raw_schema
    codes = set(
        document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"][
            "enum"
        ]
    )
    assert {
        "unknown_route",
        "method_not_allowed",
        "unsupported_media_type",
        "bad_http_request",
    } <= codes


def test_a_keyed_local_stage_answers_its_keyed_routes_only_with_its_key(keyed_api, published):
    """As API Gateway does in prod: a keyed route without the key, or with another, is the
    gateway's 403; public routes (the pages' HTML, the document, /health) need none."""
    url, key = keyed_api
    voucher = json.dumps(SAMPLE).encode()
    json_type = {"Content-Type": "application/json"}
    for given in ({}, {"x-api-key": "not-the-key"}, {"X-API-Key": key.upper()}):
        assert _over_http(url, "GET", "/runs", headers=given) == (403, api_key_required().body())
        refused = _over_http(url, "POST", "/voucher", voucher, {**json_type, **given})
        assert refused == (403, api_key_required().body())
    assert _over_http(url, "GET", "/runs?limit=1", headers={"x-api-key": key})[0] == 200
    answer = _over_http(url, "POST", "/voucher", voucher, {**json_type, "X-Api-Key": key})
    assert answer[0] == 200 and answer[1]["voucher_amount"] == 2640
    assert _over_http(url, "GET", "/health")[1] == {"status": "ok"}
    for page in ("/search_voucher", "/selection", "/runs/page"):
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        connection.request("GET", page)
        assert connection.getresponse().status == 200
        connection.close()


def test_a_keyed_local_stage_will_not_start_without_its_key(monkeypatch, capsys):
    monkeypatch.setenv("API_KEY_REQUIRED", "true")
    monkeypatch.delenv(LOCAL_API_KEY, raising=False)
    assert serve.main(["--port", "1"]) == 2
    assert f"set {LOCAL_API_KEY}" in capsys.readouterr().err
