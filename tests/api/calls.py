"""Calls to the API through Chalice's test client, and the shape every error must have."""

from __future__ import annotations

import json

SAMPLE = {"customer_id": 123, "country_code": "Peru", "last_order_ts": "2018-05-03 00:00:00",
          "first_order_ts": "2017-05-03 00:00:00", "total_orders": 15,
          "segment_name": "recency_segment"}


def post(client, body) -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.http.post("/voucher", headers={"Content-Type": "application/json"},
                                body=raw)
    return response.status_code, json.loads(response.body)


def get(client, path: str) -> tuple[int, dict]:
    response = client.http.get(path)
    assert response.headers["Content-Type"] == "application/json"
    return response.status_code, json.loads(response.body)


def assert_error(status_body, status: int, code: str, field: str | None):
    got_status, body = status_body
    assert (got_status, body) == (status, {"error": {"code": code, "field": field,
                                                      "message": body["error"]["message"]}})
    assert body["error"]["message"] and "Traceback" not in body["error"]["message"]
