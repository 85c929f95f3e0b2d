"""The API over HTTP under ``chalice local``, and schemathesis against its OpenAPI document."""

from __future__ import annotations

import base64
import json
import os
import random
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

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


#: Per operation and generation mode, for the run without the project's hooks.
MAX_EXAMPLES_WITHOUT_HOOKS = 25
#: The refusals of valid-looking bodies that the document states only in words: a date after a
#: later one (first order, last order, the voucher's moment or today).
DATES_OUT_OF_ORDER = re.compile(r"(first|last)_order_ts \([-0-9]+\) is after ")


def failed_checks(events: Path) -> tuple[int, list[tuple]]:
    """The cases schemathesis ran (from its event stream) and, for each failed check, the
    operation, the check, the status and the error body of the answer."""
    cases, failed = 0, []
    for line in events.read_text().splitlines():
        scenario = json.loads(line).get("ScenarioFinished")
        if not scenario:
            continue
        recorded = scenario["recorder"]
        for case_id, checks in recorded.get("checks", {}).items():
            cases += 1
            response = recorded["interactions"][case_id]["response"]
            body = response["content"]
            text = base64.b64decode(body["$base64"]) if isinstance(body, dict) else body
            failed += [
                (recorded["label"], c["name"], response["status_code"], json.loads(text))
                for c in checks
                if c["status"] == "failure"
            ]
    return cases, failed


def test_without_hooks_only_dates_out_of_order_are_refused(local_api, published, tmp_path):
    """schemathesis as a client would run it: every check, a fresh seed, none of the project's
    hooks. The one rule the document states only in words, dates in order, is all it can find:
    every other constraint (``total_orders`` text, 0 orders with no order dates) is in it."""
    seed = random.SystemRandom().randrange(2**31)
    events = tmp_path / "events.ndjson"
    command = [
        *(str(Path(sys.executable).with_name("st")), "run", f"{local_api}/openapi.json"),
        *("--checks", "all", "--seed", str(seed), "--workers", "1", "--continue-on-failure"),
        *("--max-examples", str(MAX_EXAMPLES_WITHOUT_HOOKS), "--report", "ndjson"),
        *("--report-ndjson-path", str(events), "--report-dir", str(tmp_path)),
    ]
    env = {k: v for k, v in os.environ.items() if k != "SCHEMATHESIS_HOOKS"}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    cases, failed = failed_checks(events)
    assert cases > 200, (seed, run.stdout[-2000:])
    others = [
        f
        for f in failed
        if f[:3] != ("POST /voucher", "positive_data_acceptance", 400)
        or f[3]["error"]["code"] != "impossible_value"
        or not DATES_OUT_OF_ORDER.match(f[3]["error"]["message"])
    ]
    assert others == [], f"seed {seed}: {others[:5]}"
    assert run.returncode == (1 if failed else 0), (seed, run.stdout[-2000:])
