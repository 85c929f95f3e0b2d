"""API benchmark: the Lambda handler in-process with API Gateway proxy events.

Warm latency over many requests (p50/p99/max), cold start in fresh interpreters (import + first
answer, and the whole process), and the size of the package ``chalice package`` built. The
published data live in a throwaway database on the local stack's server, dropped at the end.

    make bench-api        # = package, stack up, then this module with --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2

from benchmarks.report import machine, write_section
from chalicelib.migrate import migrate
from infra.local import postgres, stack
from infra.local.settings import from_env
from tests.api import sample_runs
from tests.api.calls import SAMPLE

REPO_ROOT = Path(__file__).resolve().parents[1]
SECTION = "## API"
COMMAND = "make bench-api"
REQUEST = {**SAMPLE, "timestamp": "2018-12-01"}

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


def proxy_event(method: str, path: str, body: dict | None = None,
                query: dict[str, str] | None = None) -> dict:
    """An API Gateway REST proxy event, as API Gateway hands it to the Lambda."""
    headers = {"Content-Type": "application/json", "Host": "api.example.com"}
    return {
        "resource": path, "path": path, "httpMethod": method,
        "headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": None, "stageVariables": None,
        "requestContext": {"resourcePath": path, "httpMethod": method, "path": f"/api{path}",
                           "stage": "api", "requestId": str(uuid.uuid4()),
                           "identity": {"sourceIp": "127.0.0.1"}},
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }


@contextlib.contextmanager
def bench_database() -> Iterator[str]:
    """A fresh migrated database on the local stack's server, holding a published run."""
    admin = stack.admin_url(from_env())
    name = f"voucher_bench_{uuid.uuid4().hex[:12]}"
    postgres.create_database(admin, name)
    url = postgres.with_database(admin, name)
    try:
        conn = psycopg2.connect(url)
        try:
            migrate(conn)
            sample_runs.publish(conn, sample_runs.FIRST_RUN, sample_runs.FIRST)
        finally:
            conn.close()
        yield url
    finally:
        postgres.drop_database(admin, name)


def measure_warm(event: dict, requests: int) -> dict[str, float]:
    """Milliseconds per request through ``app.app(event, context)`` after one warm-up call."""
    import app

    first = app.app(event, None)
    assert first["statusCode"] == 200, first
    timings = []
    for _ in range(requests):
        started = time.perf_counter_ns()
        answer = app.app(event, None)
        timings.append(time.perf_counter_ns() - started)
        assert answer["statusCode"] == 200
    cuts = statistics.quantiles(timings, n=100, method="inclusive")
    return {"p50": cuts[49] / 1e6, "p99": cuts[98] / 1e6, "max": max(timings) / 1e6}


def measure_cold(event: dict, runs: int) -> list[dict[str, float]]:
    """Fresh interpreters: import + first answer inside, and the whole process seen from here."""
    results = []
    for _ in range(runs):
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _COLD_PROBE, json.dumps(event)],
                             cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        process_ms = (time.perf_counter() - started) * 1e3
        results.append({**json.loads(out.stdout), "process_ms": process_ms})
    return results


def machine_text() -> str:
    m = machine()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']:.1f} GiB RAM, "
            f"Python {m['python']}, {m['system']}, load average {load} when it ran")


def report(warm: dict, criteria: dict, cold: list[dict], zip_path: Path | None,
           requests: int) -> str:
    def median(key: str) -> float:
        return statistics.median(r[key] for r in cold)

    def worst(key: str) -> float:
        return max(r[key] for r in cold)

    zip_line = (f"| package (`chalice package`, {zip_path.name}) | "
                f"{zip_path.stat().st_size / 2**20:.2f} MiB | <= 10 MB |"
                if zip_path else "| package | not measured (no --zip) | <= 10 MB |")
    return "\n".join([
        SECTION,
        "",
        f"Command: `{COMMAND}` (`python -m benchmarks.bench_api`). Machine: {machine_text()}.",
        "In-process through the Lambda handler `app.app(event, context)` with API Gateway proxy "
        f"events; {requests:,} warm requests after one warm-up call, the cache's TTL at its "
        "default. Cold start: a fresh interpreter imports `app` and answers one `POST /voucher` "
        f"(connecting to PostgreSQL and loading the published runs), {len(cold)} runs.",
        "",
        "| measure | result | aim |",
        "|---|---|---|",
        f"| warm `POST /voucher` p50 / p99 / max | {warm['p50']:.3f} / {warm['p99']:.3f} / "
        f"{warm['max']:.2f} ms | p99 <= 1 ms |",
        f"| warm `GET /selection_criteria` p50 / p99 / max | {criteria['p50']:.3f} / "
        f"{criteria['p99']:.3f} / {criteria['max']:.2f} ms | |",
        f"| cold start: import + first answer, median (worst) | {median('total_ms'):.0f} "
        f"({worst('total_ms'):.0f}) ms, of which import {median('import_ms'):.0f} ms | <= 300 ms |",
        f"| cold process: interpreter start to exit, median (worst) | {median('process_ms'):.0f} "
        f"({worst('process_ms'):.0f}) ms | |",
        zip_line,
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_api", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--cold-runs", type=int, default=7)
    parser.add_argument("--zip", type=Path, help="the deployment.zip `make package` built")
    parser.add_argument("--write", type=Path, help="update this file's API section")
    args = parser.parse_args(argv)
    voucher = proxy_event("POST", "/voucher", REQUEST)
    criteria_event = proxy_event("GET", "/selection_criteria", query={"country": "Peru"})
    with bench_database() as url:
        os.environ["DATABASE_URL"] = url
        cold = measure_cold(voucher, args.cold_runs)
        warm = measure_warm(voucher, args.requests)
        criteria = measure_warm(criteria_event, args.requests)
    section = report(warm, criteria, cold, args.zip, args.requests)
    print(section)
    if args.write:
        write_section(args.write, SECTION, section)
        print(f"written to {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
