"""The API over HTTP under ``chalice local``, and schemathesis against its OpenAPI document."""

from __future__ import annotations

import json
import urllib.request

import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.calls import SAMPLE

#: Per operation and generation mode; keeps `make test` quick while covering every route.
MAX_EXAMPLES = 40


def test_the_spec_sample_over_http(local_api, published):
    request = urllib.request.Request(
        f"{local_api}/voucher", data=json.dumps(SAMPLE).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        answer = json.load(response)
    assert answer["voucher_amount"] == 2640
    assert isinstance(answer["voucher_amount"], int)


def schema_of(api_url: str, max_examples: int):
    """The API's OpenAPI document as schemathesis tests it: valid and invalid input."""
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=max_examples,
        deterministic=True,
    )
    # chalice local's http.server answers 501 to methods it has no handler for (TRACE, QUERY);
    # API Gateway never forwards those to the Lambda, so they say nothing about the API.
    schema.config.phases.coverage.unexpected_methods = {"get", "put", "post", "delete", "patch",
                                                        "options"}
    return schema


@pytest.fixture
def api_schema(local_api, published):
    return schema_of(local_api, MAX_EXAMPLES)


schema = schemathesis.pytest.from_fixture("api_schema")


#: What every answer must satisfy: no 5xx; status, content type, headers and body as documented;
#: invalid input refused.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]


@schema.parametrize()
def test_every_answer_matches_the_openapi_document(case):
    case.call_and_validate(checks=CHECKS)
