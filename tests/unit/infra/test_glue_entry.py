"""The Glue job's entry under AWS's own ``awsglue`` library (PyPI's AWSGlueDataplanePython, the
library Glue's runtime imports): its argument parsing through the real ``getResolvedOptions`` for
every combination of given and omitted optional arguments, with the arguments Glue itself adds.
Run in a subprocess; and a local run, where the library is importable too, never takes Glue's
branch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from glue_jobs import voucher_selection_job as job
from infra.local.settings import REPO_ROOT

pytest.importorskip("awsglue.utils", reason="AWSGlueDataplanePython is in requirements-dev.txt")

#: What Glue passes besides a run's own arguments (see a job run's "Arguments" in its console).
GLUE_ARGUMENTS = [
    "--JOB_ID",
    "j_0123456789abcdef",
    "--JOB_RUN_ID",
    "jr_0123456789abcdef",
    "--JOB_NAME",
    "voucher-selection-dev",
    "--job-bookmark-option",
    "job-bookmark-disable",
    "--enable-continuous-cloudwatch-log",
    "true",
    "--continuous-log-logGroup",
    "/aws-glue/voucher-selection-dev",
    "--TempDir",
    "s3://voucher-artifacts-dev/temporary/",
    "--job-language",
    "python",
    "--extra-py-files",
    "s3://voucher-artifacts-dev/glue/voucher_libs.zip",
    "--additional-python-modules",
    "psycopg2-binary==2.9.13",
    "--enable-glue-datacatalog",
    "true",
    "--enable-metrics",
    "true",
]

PARSE_EVERY_COMBINATION = """
import json, sys
from glue_jobs import voucher_selection_job as job
glue = json.loads(sys.argv[1])
optional = [n for n, (d, _) in job.ARGUMENTS.items() if d is not None]
found = []
for mask in range(2 ** len(optional)):
    given = {n: f"{n}-value" for i, n in enumerate(optional) if mask >> i & 1}
    argv = ["voucher_selection_job.py", *glue[:8], "--source", "s3://raw/incoming/h.parquet",
            *(a for n, v in given.items() for a in (f"--{n}", v)), *glue[8:]]
    found.append({"given": given, "on_glue": job.on_glue(argv), "parsed": job.parse_args(argv)})
defaults = {n: d for n, (d, _) in job.ARGUMENTS.items()}  # as this environment sets them
print(json.dumps({"defaults": defaults, "found": found}))
"""


def test_every_combination_of_optional_arguments_parses_through_awsglue():
    done = subprocess.run(
        [sys.executable, "-c", PARSE_EVERY_COMBINATION, json.dumps(GLUE_ARGUMENTS)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    found, defaults = report["found"], report["defaults"]
    optional = [n for n, (default, _) in job.ARGUMENTS.items() if default is not None]
    assert len(found) == 2 ** len(optional) >= 256
    for case in found:
        assert case["on_glue"], case
        parsed, given = case["parsed"], case["given"]
        assert parsed["source"] == "s3://raw/incoming/h.parquet"
        for name in job.ARGUMENTS:
            if name != "source":
                assert parsed[name] == given.get(name, defaults[name]), (name, case)
        assert parsed["JOB_NAME"] == "voucher-selection-dev"
        assert parsed["JOB_RUN_ID"] == "jr_0123456789abcdef"  # the run's lease holder


def test_a_local_run_never_takes_glues_branch_though_awsglue_is_importable(tmp_path):
    local = ["voucher_selection_job.py", "--source", "history.parquet", "--countries", "all"]
    assert not job.on_glue(local)
    assert job.parse_args(local)["countries"] == "all"
    assert job.options_from(job.parse_args(local)).job_run_id == f"pid {os.getpid()}"
    on_glue = {**job.parse_args(local), "JOB_RUN_ID": "jr_0123456789abcdef"}
    assert job.options_from(on_glue).job_run_id == "jr_0123456789abcdef"
    done = subprocess.run(
        [sys.executable, "-m", "glue_jobs.voucher_selection_job", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "--source" in done.stdout, done.stderr[-2000:]
