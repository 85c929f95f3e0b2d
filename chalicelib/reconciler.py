"""The reconciler: what should exist against what does, repaired on a schedule (every minute in
the cloud, on the same period by the local event pump, once by ``make reconcile``).

Upload events are hints; this is the guarantee. Each tick, with a bounded amount of work:

1. runs whose lease ran out are recorded failed (what every reader already sees);
2. queued runs whose job has not begun by their time are started again, or asked after (a job
   run on its way is left alone, one that ended without taking its run fails it); a start
   refused for capacity ends this step until the next tick;
3. waiting dataset folders are looked at: a folder ready (marker, or quiet with no multipart
   upload in progress) is queued, never dropped;
4. ``incoming/`` is listed, a bounded number of pages a tick from where the last tick stopped
   (``reconciler_state``), and every object (or dataset folder) that no run accounts for is
   taken in, as its event would have: a notification lost, misrouted or never sent.

Every step goes through :mod:`chalicelib.intake`, like the events, so the rules are the events'
rules, and an object is never run twice. Ticks never overlap (an advisory lock per bucket).
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from chalicelib import runs, settings, sources
from chalicelib.db import Connection
from chalicelib.intake import Intake, version_of
from chalicelib.launchers import Launcher
from chalicelib.sources import ObjectKind

log = logging.getLogger(__name__)

#: Keys a listing page holds (S3's most).
PAGE_KEYS = 1_000
_LOCK = 0x56535243  # with the bucket's hash: one tick at a time per raw bucket


@dataclass(frozen=True)
class ReconcilerSettings:
    """How much one tick may do (their meaning: ``chalicelib.settings``)."""

    list_pages: int = settings.RECONCILE_LIST_PAGES.default
    runs: int = settings.RECONCILE_RUNS.default

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReconcilerSettings:
        return cls(
            list_pages=settings.RECONCILE_LIST_PAGES.read(env),
            runs=settings.RECONCILE_RUNS.read(env),
        )


@dataclass
class Tick:
    """What one tick did."""

    bucket: str
    reaped: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    listed: int = 0
    taken_in: int = 0
    #: Where the next tick's listing starts ('' : from the start again).
    scan_after: str = ""


def tick(
    conn: Connection, intake: Intake, bucket: str, settings: ReconcilerSettings | None = None
) -> Tick | None:
    """One tick of the reconciler over ``bucket``; ``None`` when another tick holds it."""
    settings = settings or ReconcilerSettings.from_env()
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOCK, bucket))
        (locked,) = cur.fetchone() or (False,)  # the query always returns its one row
        if not locked:
            return None
    try:
        done = Tick(bucket, reaped=runs.reap_abandoned(conn))
        _start_queued(intake, done, settings.runs)
        for found_bucket, prefix, keys in runs.waiting_datasets(conn, settings.runs):
            if found_bucket == bucket and keys == intake.keys:
                done.started += intake.folder(bucket, prefix)
        _scan(conn, intake, done, settings.list_pages)
        _save(conn, done)
    finally:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (_LOCK, bucket))
    log.info(
        "reconciled s3://%s/%s: %d run(s) started, %d taken in from %d listed key(s),"
        " %d abandoned run(s) recorded failed",
        bucket,
        sources.INCOMING,
        len(done.started),
        done.taken_in,
        done.listed,
        len(done.reaped),
    )
    return done


def _start_queued(intake: Intake, done: Tick, limit: int) -> None:
    for run in runs.due_to_start(intake.conn, limit):
        done.started += intake.resume(run)
        if intake.refused_for_capacity:  # the others would be refused too: next tick
            return


def _scan(conn: Connection, intake: Intake, done: Tick, pages: int) -> None:
    """List up to ``pages`` pages of ``incoming/`` from where the last tick stopped, and take in
    what no run accounts for. A dataset folder is looked at whole: one that the pages cut is
    left to the next tick, unless it is all this tick holds (then it is listed to its end)."""
    bucket, budget = done.bucket, pages * PAGE_KEYS
    after = _scan_after(conn, bucket)
    listing = sources.listed(intake.s3, bucket, sources.INCOMING, after)
    objects = list(itertools.islice(listing, budget + 1))
    more = len(objects) > budget
    objects = objects[:budget]
    files, folders = _grouped(objects)
    if more and objects and sources.dataset_of(objects[-1]["Key"]):
        cut = sources.dataset_of(objects[-1]["Key"])
        assert cut is not None
        if files or len(folders) > 1:
            objects = [o for o in objects if not o["Key"].startswith(cut)]
            del folders[cut]
        else:
            folders[cut] += sources.listed(intake.s3, bucket, cut, objects[-1]["Key"])
            objects = folders[cut]
    done.listed = len(objects)
    done.scan_after = objects[-1]["Key"] if more and objects else ""

    versions = [
        version_of(bucket, o)
        for o in files
        if sources.kind_of(o["Key"], o["Size"]) is ObjectKind.FILE
    ]
    sizes = {o["Key"]: o["Size"] for o in files}
    accounted = runs.accounted_keys(conn, bucket, versions, intake.keys)
    for version in versions:
        if version.key not in accounted:
            done.taken_in += 1
            done.started += intake.file(version, sizes[version.key])

    uploading = sources.multipart_uploads(intake.s3, bucket, sources.INCOMING) if folders else []
    described = {
        prefix: sources.described_folder(bucket, prefix, sources.data_of(prefix, listed) or listed)
        for prefix, listed in folders.items()
    }
    accounted = runs.accounted_keys(
        conn, bucket, [d.source for d in described.values()], intake.keys
    )
    for prefix, listed in folders.items():
        if prefix in accounted or all(sources.placeholder(o["Key"], o["Size"]) for o in listed):
            continue
        done.taken_in += 1
        done.started += intake.folder(
            bucket, prefix, listed, [u for u in uploading if u["Key"].startswith(prefix)]
        )


def _grouped(
    objects: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The files directly under ``incoming/``, and the objects of each dataset folder."""
    files: list[dict[str, Any]] = []
    folders: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        folder = sources.dataset_of(obj["Key"])
        if folder is None:
            files.append(obj)
        else:
            folders.setdefault(folder, []).append(obj)
    return files, folders


def _scan_after(conn: Connection, bucket: str) -> str:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT scan_after FROM reconciler_state WHERE bucket = %s", (bucket,))
        found = cur.fetchone()
        return found[0] if found else ""


def _save(conn: Connection, done: Tick) -> None:
    summary = {k: v for k, v in asdict(done).items() if k not in ("bucket", "scan_after")}
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO reconciler_state (bucket, scan_after, ticked_at, last_tick)"
            " VALUES (%s, %s, now(), %s) ON CONFLICT (bucket) DO UPDATE"
            " SET scan_after = EXCLUDED.scan_after, ticked_at = now(),"
            "     last_tick = EXCLUDED.last_tick",
            (done.bucket, done.scan_after, json.dumps(summary)),
        )


def handle(launcher: Launcher | None = None) -> dict[str, Any]:
    """The scheduled handler's work: one tick over the raw bucket, on a connection of its own
    (``launcher``: the configured one by default)."""
    from chalicelib import db, launchers

    conn = db.connect(
        statement_timeout_ms=30_000,
        application_name="voucher-selection-reconciler",
        role=db.WRITER,
    )
    try:
        intake = Intake(conn, launcher or launchers.from_env())
        done = tick(conn, intake, settings.RAW_BUCKET.read())
        return asdict(done) if done else {"skipped": "another tick is running"}
    finally:
        conn.close()
