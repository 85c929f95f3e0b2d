"""API benchmark: the Lambda handler in-process with API Gateway proxy events.

Warm latency over a mix of requests (both segment names, every segment, fallbacks and refusals:
p50/p99/max), cold start in fresh interpreters (import + first answer, and the whole process),
and the size of the package ``chalice package`` built. For comparison, the same requests answered
with one SQL query each (:mod:`benchmarks.sql_per_request`, checked to give the same answers), and
over HTTP through ``chalice local`` (a development server: a reference line only). The published
data live in a throwaway database on the local stack's server, dropped at the end. Results go to
``reports/bench_api.{json,md}``; ``--write`` updates the API section of docs/benchmarks.md.

    make bench-api        # = package, stack up, then this module with --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import psycopg2

from benchmarks import sql_per_request
from benchmarks.report import machine, throwaway_database, write_section
from infra.local.paths import REPO_ROOT
from infra.local.serve import serving
from scripts import sample_runs
from scripts.sample_runs import SAMPLE

SECTION = "## API"
COMMAND = "make bench-api"
#: The moment of every request, so recency and answers do not depend on the day it runs.
MOMENT = date(2018, 12, 1)
#: A stage absent from .chalice/config.json: chalice local runs with this process's environment.
HTTP_STAGE = "bench"

_COLD_PROBE = """
import json, sys, time
event = json.loads(sys.argv[1])
started = time.perf_counter()
import app
imported = time.perf_counter()
answer = app.app(event, None)
answered = time.perf_counter()
assert answer["statusCode"] == 200, answer
print(json.dumps({"import_ms": (imported - started) * 1e3, "total_ms": (answered - started) * 1e3}))
"""


def mixed_requests(count: int, seed: int = 7) -> list[bytes]:
    """``POST /voucher`` bodies: 45% ``frequent_segment`` (0 to 45 orders: every segment and
    beyond), 45% ``recency_segment`` (0 to 400 days: every segment and before the first), 10%
    refused (malformed JSON, unknown segment name, negative orders, no country, a country with
    nothing published); three published countries, spelled as customers do."""
    rng = random.Random(seed)
    bodies = []
    for n in range(count):
        base = {"customer_id": n, "country_code": rng.choice(["Peru", "Latvia", " CHINA "])}
        frequent = {**base, "segment_name": "frequent_segment"}
        kind = rng.random()
        if kind < 0.45:
            body = {**frequent, "total_orders": rng.randint(0, 45)}
        elif kind < 0.90:
            last = MOMENT - timedelta(days=rng.randint(0, 400))
            body = {
                **base,
                "segment_name": "recency_segment",
                "total_orders": 3,
                "last_order_ts": f"{last} 10:00:00",
                "first_order_ts": "2016-01-01",
                "timestamp": MOMENT.isoformat(),
            }
        else:
            body = rng.choice(
                [
                    None,  # not JSON
                    {**base, "segment_name": "loyalty_segment", "total_orders": 3},
                    {**frequent, "total_orders": -2},
                    {"customer_id": n, "segment_name": "frequent_segment", "total_orders": 3},
                    {**frequent, "country_code": "Narnia", "total_orders": 3},
                ]
            )
        bodies.append(
            b'{"customer_id": 1, "country_code": ' if body is None else json.dumps(body).encode()
        )
    return bodies


def batch_requests(count: int, items: int) -> list[bytes]:
    """``POST /vouchers`` bodies of ``items`` customers each, from the same mix (a malformed
    body cannot be an item: it is left out of the lists)."""
    customers = []
    for body in mixed_requests(count * items + count * items // 9 + 10, seed=11):
        with contextlib.suppress(ValueError):
            customers.append(json.loads(body))
    return [
        json.dumps({"customers": customers[i * items : (i + 1) * items]}).encode()
        for i in range(count)
    ]


def proxy_event(
    method: str, path: str, body: bytes | None = None, query: dict[str, str] | None = None
) -> dict:
    """An API Gateway REST proxy event, as API Gateway hands it to the Lambda."""
    headers = {"Content-Type": "application/json", "Host": "api.example.com"}
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/api{path}",
            "stage": "api",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": None if body is None else body.decode(),
        "isBase64Encoded": False,
    }


def timed(call: Callable[[object], int], items: list) -> dict:
    """p50/p99/max milliseconds of ``call(item)`` over ``items``, and the statuses it returned."""
    timings, statuses = [], Counter()
    for item in items:
        started = time.perf_counter_ns()
        statuses[call(item)] += 1
        timings.append(time.perf_counter_ns() - started)
    cuts = statistics.quantiles(timings, n=100, method="inclusive")
    return {
        "requests": len(items),
        "p50": cuts[49] / 1e6,
        "p99": cuts[98] / 1e6,
        "max": max(timings) / 1e6,
        "statuses": dict(sorted(statuses.items())),
    }


def measure_warm(events: list[dict]) -> dict:
    """Through ``app.app(event, context)``, after one warm-up call."""
    import app

    app.app(events[0], None)
    return timed(lambda event: app.app(event, None)["statusCode"], events)


def measure_sql(url: str, bodies: list[bytes]) -> dict:
    """One SQL query per valid request on one open connection (the connection is not timed)."""
    with contextlib.closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        return timed(lambda body: sql_per_request.answer(conn, body, MOMENT)[0], bodies)


def measure_http(bodies: list[bytes]) -> dict:
    """Over HTTP through ``chalice local`` on this process's database, one connection each."""

    def post(body: bytes) -> int:
        request = urllib.request.Request(
            f"{url}/voucher", data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    with (
        tempfile.TemporaryDirectory() as folder,
        serving(dict(os.environ), Path(folder) / "server.log", HTTP_STAGE) as url,
    ):
        post(bodies[0])  # the server's first answer loads the published runs
        return timed(post, bodies)


def answers_agree(url: str, bodies: list[bytes]) -> bool:
    """Whether the API and the one-query baseline give every body the same status and voucher."""
    import app

    def essentials(status: int, body: dict) -> tuple:
        return (
            status,
            *(body.get(k) for k in ("voucher_amount", "segment", "basis")),
            body.get("error", {}).get("code"),
        )

    with contextlib.closing(psycopg2.connect(url)) as conn:
        for body in bodies:
            answer = app.app(proxy_event("POST", "/voucher", body), None)
            mine = essentials(answer["statusCode"], json.loads(answer["body"]))
            if mine != essentials(*sql_per_request.answer(conn, body, MOMENT)):
                return False
    return True


def measure_cold(event: dict, runs: int) -> list[dict[str, float]]:
    """Fresh interpreters: import + first answer inside, and the whole process seen from here."""
    results = []
    for _ in range(runs):
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", _COLD_PROBE, json.dumps(event)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        process_ms = (time.perf_counter() - started) * 1e3
        measured = out.stdout.strip().splitlines()[-1]  # after the app's own log lines
        results.append({**json.loads(measured), "process_ms": process_ms})
    return results


def machine_text() -> str:
    m = machine()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']:.1f} GiB RAM, "
        f"Python {m['python']}, {m['system']}, load average {load} when it ran"
    )


def markdown(report: dict) -> str:
    cold = report["cold"]

    def median(key: str) -> float:
        return statistics.median(r[key] for r in cold)

    def worst(key: str) -> float:
        return max(r[key] for r in cold)

    def latency(name: str) -> str:
        m = report[name]
        statuses = ", ".join(f"{n:,} x {status}" for status, n in m["statuses"].items())
        return f"{m['p50']:.3f} / {m['p99']:.3f} / {m['max']:.2f} ms ({statuses})"

    zip_mib = report["zip_mib"]
    lines = [
        SECTION,
        "",
        f"Command: `{COMMAND}` (`python -m benchmarks.bench_api`). Machine: {report['machine']}.",
        f"Requests: {report['warm']['requests']:,} `POST /voucher` bodies, 45% `frequent_segment` "
        "(0 to 45 orders: every segment and beyond), 45% `recency_segment` (0 to 400 days: every "
        "segment and before the first), 10% refused (malformed JSON, unknown segment name, "
        "negative orders, no country, a country with nothing published), over three published "
        "countries. *In-process*: the Lambda handler `app.app(event, context)` with API Gateway "
        "proxy events, after one warm-up call, the cache's TTL at its default. *One SQL query per "
        "request*: the same parsing and segment rules, then one query to the same PostgreSQL "
        "instead of the result held in memory (what public solutions of this task do); its "
        f"answers equal the API's for every request: **{'yes' if report['agree'] else 'NO'}**. "
        "*HTTP*: `chalice local` (Python's development server, a new connection per request), a "
        "reference line only. Cold start: a fresh interpreter imports `app` and answers one "
        f"`POST /voucher` (connecting to PostgreSQL and loading the published runs), {len(cold)} "
        "runs.",
        "",
        "| measure | result | aim |",
        "|---|---|---|",
        f"| warm `POST /voucher`, in-process, p50 / p99 / max | {latency('warm')} | p99 <= 1 ms |",
        f"| same requests, one SQL query each, p50 / p99 / max | {latency('sql')} | |",
        f"| warm `POST /vouchers` of {report['batch_items']:,} customers, in-process, p50 / p99"
        f" / max | {latency('batch')} | |",
        f"| warm `GET /selection_criteria`, in-process | {latency('criteria')} | |",
        f"| same requests over HTTP (`chalice local`), reference | {latency('http')} | |",
        f"| cold start: import + first answer, median (worst) | {median('total_ms'):.0f} "
        f"({worst('total_ms'):.0f}) ms, of which import {median('import_ms'):.0f} ms | <= 300 ms |",
        f"| cold process: interpreter start to exit, median (worst) | {median('process_ms'):.0f} "
        f"({worst('process_ms'):.0f}) ms | |",
        "| package (`chalice package`, deployment.zip) | "
        + (f"{zip_mib:.2f} MiB" if zip_mib is not None else "not measured (no --zip)")
        + " | <= 10 MB |",
        "",
        f"In-process p99 is {report['sql']['p99'] / report['warm']['p99']:.0f}x lower than one "
        "SQL query per request on this machine, before any network between Lambda and RDS.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_api",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument(
        "--http-requests",
        type=int,
        default=1_000,
        help="of the same mix, over HTTP through chalice local",
    )
    parser.add_argument(
        "--batches",
        type=int,
        default=200,
        help="POST /vouchers requests of --batch-items customers each",
    )
    parser.add_argument("--batch-items", type=int, default=1_000)
    parser.add_argument("--cold-runs", type=int, default=7)
    parser.add_argument("--zip", type=Path, help="the deployment.zip `make package` built")
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "reports", help="where bench_api.{json,md} go"
    )
    parser.add_argument("--write", type=Path, help="update this file's API section")
    args = parser.parse_args(argv)
    bodies = mixed_requests(args.requests)
    voucher = [proxy_event("POST", "/voucher", body) for body in bodies]
    criteria = proxy_event("GET", "/selection_criteria", query={"country": "Peru"})
    spec_sample = json.dumps({**SAMPLE, "timestamp": str(MOMENT)}).encode()
    sample = proxy_event("POST", "/voucher", spec_sample)
    with throwaway_database(
        lambda conn: sample_runs.publish(conn, sample_runs.FIRST_RUN, sample_runs.FIRST)
    ) as url:
        os.environ["DATABASE_URL"] = url
        report = {
            "command": COMMAND,
            "machine": machine_text(),
            "cold": measure_cold(sample, args.cold_runs),
            "warm": measure_warm(voucher),
            "batch": measure_warm(
                [
                    proxy_event("POST", "/vouchers", body)
                    for body in batch_requests(args.batches, args.batch_items)
                ]
            ),
            "batch_items": args.batch_items,
            "criteria": measure_warm([criteria] * args.requests),
            "sql": measure_sql(url, bodies),
            "http": measure_http(bodies[: args.http_requests]),
            "agree": answers_agree(url, bodies),
            "zip_mib": args.zip.stat().st_size / 2**20 if args.zip else None,
        }
    section = markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_api.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "bench_api.md").write_text(section)
    print(section)
    if args.write:
        write_section(args.write, SECTION, section)
        print(f"written to {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
