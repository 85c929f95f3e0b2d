"""Faults that meet, in randomized rounds on the real local stack: after the system quiesces,
every upload has converged and nothing shown failed ever came back.

Each round (seeded: ``FAULTS_SEED`` reproduces one; the seed is printed) uploads a random mix of
files, dataset folders (with a marker, without, one with a part still uploading or abandoned), a
file that is not parquet and a re-upload of the same bytes; and injects, at random, faults into
the real path: notifications lost, duplicated and delayed; job starts refused for capacity
(real: at most two local jobs at once), refused with an error, hanging; the handler (or the
reconciler) dying before and after starting a job; a job frozen past its lease (``SIGSTOP`` of
its process group), then thawed. The pump plays SQS's event source and the schedule, as always;
the launcher under the handler and the reconciler is the real local one, with the faults.

The invariants, checked once nothing is waiting, queued or running and the queue is empty:

(a) every object version and every dataset folder as it stands has exactly one terminal
    outcome, ``succeeded`` or ``failed`` with a reason (the same bytes uploaded again after a
    success: that success); (b) Peru is served by the newest upload that succeeded; (c) every
    failed run is visible in ``GET /runs`` with its error and in the FailedRuns metric; (d) counts
    reconcile (rows read = rows out of scope + Σ rows in; rows in = kept + rejected); (e) no run
    that was ever shown failed (sampled every 0.3 s throughout) succeeds or is published.

``make test`` runs two rounds; ``make faults`` runs many more (``FAULTS_ROUNDS``) and records
the figures in docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chalicelib import launchers, reconciler, uploads
from tests.helpers import fetch, get, sample_bytes

ROUNDS = int(os.environ.get("FAULTS_ROUNDS") or 2)
SEED = int(os.environ.get("FAULTS_SEED") or random.SystemRandom().randrange(10**6))
LEASE_S = 10
QUIET_S = 3
ROUND_TIMEOUT_S = 420
JOB_MODULE = "glue_jobs.voucher_selection_job"


class HandlerDied(BaseException):
    """A Lambda invocation killed mid-way (its timeout): nothing after this point runs."""


@dataclass
class Faults:
    """The faults one round injects, drawn from its seed, and what was injected."""

    rng: random.Random
    start_faults: list[str]
    injected: Counter = field(default_factory=Counter)

    def next_start(self) -> str | None:
        return self.start_faults.pop(0) if self.start_faults else None


class FaultyLauncher:
    """The real local launcher (two jobs at once at most), with injected start faults."""

    def __init__(self, real: launchers.LocalLauncher, faults: Faults):
        self.real = real
        self.faults = faults

    def start(self, run_id: str, source: str, countries: str) -> str | None:
        fault = self.faults.next_start()
        if fault:
            self.faults.injected[f"start: {fault}"] += 1
        if fault == "capacity":
            raise launchers.NoCapacity("injected: no capacity")
        if fault == "error":
            raise OSError("injected: the start failed")
        if fault == "hang":
            time.sleep(2)
            raise TimeoutError("injected: the start timed out")
        if fault == "die before":
            raise HandlerDied
        job_run_id = self.real.start(run_id, source, countries)
        if fault == "die after":
            raise HandlerDied
        return job_run_id

    def state(self, job_run_id: str) -> launchers.JobRunState:
        return self.real.state(job_run_id)


class Shown:
    """Samples every run's status as readers see it, throughout the round."""

    def __init__(self, url: str):
        import psycopg2

        self.conn = psycopg2.connect(url)
        self.failed: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Shown:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
        self.conn.close()

    def sample(self) -> None:
        self.conn.rollback()
        for run_id, status in fetch(self.conn, "SELECT run_id, run_status(runs) FROM runs"):
            if status == "failed":
                self.failed.add(run_id)

    def _sample(self) -> None:
        while not self._stop.wait(0.3):
            self.sample()


def job_group(run_id: str) -> int | None:
    """The process group of the job (and its supervisor) running ``run_id``."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except (OSError, ValueError):
            continue
        if argv[1:3] == ["-m", JOB_MODULE] and run_id in argv:
            return os.getpgid(int(proc.name))
    return None


@dataclass
class Upload:
    key: str  # a file's key, or a dataset folder's prefix
    kind: str  # file, marker folder, quiet folder, uploading folder, not parquet, again
    rows: int = 0  # the data rows it holds once complete


class Round:
    """One round: its uploads, its faults, the pump and the reconciler under them."""

    def __init__(self, seed: int, pump, s3, buckets, tmp_path: Path, url: str):
        self.seed = seed
        self.rng = random.Random(seed)
        self.pump, self.s3, self.buckets, self.tmp = pump, s3, buckets, tmp_path
        self.url = url
        kinds = ["file", "marker folder", "quiet folder", "uploading folder", "not parquet"]
        self.kinds = self.rng.sample(kinds, self.rng.randint(2, 4))
        if "file" in self.kinds and self.rng.random() < 0.5:
            self.kinds.append("again")
        starts = ["capacity", "error", "hang", "die before", "die after", None, None]
        self.faults = Faults(self.rng, [self.rng.choice(starts) for _ in range(6)])
        real = launchers.LocalLauncher(tmp_path / "runs", max_concurrent=2)
        self.launcher = FaultyLauncher(real, self.faults)
        self.uploads: list[Upload] = []
        self.multipart: tuple[str, str, bytes, float] | None = None
        self.frozen: dict[str, float] = {}  # run id -> when to thaw it
        self.freeze_one = self.rng.random() < 0.5

    # ------------------------------------------------------------------------------ uploads

    def body(self, rows: int) -> bytes:
        return sample_bytes(self.tmp, rows=rows, seed=self.rng.randrange(10**6))

    def clear_bucket(self) -> None:
        """Start from an empty ``incoming/``: the session's bucket holds earlier rounds' objects
        (their runs are gone with the tables), which the reconciler would take in again."""
        bucket = self.buckets.raw
        for upload in self.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            self.s3.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                self.s3.delete_object(Bucket=bucket, Key=obj["Key"])

    def upload_all(self) -> None:
        self.clear_bucket()
        for n, kind in enumerate(self.kinds):
            rows = self.rng.choice((300, 600))
            if kind == "file":
                key = f"incoming/r-{n}.parquet"
                self.put(key, self.body(rows))
                self.uploads.append(Upload(key, kind, rows))
            elif kind == "again":
                first = next(u for u in self.uploads if u.kind == "file")
                body = self.s3.get_object(Bucket=self.buckets.raw, Key=first.key)["Body"].read()
                time.sleep(1.1)  # a new version: S3 times objects to the second
                self.put(first.key, body)
                self.uploads.append(Upload(first.key, kind, first.rows))
            elif kind == "not parquet":
                key = f"incoming/r-{n}.csv"
                self.put(key, b"timestamp,country_code\n2018-01-01,Peru\n")
                self.uploads.append(Upload(key, kind))
            else:
                folder = f"incoming/d-{n}/"
                for part in range(2):
                    self.put(f"{folder}part-{part}.parquet", self.body(rows))
                self.uploads.append(Upload(folder, kind, 2 * rows))
                if kind == "marker folder":
                    self.put(f"{folder}_SUCCESS", b"")
                if kind == "uploading folder":
                    key = f"{folder}part-2.parquet"
                    body = self.body(rows)
                    upload = self.s3.create_multipart_upload(Bucket=self.buckets.raw, Key=key)
                    complete = self.rng.random() < 0.6  # else: abandoned
                    when = time.monotonic() + self.rng.uniform(2, 8) if complete else -1.0
                    self.multipart = (key, upload["UploadId"], body, when)
                    self.faults.injected["part still uploading"] += 1
                    if not complete:
                        self.faults.injected["multipart upload abandoned"] += 1

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.buckets.raw, Key=key, Body=body)

    def finish_multipart(self) -> None:
        if not self.multipart or self.multipart[3] < 0 or time.monotonic() < self.multipart[3]:
            return
        key, upload_id, body, _ = self.multipart
        etag = self.s3.upload_part(
            Bucket=self.buckets.raw, Key=key, UploadId=upload_id, PartNumber=1, Body=body
        )["ETag"]
        self.s3.complete_multipart_upload(
            Bucket=self.buckets.raw,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]},
        )
        folder = next(u for u in self.uploads if u.kind == "uploading folder")
        folder.rows += folder.rows // 2
        self.multipart = None

    # ------------------------------------------------------------------------ notifications

    def disturb_notifications(self) -> None:
        """Lose, duplicate or delay some of the notifications now on the queue."""
        sqs, url = self.pump.sqs, self.pump.url
        time.sleep(1)
        messages: dict[str, dict] = {}
        for _ in range(5):  # held invisible until each is decided
            got = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=60
            )
            messages.update((m["MessageId"], m) for m in got.get("Messages", []))
        for message in messages.values():
            fault = self.rng.choice(["lost", "duplicated", "delayed", None, None])
            if fault:
                self.faults.injected[f"notification {fault}"] += 1
            if fault in ("duplicated", "delayed"):
                delay = self.rng.randint(1, 6) if fault == "delayed" else 0
                sqs.send_message(QueueUrl=url, MessageBody=message["Body"], DelaySeconds=delay)
            if fault in ("lost", "delayed"):
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            else:
                sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )

    # --------------------------------------------------------------------------------- drive

    def handler(self, event, context) -> None:
        uploads.handle((r["body"] for r in event["Records"]), self.launcher)

    def tick(self) -> None:
        with contextlib.suppress(HandlerDied):  # the next tick comes all the same
            reconciler.handle(self.launcher)

    def freeze_or_thaw(self, db) -> None:
        for run_id, thaw_at in list(self.frozen.items()):
            if time.monotonic() >= thaw_at:
                group = job_group(run_id)
                if group:
                    os.killpg(group, signal.SIGCONT)
                del self.frozen[run_id]
        if not self.freeze_one:
            return
        db.rollback()
        running = fetch(db, "SELECT run_id FROM runs WHERE status = 'running'")
        if running:
            group = job_group(running[0][0])
            if group:
                os.killpg(group, signal.SIGSTOP)
                self.frozen[running[0][0]] = time.monotonic() + LEASE_S + 3
                self.faults.injected["job frozen past its lease"] += 1
                self.freeze_one = False

    def quiet(self, db) -> bool:
        db.rollback()
        live = fetch(
            db, "SELECT count(*) FROM runs WHERE status IN ('waiting', 'queued', 'running')"
        )
        counts = self.pump.sqs.get_queue_attributes(
            QueueUrl=self.pump.url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return (
            live == [(0,)]
            and not any(int(n) for n in counts.values())
            and not self.frozen
            and not (self.multipart and self.multipart[3] >= 0)
            and not any(job_group(r) for (r,) in fetch(db, "SELECT run_id FROM runs"))
        )

    def run(self, db) -> None:
        self.upload_all()
        self.disturb_notifications()
        deadline, next_tick, calm = time.monotonic() + ROUND_TIMEOUT_S, 0.0, 0
        while time.monotonic() < deadline:
            self.finish_multipart()
            with contextlib.suppress(HandlerDied):  # the message comes back in a second
                self.pump.poll_once()
            if time.monotonic() >= next_tick:
                self.tick()
                next_tick = time.monotonic() + 1
                calm = calm + 1 if self.quiet(db) else 0
                if calm >= 3:  # quiet over three ticks: nothing left to converge
                    return
            self.freeze_or_thaw(db)
        raise AssertionError(f"round {self.seed} did not converge: {self.state(db)}")

    def state(self, db) -> list[tuple]:
        db.rollback()
        return fetch(db, "SELECT source_key, status, status_reason, error FROM runs ORDER BY 1")


def metric_run_ids(texts: list[str]) -> Counter:
    found: Counter = Counter()
    for text in texts:
        for line in text.splitlines():
            if line.startswith('{"_aws"'):
                found[json.loads(line).get("run_id")] += 1
    return found


def check_invariants(round_: Round, db, client, shown: Shown, said: str) -> list[str]:
    """The invariants (a) to (e); the violations found."""
    db.rollback()
    runs = fetch(
        db,
        "SELECT run_id, source_key, source_etag, source_modified_at, status, error, rows_read,"
        " rows_out_of_scope, requested_by FROM runs ORDER BY created_at",
    )
    found = _one_outcome_each(round_, runs)
    succeeded = [r for r in runs if r[4] == "succeeded"]
    served = dict(fetch(db, "SELECT country_key, run_id FROM published_country"))
    found += _newest_served(succeeded, served)
    found += _failures_shown(round_, runs, client, said)
    found += _counts_reconcile(db, succeeded)
    came_back = shown.failed & ({r[0] for r in succeeded} | set(served.values()))
    found += [f"(e) {run_id} was shown failed, then succeeded" for run_id in sorted(came_back)]
    return found


def _one_outcome_each(round_: Round, runs: list[tuple]) -> list[str]:
    """(a): every upload ends in one outcome (a failure with its reason), none left live."""
    found: list[str] = []
    keys = {u.key for u in round_.uploads}
    for key in sorted(keys):
        of_key = [r for r in runs if r[1] == key]
        ended = [r for r in of_key if r[4] in ("succeeded", "failed")]
        if not ended:
            found.append(f"(a) {key}: no terminal outcome")
        for r in of_key:
            if r[4] == "failed" and not r[5]:
                found.append(f"(a) {r[0]} failed without a reason")
        versions = Counter((r[2], r[3] if r[4] == "failed" else None) for r in of_key)
        found += [f"(a) {key}: {n} runs of {v}" for v, n in versions.items() if n > 1]
        succeeded = Counter(r[2] for r in of_key if r[4] == "succeeded")
        found += [f"(a) {key}: {n} successes of {e}" for e, n in succeeded.items() if n > 1]
    for u in round_.uploads:
        last = [r for r in runs if r[1] == u.key][-1:]
        if u.kind == "not parquet" and not (last and "not parquet" in (last[0][5] or "")):
            found.append(f"(a) {u.key}: not failed as not parquet: {last}")
        if (
            u.kind.endswith("folder")
            and last
            and last[0][4] == "succeeded"
            and last[0][6] != u.rows
        ):
            found.append(f"(a) {u.key}: read {last[0][6]} rows, the folder holds {u.rows}")
    live = [r for r in runs if r[4] not in ("succeeded", "failed")]
    return found + [f"(a) {r[0]} left {r[4]}" for r in live]


def _newest_served(succeeded: list[tuple], served: dict[str, str]) -> list[str]:
    """(b): the newest upload that succeeded is the one served."""
    if not succeeded:
        return []
    newest = max(r[3] for r in succeeded)
    serving = [r for r in succeeded if r[0] == served.get("peru")]
    if not serving or serving[0][3] != newest:
        return [f"(b) Peru served by {served.get('peru')}, not an upload of {newest}"]
    return []


def _failures_shown(round_: Round, runs: list[tuple], client, said: str) -> list[str]:
    """(c): every failed run is shown failed with its error, and counted by its metric."""
    found: list[str] = []
    metrics = metric_run_ids([said, *map(Path.read_text, (round_.tmp / "runs").glob("*.log"))])
    for r in runs:
        if r[4] == "failed":
            status, shown_run = get(client, f"/runs/{r[0]}")
            if status != 200 or shown_run["status"] != "failed" or not shown_run["error"]:
                found.append(f"(c) {r[0]} not shown failed with its error: {shown_run}")
            if not metrics[r[0]]:
                found.append(f"(c) {r[0]} failed without a FailedRuns metric")
    return found


def _counts_reconcile(db, succeeded: list[tuple]) -> list[str]:
    """(d): a succeeded run's rows read are its rows out of scope and its countries' rows in,
    and each country's rows in are its rows kept and rejected."""
    found: list[str] = []
    for r in succeeded:
        stats = fetch(
            db,
            "SELECT rows_in, rows_kept, rows_rejected FROM run_country_stats WHERE run_id = %s",
            r[0],
        )
        if r[6] != r[7] + sum(s[0] for s in stats):
            found.append(f"(d) {r[0]}: {r[6]} read, {r[7]} out of scope, {stats} in")
        found += [f"(d) {r[0]}: {s}" for s in stats if s[0] != s[1] + s[2]]
    return found


_ROUNDS_DONE: list[dict] = []


@pytest.fixture(scope="module", autouse=True)
def figures():
    """After the rounds: rounds, faults injected and violations in all, printed (and written to
    ``FAULTS_REPORT_DIR/summary.json`` when set, for docs/reliability.md)."""
    yield
    faults: Counter = Counter()
    for report in _ROUNDS_DONE:
        faults.update(report["faults"])
    summary = {
        "seeds": [r["seed"] for r in _ROUNDS_DONE],
        "rounds": len(_ROUNDS_DONE),
        "uploads": sum(len(r["uploads"]) for r in _ROUNDS_DONE),
        "runs": sum(r["runs"] for r in _ROUNDS_DONE),
        "faults_injected": sum(faults.values()),
        "faults": dict(sorted(faults.items())),
        "violations": sum(len(r["violations"]) for r in _ROUNDS_DONE),
    }
    print("\nfault rounds:", json.dumps(summary))
    if os.environ.get("FAULTS_REPORT_DIR"):
        Path(os.environ["FAULTS_REPORT_DIR"], "summary.json").write_text(json.dumps(summary))


@pytest.mark.parametrize("round_number", range(ROUNDS))
def test_every_upload_converges_whatever_faults_meet(
    round_number, uploads, client, s3, buckets, db, database_url, tmp_path, monkeypatch, capfd
):
    seed = SEED + round_number
    print(f"fault round seed {seed} (FAULTS_SEED={seed} FAULTS_ROUNDS=1 reproduces it)")
    for name, value in {
        "RUN_LEASE_SECONDS": LEASE_S,
        "DATASET_QUIET_SECONDS": QUIET_S,
        "RUN_START_DEADLINE_SECONDS": 3,
        "MULTIPART_ABANDON_SECONDS": 12,
    }.items():
        monkeypatch.setenv(name, str(value))
    round_ = Round(seed, uploads, s3, buckets, tmp_path, database_url)
    uploads.handler = round_.handler
    with Shown(database_url) as shown:
        round_.run(db)
    said = capfd.readouterr().out
    violations = check_invariants(round_, db, client, shown, said)
    report = {
        "seed": seed,
        "uploads": [u.kind for u in round_.uploads],
        "faults": dict(round_.faults.injected),
        "runs": len(fetch(db, "SELECT run_id FROM runs")),
        "violations": violations,
    }
    print(json.dumps(report))
    _ROUNDS_DONE.append(report)
    assert not violations, f"seed {seed}: {violations}"
