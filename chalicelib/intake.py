"""Objects under ``incoming/`` become runs: the one intake that upload events and the reconciler
both go through, so that no rule is written twice.

What an object is (``chalicelib.sources.kind_of``) decides what it becomes:

- a **file** directly under ``incoming/`` is a run of its own, judged parquet by its bytes (one
  that is not is a ``failed`` run saying what it holds);
- the objects of a **dataset folder** (``incoming/<folder>/...``) are one run over every data
  object, once the folder is ready: its ``_SUCCESS`` marker is there, or it has had no new object
  for the quiet period (``DATASET_QUIET_SECONDS``) and no multipart upload in progress under it
  (one older than ``MULTIPART_ABANDON_SECONDS`` is abandoned: it no longer holds the folder, and
  the run says so). Until then its run is ``waiting``, saying why.

A version of an object (its ETag and time) needs a run unless one accounts for it
(``chalicelib.runs.take_in``), so repeated events and the reconciler meeting an event start
nothing twice. A queued run's job is started at once; a start refused for lack of capacity keeps
it queued (never failed for that), any other failed start is tried again with a growing delay and
fails the run only after ``RUN_START_ATTEMPTS`` attempts. Whatever dies in between (the handler,
a lost notification, a hanging start), the reconciler (``chalicelib.reconciler``) finds the
difference and comes back here.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib import launchers, logs, metrics, rules, runs, settings, sources
from chalicelib.db import Connection
from chalicelib.runs import Source, Unstarted
from chalicelib.sources import ObjectKind

log = logging.getLogger(__name__)

MAX_DELAY_SECONDS = 900  # the longest an SQS message can be delayed
#: The longest a failed start waits before it is tried again.
MAX_START_BACKOFF_SECONDS = 900


@dataclass(frozen=True)
class IntakeSettings:
    """How uploads are taken in and runs started (their meaning: ``chalicelib.settings``)."""

    countries: str = settings.COUNTRIES.default
    quiet_s: int = settings.DATASET_QUIET_SECONDS.default
    start_deadline_s: int = settings.RUN_START_DEADLINE_SECONDS.default
    start_attempts: int = settings.RUN_START_ATTEMPTS.default
    multipart_abandon_s: int = settings.MULTIPART_ABANDON_SECONDS.default

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IntakeSettings:
        return cls(
            countries=settings.COUNTRIES.read(env),
            quiet_s=settings.DATASET_QUIET_SECONDS.read(env),
            start_deadline_s=settings.RUN_START_DEADLINE_SECONDS.read(env),
            start_attempts=settings.RUN_START_ATTEMPTS.read(env),
            multipart_abandon_s=settings.MULTIPART_ABANDON_SECONDS.read(env),
        )


@dataclass(frozen=True)
class DatasetCheck:
    """A delayed look at a dataset folder, sent when an event reported one of its objects at
    ``seen_at`` (the database's clock): a later object's check supersedes it."""

    bucket: str
    prefix: str
    seen_at: str

    def body(self) -> str:
        return json.dumps({"dataset_check": vars(self)})


def version_of(bucket: str, listed: Mapping[str, Any]) -> Source:
    """An object's version as a listing or a ``HeadObject`` states it."""
    return Source(
        bucket,
        listed["Key"],
        listed["ETag"].strip('"'),
        sources.version_time(listed["LastModified"]),
        1,
    )


class Intake:
    """Takes objects in: the database, the launcher, the S3 (and SQS) clients, the settings."""

    def __init__(
        self,
        conn: Connection,
        launcher: launchers.Launcher,
        settings: IntakeSettings | None = None,
        s3: Any = None,
        sqs: Any = None,
    ):
        self.conn = conn
        self.launcher = launcher
        self.settings = settings or IntakeSettings.from_env()
        self.keys = rules.requested_country_keys(self.settings.countries)
        self._s3 = s3
        self._sqs = sqs
        #: Whether a job start was refused for lack of capacity (the reconciler stops trying).
        self.refused_for_capacity = False

    @property
    def s3(self) -> Any:
        return self._s3 or _client("s3")

    # ------------------------------------------------------------------------------- objects

    def key(self, bucket: str, key: str, size: int) -> list[str]:
        """Reconcile one key an event named; the runs started."""
        kind = sources.kind_of(key, size)
        if kind in (ObjectKind.FILE, ObjectKind.PART):
            metrics.upload_received(f"s3://{bucket}/{key}")
        if kind is ObjectKind.FILE:
            return self._file_at(bucket, key)
        if kind is ObjectKind.PART:
            self._part_reported(bucket, _folder(key))
            return []
        if kind is ObjectKind.MARKER:
            return self.folder(bucket, _folder(key))
        log.info("ignored s3://%s/%s (%s)", bucket, key, kind)
        return []

    def _file_at(self, bucket: str, key: str) -> list[str]:
        try:
            head = self.s3.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            if _status(exc) != 404:
                raise
            log.info("s3://%s/%s is gone: its key was deleted since", bucket, key)
            return []
        return self.file(version_of(bucket, {"Key": key, **head}), head["ContentLength"])

    def file(self, version: Source, size: int) -> list[str]:
        """Take in one version of a file directly under ``incoming/``."""
        bucket = version.bucket or ""
        uri = f"s3://{bucket}/{version.key}"
        if runs.accounted_for(self.conn, version, self.keys):
            log.info("skipped %s (ETag %s): already taken in", uri, version.etag)
            return []
        problem = sources.s3_parquet_problem(self.s3, bucket, version.key, size)
        run_id = runs.take_in(
            self.conn,
            runs.new_run_id(),
            version,
            self.keys,
            self.settings.start_deadline_s,
            problem,
        )
        if run_id is None:
            log.info("skipped %s (ETag %s): already taken in", uri, version.etag)
            return []
        if problem:
            log.info("run %s failed: %s", run_id, problem, extra=logs.run(run_id))
            return []
        return self.start(run_id, uri, self.settings.countries)

    # --------------------------------------------------------------------------- dataset folders

    def _part_reported(self, bucket: str, folder: str) -> None:
        """An event reported a data object of a folder: it waits; a check is sent for when it
        may be quiet."""
        waiting = runs.wait_for_dataset(
            self.conn, Source(bucket, folder), self.keys, self._quiet_reason()
        )
        check = DatasetCheck(bucket, folder, waiting.last_seen.isoformat())
        self._send_check(check, self.settings.quiet_s)
        log.info(
            "run %s waits for dataset s3://%s/%s",
            waiting.run_id,
            bucket,
            folder,
            extra=logs.run(waiting.run_id),
        )

    def check(self, check: DatasetCheck) -> list[str]:
        """A delayed check of a folder fell due: look at it, unless a later object's check is
        still to come (or it no longer waits)."""
        waiting = runs.dataset_waiting(self.conn, check.bucket, check.prefix, self.keys)
        if waiting is None or waiting.last_seen > datetime.fromisoformat(check.seen_at):
            return []
        return self.folder(check.bucket, check.prefix)

    def folder(
        self,
        bucket: str,
        prefix: str,
        listed: list[dict[str, Any]] | None = None,
        uploading: list[dict[str, Any]] | None = None,
    ) -> list[str]:
        """Take in a dataset folder if it is ready, else say why it waits. ``listed`` (every
        object under the folder) and ``uploading`` (its multipart uploads in progress) when the
        caller has them already."""
        uri = f"s3://{bucket}/{prefix}"
        listed = listed if listed is not None else list(sources.listed(self.s3, bucket, prefix))
        if uploading is None:
            uploading = sources.multipart_uploads(self.s3, bucket, prefix)
        objects = [o for o in listed if not sources.placeholder(o["Key"], o["Size"])]
        data = sources.data_of(prefix, objects)
        described = sources.described_folder(bucket, prefix, data or objects)
        if data and runs.accounted_for(self.conn, described.source, self.keys):
            runs.take_in_dataset(self.conn, described.source, self.keys, 0)  # drops a waiting run
            return []
        waiting = runs.dataset_waiting(self.conn, bucket, prefix, self.keys)
        if not objects and waiting is None:
            return []  # nothing there, and nothing was
        now = datetime.now(UTC)
        held, abandoned = self._uploads_holding(uploading, waiting, now)
        reason = self._not_ready(prefix, objects, held, waiting, now)
        if reason:
            seen = described.source.modified_at or now
            waiting = runs.wait_for_dataset(
                self.conn, Source(bucket, prefix), self.keys, reason, seen
            )
            log.info(
                "run %s of %s waits: %s",
                waiting.run_id,
                uri,
                reason,
                extra=logs.run(waiting.run_id),
            )
            return []
        problem = None if data else _no_data(uri, objects)
        notes = "; ".join(
            f"ignored the multipart upload of {u['Key']} started {_when(u['Initiated'])}: older"
            f" than {self.settings.multipart_abandon_s} s, abandoned (abort it, or let a"
            " lifecycle rule do it)"
            for u in abandoned
        )
        run_id = runs.take_in_dataset(
            self.conn,
            described.source,
            self.keys,
            self.settings.start_deadline_s,
            notes or None,
            problem,
        )
        if run_id is None:
            log.info("skipped %s (%s): already taken in", uri, described.source.etag)
            return []
        if problem:
            log.info("run %s failed: %s", run_id, problem, extra=logs.run(run_id))
            return []
        return self.start(run_id, uri, self.settings.countries)

    def _uploads_holding(
        self, uploading: list[dict[str, Any]], waiting: runs.Waiting | None, now: datetime
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The folder's multipart uploads that hold it back, and those abandoned. An upload's
        age runs from the later of its start, as S3 reports it, and when the folder began to
        wait (an emulator may report any start)."""
        since = waiting.since if waiting else now
        held: list[dict[str, Any]] = []
        abandoned: list[dict[str, Any]] = []
        for upload in uploading:
            age = now - max(upload["Initiated"], since)
            too_old = age > timedelta(seconds=self.settings.multipart_abandon_s)
            (abandoned if too_old else held).append(upload)
        return held, abandoned

    def _not_ready(
        self,
        prefix: str,
        objects: list[dict[str, Any]],
        held: list[dict[str, Any]],
        waiting: runs.Waiting | None,
        now: datetime,
    ) -> str | None:
        """Why a folder is not ready to run yet (``None``: it is)."""
        if any(o["Key"] == prefix + sources.MARKER for o in objects) and not held:
            return None
        if held:
            keys = ", ".join(sorted(u["Key"] for u in held))
            return f"a multipart upload is in progress: {keys}"
        newest = max(
            [sources.version_time(o["LastModified"]) for o in objects]
            + ([waiting.last_seen] if waiting else [])
        )
        if now - newest < timedelta(seconds=self.settings.quiet_s):
            return self._quiet_reason(newest)
        return None

    def _quiet_reason(self, newest: datetime | None = None) -> str:
        since = f" (its newest object: {_when(newest)})" if newest else ""
        return f"waiting for the folder to have no new object for {self.settings.quiet_s} s{since}"

    def _send_check(self, check: DatasetCheck, delay_s: int) -> None:
        sqs = self._sqs or _client("sqs")
        url = sqs.get_queue_url(QueueName=settings.UPLOAD_QUEUE.read())
        sqs.send_message(
            QueueUrl=url["QueueUrl"],
            MessageBody=check.body(),
            DelaySeconds=min(delay_s, MAX_DELAY_SECONDS),
        )

    # ------------------------------------------------------------------------------- job starts

    def start(self, run_id: str, uri: str, countries: str) -> list[str]:
        """Start a queued run's job; a refusal keeps it queued, saying why (see the module)."""
        with logs.about_run(run_id):
            if not runs.starting(self.conn, run_id, self.settings.start_deadline_s):
                return []
            try:
                job_run_id = self.launcher.start(run_id, uri, countries)
            except Exception as exc:
                self._start_refused(run_id, exc)
                return []
            if job_run_id:
                runs.set_job_run(self.conn, run_id, job_run_id, f"job run {job_run_id} started")
            log.info("queued run %s for %s (job run %s)", run_id, uri, job_run_id or "local")
        return [run_id]

    def _start_refused(self, run_id: str, exc: Exception) -> None:
        why = f"{type(exc).__name__}: {exc}"
        if launchers.lacks_capacity(exc):
            self.refused_for_capacity = True
            runs.start_put_off(self.conn, run_id, f"waiting for capacity: {why}", 0, False)
            log.info("run %s waits for capacity: %s", run_id, why)
            return
        errors = runs.start_put_off(self.conn, run_id, f"could not start the job: {why}", 0, True)
        if errors >= self.settings.start_attempts:
            error = f"could not start the job after {errors} attempts: {why}"
            runs.fail_run(self.conn, run_id, error)
            log.error("run %s failed: %s", run_id, error)
            return
        retry_in = min(
            self.settings.start_deadline_s * 2 ** (errors - 1), MAX_START_BACKOFF_SECONDS
        )
        runs.start_put_off(
            self.conn,
            run_id,
            f"could not start the job (attempt {errors} of {self.settings.start_attempts}):"
            f" {why}; next attempt in {retry_in} s",
            retry_in,
            False,
        )
        log.warning("run %s: could not start its job (attempt %d): %s", run_id, errors, why)

    def resume(self, run: Unstarted) -> list[str]:
        """A queued run whose job has not begun by its time: start it (again), unless a job run
        is known to be on its way; one that ended without taking the run fails it."""
        if run.job_run_id is None:
            return self.start(
                run.run_id,
                run.uri,
                _countries_text(run.country_keys, self.keys, self.settings.countries),
            )
        try:
            state = self.launcher.state(run.job_run_id)
        except Exception as exc:
            why = f"cannot tell how job run {run.job_run_id} is doing: {type(exc).__name__}: {exc}"
            runs.start_put_off(self.conn, run.run_id, why, self.settings.start_deadline_s, False)
            return []
        if state.ended:
            runs.fail_job_run(self.conn, run.job_run_id, state.text)
            log.error("run %s failed: %s", run.run_id, state.text, extra=logs.run(run.run_id))
        else:
            runs.start_put_off(
                self.conn, run.run_id, state.text, self.settings.start_deadline_s, False
            )
        return []


def _countries_text(keys: tuple[str, ...] | None, own: tuple[str, ...] | None, text: str) -> str:
    """The ``--countries`` argument of a run for ``keys`` (this intake's own text when they are
    its countries)."""
    if keys == own:
        return text
    return ",".join(keys) if keys is not None else rules.ALL_COUNTRIES


def _no_data(uri: str, objects: list[dict[str, Any]]) -> str:
    if not objects:
        return f"no data object under {uri}: its objects were deleted before it could run"
    names = ", ".join(o["Key"].removeprefix(uri.split("/", 3)[3]) for o in objects[:5])
    return (
        f"no data object under {uri}: it holds only metadata ({names}; names starting with _ or"
        " . are metadata, as Spark and Hive read a folder)"
    )


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}" if moment else "unknown"


def _status(exc: Exception) -> int | None:
    status: int | None = (
        getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    )
    return status


def _folder(key: str) -> str:
    """The dataset folder of a part or a marker (``sources.kind_of`` names them only in one)."""
    folder = sources.dataset_of(key)
    if folder is None:
        raise ValueError(f"{key} is in no dataset folder")
    return folder


@functools.cache
def _client(service: str) -> Any:  # a boto3 client (boto3 ships no type information)
    import boto3  # lazily: never at import time

    return boto3.client(service)
