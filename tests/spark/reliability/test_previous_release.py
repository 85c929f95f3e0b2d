"""Deploys without a window of errors: a release's migrations run first (infra/deploy/deploy.py),
so the release still serving meets the new schema. The previous release's code, taken from git
(the commit before the newest migration was added), runs its job and its API against a database
migrated by this checkout; the job of each release publishes, and the API of each answers from
what the other published. The release's own migrations only expand (nothing the previous
release reads is dropped, renamed or retyped)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile

import pytest

from chalicelib.migrate import MIGRATIONS_DIR
from infra.local.settings import REPO_ROOT
from scripts.sample_runs import SAMPLE
from tests.helpers import fetch, get, post, run_job, sample_bytes, upload

#: What the previous release needs of its tree to run its job and its API.
CODE = ["app.py", "chalicelib", "glue_jobs", "scripts"]
#: Statements that take away what running code may read: a contract step, never in the release
#: that runs its migrations first.
CONTRACTING = re.compile(
    r"\b(DROP\s+(TABLE|COLUMN|VIEW|FUNCTION)|RENAME\b|ALTER\s+COLUMN\s+\S+\s+(TYPE|SET\s+NOT\s+NULL))",
    re.IGNORECASE,
)


def git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"git {' '.join(args)} failed here (no history?): {done.stderr.strip()}")
    return done.stdout.strip()


def newest_migration() -> str:
    return sorted(MIGRATIONS_DIR.glob("*.sql"))[-1].name


def previous_release() -> str:
    """The commit before the one that added the newest migration."""
    added = git(
        "log",
        "-1",
        "--format=%H",
        "--diff-filter=A",
        "--",
        f"chalicelib/migrations/{newest_migration()}",
    )
    if not added:
        pytest.skip(f"{newest_migration()} is not committed yet")
    return git("rev-parse", f"{added}^")


@pytest.fixture(scope="module")
def previous(tmp_path_factory):
    """The previous release's code in a folder of its own."""
    commit = previous_release()
    out = tmp_path_factory.mktemp("previous-release")
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, *CODE],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(out, filter="data")
    assert not (out / "chalicelib/migrations" / newest_migration()).exists()
    return out


def in_previous(previous, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=previous,
        env={**env, "PYTHONPATH": str(previous)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


#: The previous release's API in-process (chalice's test client), answering one request.
ASK = """
import json, sys
from chalice.test import Client
from app import app
method, path, body = sys.argv[1], sys.argv[2], sys.argv[3]
with Client(app, stage_name="test") as client:
    if method == "POST":
        response = client.http.post(path, headers={"Content-Type": "application/json"}, body=body)
    else:
        response = client.http.get(path)
print(json.dumps({"status": response.status_code, "body": json.loads(response.body)}))
"""


def ask_previous(previous, env, method: str, path: str, body: dict | None = None) -> tuple:
    done = in_previous(previous, env, "-c", ASK, method, path, json.dumps(body or {}))
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return answer["status"], answer["body"]


def test_the_newest_migrations_only_expand():
    """The release's migrations (those the previous release has not) drop, rename and retype
    nothing: the previous release keeps working while the new one rolls out."""
    commit = previous_release()
    before = set(git("ls-tree", "--name-only", commit, "chalicelib/migrations/").split())
    new = [
        p
        for p in sorted(MIGRATIONS_DIR.glob("*.sql"))
        if f"chalicelib/migrations/{p.name}" not in before
    ]
    assert new, "the newest migration is the previous release's too"
    for path in new:
        sql = re.sub(r"--[^\n]*", "", path.read_text())
        assert not CONTRACTING.search(sql), f"{path.name}: {CONTRACTING.search(sql)[0]}"


def test_the_previous_release_runs_its_job_and_its_api_on_the_newest_schema(
    previous, stack, s3, db, database_url, client, tmp_path
):
    import os

    env = {**os.environ, "DATABASE_URL": database_url, "CACHE_TTL_SECONDS": "0"}
    source = upload(s3, stack, "incoming/previous.parquet", sample_bytes(tmp_path, rows=3_000))
    job = in_previous(
        previous,
        env,
        "-m",
        "glue_jobs.voucher_selection_job",
        f"--source={source}",
        "--run_id=run-previous-release",
        "--countries=all",
        f"--curated_location=s3://{stack.lake}/curated/",
        f"--rejected_location=s3://{stack.lake}/rejected/",
        f"--catalog_database={stack.catalog}",
    )
    assert job.returncode == 0, job.stderr[-3000:]
    assert fetch(db, "SELECT status FROM runs WHERE run_id = 'run-previous-release'") == [
        ("succeeded",)
    ]
    for api in (lambda *a: ask_previous(previous, env, *a), None):  # previous, then this release
        if api is None:
            status, body = post(client, SAMPLE)
            criteria = get(client, "/selection_criteria")[1]
        else:
            status, body = api("POST", "/voucher", SAMPLE)
            criteria = api("GET", "/selection_criteria")[1]
        assert status == 200 and body["voucher_amount"] > 0, body
        runs = {c["run"]["run_id"] for c in criteria["countries"]}
        assert runs == {"run-previous-release"}

    run_job(stack, source, countries="all", run_id="run-this-release")  # this release's job
    status, body = ask_previous(previous, env, "POST", "/voucher", SAMPLE)
    assert status == 200 and body["voucher_amount"] > 0
    criteria = ask_previous(previous, env, "GET", "/selection_criteria")[1]
    assert {c["run"]["run_id"] for c in criteria["countries"]} == {"run-this-release"}
