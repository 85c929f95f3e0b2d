"""Helpers the test modules share: runs of the job, uploads and the queue pump, API calls, and the
database's view of runs. Fixtures live in ``tests/conftest.py``; nothing here is a fixture."""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pandas as pd
import pyarrow.parquet as pq
import schemathesis
from psycopg2.sql import SQL, Identifier
from pyspark.sql import types as T
from schemathesis import GenerationMode

from chalicelib import rules
from chalicelib.runs import new_run_id
from glue_jobs import voucher_selection_job
from infra.local.paths import REPO_ROOT
from scripts.generate_data import write

#: Where browser tests save their screenshots (git-ignored: look at them, never commit them).
SCREENSHOTS = REPO_ROOT / "reports" / "screenshots"

#: The SPEC's sample request.
RESULT_TABLES = (
    "runs",
    "run_country_stats",
    "segment_rules",
    "voucher_selection",
    "country_fallback",
    "published_country",
)


# ------------------------------------------------------------------------------- the API in-process


#: Days between the last order and the voucher at each recency segment's bounds, and the segment
#: holding them: the cases the job's segmentation and the API's answer are both checked on.
RECENCY_BOUNDARIES = (
    (30, "30-60"),
    (60, "30-60"),
    (61, "61-90"),
    (90, "61-90"),
    (91, "91-120"),
    (120, "91-120"),
    (121, "121-180"),
    (180, "121-180"),
    (181, "180+"),
    (5000, "180+"),
)


def post(client, body, path: str = "/voucher") -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.http.post(path, headers={"Content-Type": "application/json"}, body=raw)
    return response.status_code, json.loads(response.body)


def get(client, path: str) -> tuple[int, dict]:
    response = client.http.get(path)
    assert response.headers["Content-Type"] == "application/json"
    return response.status_code, json.loads(response.body)


def assert_error(status_body, status: int, code: str, field: str | None):
    got_status, body = status_body
    assert (got_status, body) == (
        status,
        {"error": {"code": code, "field": field, "message": body["error"]["message"]}},
    )
    assert body["error"]["message"] and "Traceback" not in body["error"]["message"]


def call(url: str, path: str, body: dict | None = None) -> dict:
    """The API over HTTP; an error answer comes back as ``{"status", "body"}``."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url + path,
        data=data,
        method="POST" if data else "GET",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:  # an answer all the same, checked by the caller
        return {"status": error.code, "body": error.read().decode()}


def schema_of(api_url: str, max_examples: int):
    """The API's OpenAPI document as schemathesis tests it: valid and invalid input, every
    method on every path, and the rules only words can state (``tests.openapi_hooks``)."""
    import tests.openapi_hooks  # noqa: F401  (registers its hooks)

    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=max_examples,
        deterministic=True,
    )
    return schema


# ------------------------------------------------------------------------------- pages in Chromium


@dataclass
class Tab:
    """A browser tab on the local API, offline: what it did besides showing the page."""

    context: object
    page: object
    #: Script errors and console errors (a CSP violation is one).
    problems: list[str] = field(default_factory=list)
    #: Requests that left the local API (refused).
    outside: list[str] = field(default_factory=list)
    #: Every request to the API: (method, path and query, its x-api-key or None).
    calls: list[tuple[str, str, str | None]] = field(default_factory=list)


@contextlib.contextmanager
def offline_tab(browser, api_url: str, width: int = 1100, height: int = 1400):
    """A new browser context and tab where any request outside ``api_url`` fails."""
    context = browser.new_context(viewport={"width": width, "height": height})
    tab = Tab(context, None)
    context.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith(api_url)
            else (tab.outside.append(route.request.url), route.abort())
        ),
    )
    tab.page = context.new_page()
    tab.page.on("pageerror", lambda error: tab.problems.append(str(error)))
    tab.page.on("console", lambda m: tab.problems.append(m.text) if m.type == "error" else None)

    def called(request) -> None:
        url = urlsplit(request.url)
        where = url.path + (f"?{url.query}" if url.query else "")
        tab.calls.append((request.method, where, request.headers.get("x-api-key")))

    tab.page.on("request", called)
    try:
        yield tab
    finally:
        context.close()


# --------------------------------------------------------------------------- input files and runs


def sample_bytes(tmp_path: Path, rows: int = 20_000, seed: int = 3) -> bytes:
    """A generated history file's bytes (the real file's schema and quirks)."""
    path = tmp_path / f"sample_{rows}_{seed}.parquet.gzip"
    write(path, rows=rows, seed=seed)
    return path.read_bytes()


def upload(s3, buckets, key: str, body: bytes) -> str:
    """Put ``body`` at ``key`` of the raw bucket; return its ``s3://`` URI."""
    s3.put_object(Bucket=buckets.raw, Key=key, Body=body)
    return f"s3://{buckets.raw}/{key}"


def put(s3, buckets, key: str, body: bytes) -> str:
    """Put ``body`` at ``key`` of the raw bucket; return its ETag."""
    return s3.put_object(Bucket=buckets.raw, Key=key, Body=body)["ETag"].strip('"')


def run_job(buckets, source: str, countries: str = "all", run_id: str = "", **extra: str) -> str:
    """The Glue entry in this process, as ``make pipeline`` runs it (``extra``: more job
    arguments by name); return the run id."""
    run_id = run_id or new_run_id()
    arguments = {
        "source": source,
        "countries": countries,
        "run_id": run_id,
        "curated_location": f"s3://{buckets.lake}/curated/",
        "rejected_location": f"s3://{buckets.lake}/rejected/",
        "catalog_database": buckets.catalog,
        **extra,
    }
    voucher_selection_job.main(["job", *(f"--{name}={value}" for name, value in arguments.items())])
    return run_id


#: The columns of the two lake outputs the tally reads.
TALLIED_KEPT = T.StructType(
    [
        T.StructField("country_key", T.StringType()),
        T.StructField("voucher_amount", T.DoubleType()),
        *(T.StructField(r.name, T.StringType()) for r in rules.SEGMENT_RULES),
    ]
)
TALLIED_REJECTED = T.StructType(
    [T.StructField("country_key", T.StringType()), T.StructField("reason", T.StringType())]
)


def outputs(spark, kept=(), rejected=()):
    """The two outputs as the tally reads them, from ``(country, amount, frequent, recency,
    rows)`` and ``(country, reason, rows)``: each row repeated ``rows`` times."""
    return (
        spark.createDataFrame([row for *row, n in kept for _ in range(n)], TALLIED_KEPT),
        spark.createDataFrame([row for *row, n in rejected for _ in range(n)], TALLIED_REJECTED),
    )


def read_lake(s3, bucket: str, prefix: str) -> pd.DataFrame:
    """Every parquet object under a prefix, read back through the endpoint."""
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    ]
    frames = []
    for key in keys:
        table = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
        country_key = unquote(key.split("country_key=")[1].split("/")[0])  # as Spark escaped it
        frames.append(table.to_pandas().assign(country_key=country_key))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _independent_kept(df: pd.DataFrame) -> pd.DataFrame:
    """The kept rows of a history (the six columns as the real file stores them) with their
    country key and segments: the SPEC's rules in pandas alone."""
    dup = df.duplicated(keep="first")
    ts = pd.to_datetime(df.timestamp, errors="coerce").dt.normalize()
    last = pd.to_datetime(df.last_order_ts, errors="coerce").dt.normalize()
    first = pd.to_datetime(df.first_order_ts, errors="coerce").dt.normalize()
    orders = pd.to_numeric(df.total_orders.replace("", None), errors="coerce")
    amount = df.voucher_amount
    missing = orders.isna() | amount.isna() | ts.isna() | last.isna() | first.isna()
    invalid = (orders < 0) | (orders % 1 != 0) | (amount <= 0)
    kept = ~dup & ~missing & ~invalid & (orders != 0) & ~(first > last) & ~(ts < last)
    k = df[kept].assign(
        country=df.country_code.str.strip().str.lower(),
        frequency=orders[kept],
        recency=(ts - last)[kept].dt.days,
    )
    k["frequent_segment"] = pd.cut(k.frequency, [-1, 4, 13, 37], labels=["0-4", "5-13", "14-37"])
    k["recency_segment"] = pd.cut(
        k.recency,
        [29, 60, 90, 120, 180, float("inf")],
        labels=["30-60", "61-90", "91-120", "121-180", "180+"],
    )
    return k


_SEGMENT_NAMES = ("frequent_segment", "recency_segment")


def _by_use(counts: pd.Series) -> list[tuple]:
    """``(amount, rows)`` by most rows, a tie to the lower amount (the SPEC's order)."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def _choices(k: pd.DataFrame):
    """``((country, segment_name, segment), amount counts)`` of every choice of kept rows: each
    country's fallback (``None, None``), then each segment with history."""
    for country, group in k.groupby("country"):
        yield (country, None, None), group.voucher_amount.value_counts()
    for name in _SEGMENT_NAMES:
        for (country, segment), group in k.groupby(["country", name], observed=True):
            yield (country, name, segment), group.voucher_amount.value_counts()


def independent_expectations(df: pd.DataFrame) -> tuple[dict, dict, dict]:
    """Per-country kept counts, selections and fallbacks of a history (the six columns as the real
    file stores them): the SPEC's rules in pandas alone. A selection or fallback is (amount,
    rows, rows it was chosen from, runner-up amount or None, runner-up rows)."""
    k = _independent_kept(df)
    selections, fallbacks = {}, {}
    for (country, name, segment), counts in _choices(k):
        order = _by_use(counts)
        second = order[1] if len(order) > 1 else (None, 0)
        ranked = (*order[0], counts.sum(), *second)
        if name is None:
            fallbacks[country] = ranked
        else:
            selections[(country, name, segment)] = ranked
    return k.country.value_counts().to_dict(), selections, fallbacks


def independent_usage(df: pd.DataFrame, top: int) -> dict[tuple, list[tuple]]:
    """Per choice ``(country, segment_name, segment)`` (``None, None``: the fallback) of a
    history, in pandas alone: ``(amount, rows)`` in the SPEC's order, the first ``top``, then
    ``(None, rows of the rest)`` when there are more."""
    usage = {}
    for choice, counts in _choices(_independent_kept(df)):
        order = _by_use(counts)
        rest = [(None, sum(n for _, n in order[top:]))] if order[top:] else []
        usage[choice] = order[:top] + rest
    return usage


# ------------------------------------------------------------------------- the database's view


def empty_tables(conn) -> None:
    """Empty every table of the database but ``schema_migrations``."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT tablename FROM pg_tables"
            " WHERE schemaname = current_schema() AND tablename <> 'schema_migrations'"
        )
        tables = [Identifier(row[0]) for row in cur.fetchall()]
        if tables:
            cur.execute(SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(SQL(", ").join(tables)))


def fetch(db, sql: str, *params) -> list[tuple]:
    with db.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def served(db) -> dict[str, str]:
    """Which run serves each country (a fresh snapshot)."""
    db.rollback()
    return dict(fetch(db, "SELECT country_key, run_id FROM published_country"))


def runs_of(db, key: str) -> list[tuple]:
    """``(run_id, status, error)`` of the runs of a source key, oldest first."""
    db.rollback()
    return fetch(
        db, "SELECT run_id, status, error FROM runs WHERE source_key = %s ORDER BY created_at", key
    )


def wait_for(condition, timeout_s: float = 120, what: str = "condition"):
    """``condition()``'s first truthy value, asked every 0.2 s; fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def wait_finished(db, key: str, timeout_s: float = 240) -> list[tuple]:
    """The runs of ``key`` once none is waiting, queued or running any more."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = runs_of(db, key)
        if found and all(status in ("succeeded", "failed") for _, status, _ in found):
            return found
        time.sleep(0.5)
    raise AssertionError(f"runs of {key} still unfinished: {runs_of(db, key)}")


def table_counts(conn) -> dict[str, int]:
    with conn, conn.cursor() as cur:
        counts = {}
        for table in RESULT_TABLES:
            cur.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - constant names
            counts[table] = cur.fetchone()[0]
    return counts


# ------------------------------------------------------------------------------ the upload queue


def pump_until(pump, count: int, timeout_s: float = 30) -> int:
    """Poll until ``count`` messages were handled; return how many were."""
    handled, deadline = 0, time.monotonic() + timeout_s
    while handled < count and time.monotonic() < deadline:
        handled += pump.poll_once()
    return handled


def notification(key: str, event: str = "ObjectCreated:Put", size: int = 10) -> str:
    """An S3 notification body as S3 sends it to SQS."""
    return json.dumps(
        {
            "Records": [
                {
                    "eventName": event,
                    "eventTime": "2026-11-24T08:00:00.123Z",
                    "s3": {
                        "bucket": {"name": "voucher-raw"},
                        "object": {"key": key, "size": size, "eTag": "abc"},
                    },
                }
            ]
        }
    )


def settle(pump, db, key: str, runs: int = 1, timeout_s: float = 240) -> list[tuple]:
    """Pump the queue until ``key`` has ``runs`` runs, none waiting, queued or running; return
    them (delayed messages and retries are delivered as they fall due meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pump.poll_once()
        found = runs_of(db, key)
        if len(found) >= runs and all(s in ("succeeded", "failed") for _, s, _ in found):
            return found
    raise AssertionError(f"runs of {key} not settled: {runs_of(db, key)}")


def reconcile(client) -> None:
    """One tick of the reconciler, as EventBridge's schedule invokes it (``app.reconcile``)."""
    from infra.local.events import scheduled_event

    client.lambda_.invoke("reconcile", scheduled_event())


def converge(pump, client, db, key: str, runs: int = 1, timeout_s: float = 600) -> list[tuple]:
    """Pump the queue and tick the reconciler (once a second) until ``key`` has ``runs`` runs,
    none waiting, queued or running; return them."""
    deadline, tick = time.monotonic() + timeout_s, 0.0
    while time.monotonic() < deadline:
        pump.poll_once()
        if time.monotonic() >= tick:
            reconcile(client)
            tick = time.monotonic() + 1
        found = runs_of(db, key)
        if len(found) >= runs and all(s in ("succeeded", "failed") for _, s, _ in found):
            return found
    raise AssertionError(f"runs of {key} not settled: {runs_of(db, key)}")


def drained(pump, timeout_s: float = 60) -> int:
    """Pump until the queue holds nothing, visible or in flight (delayed checks included); return
    how many messages were handled meanwhile."""
    handled, deadline = 0, time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        handled += pump.poll_once()
        counts = pump.sqs.get_queue_attributes(
            QueueUrl=pump.url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        if not any(int(n) for n in counts.values()):
            return handled
    raise AssertionError(f"the upload queue still holds messages: {counts}")


@contextlib.contextmanager
def black_hole():
    """A TCP endpoint on loopback that accepts connections and never answers (a hung service);
    yields its URL."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def listening(pid: int) -> set[tuple[str, int]]:
    """The (address, port) pairs process ``pid`` listens on (TCP, IPv4 and IPv6), from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]  # little-endian words
            packed = b"".join(words)
            host = ipaddress.ip_address(packed)
            if isinstance(host, ipaddress.IPv6Address) and host.ipv4_mapped:
                host = host.ipv4_mapped
            found.add((str(host), int(port, 16)))
    return found


# ------------------------------------------------------------------------------- TLS certificates


def certificate_authority(name: str):
    """A self-signed certificate authority: ``(certificate, private key)``."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def server_certificate(authority, addresses: list[str]):
    """A server certificate signed by ``authority`` for these IP ``addresses``: ``(PEM
    certificate, PEM private key)``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_certificate, ca_key = authority
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, addresses[0])]))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return (
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def pem(certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return certificate.public_bytes(serialization.Encoding.PEM)
