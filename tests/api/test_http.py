"""The API over HTTP under ``chalice local``, and schemathesis against its OpenAPI document."""

from __future__ import annotations

import json
import urllib.request

import pytest
import schemathesis

from scripts.sample_runs import SAMPLE
from tests.helpers import schema_of

#: Per operation and generation mode; keeps `make test` quick while covering every route.
MAX_EXAMPLES = 40


def test_the_spec_sample_over_http(local_api, published):
    request = urllib.request.Request(
        f"{local_api}/voucher",
        data=json.dumps(SAMPLE).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        answer = json.load(response)
    assert answer["voucher_amount"] == 2640
    assert isinstance(answer["voucher_amount"], int)


@pytest.fixture
def api_schema(local_api, published):
    return schema_of(local_api, MAX_EXAMPLES)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_every_answer_matches_the_openapi_document(case):
    case.call_and_validate()  # every check schemathesis has
