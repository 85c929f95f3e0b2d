"""The runtime's settings: one table (``chalicelib/settings.py``), documented in docs/deploy.md,
every variable the product code reads in it, every stage setting only variables it holds, and a
wrong value refused with a message that names the variable."""

from __future__ import annotations

import json
import os
import random
import re

import pytest

from chalicelib import settings
from chalicelib.settings import VARIABLES, SettingError
from glue_jobs import voucher_selection_job as job
from infra.local.settings import REPO_ROOT

NAMES = {s.name for s in VARIABLES}
PRODUCT = [REPO_ROOT / "app.py", *(REPO_ROOT / "chalicelib").rglob("*.py")]
PRODUCT += [*(REPO_ROOT / "glue_jobs").rglob("*.py")]
#: Variables the product reads that Lambda or the Chalice CLI set themselves (not settings).
PLATFORM = {"AWS_LAMBDA_LOG_LEVEL", "AWS_LAMBDA_FUNCTION_NAME", "AWS_CHALICE_CLI_MODE"}


def test_docs_hold_the_table_as_it_is():
    assert settings.table() in (REPO_ROOT / "docs" / "deploy.md").read_text()


def test_every_variable_has_one_entry_a_meaning_and_a_default_of_its_kind():
    assert len(NAMES) == len(VARIABLES)
    for s in VARIABLES:
        assert s.meaning and s.kind.says
        if not s.required and s.default != "":
            shown = str(s.default).lower() if isinstance(s.default, bool) else str(s.default)
            assert s.value_of(shown) == s.default, s.name


def test_product_code_reads_the_environment_only_through_the_table():
    """No ``os.environ.get("X")`` of a variable left out of the table (the Lambda runtime's and
    the Chalice CLI's own variables aside)."""
    read = set()
    for path in PRODUCT:
        text = path.read_text()
        read |= set(re.findall(r"environ(?:\.get\(|\[)\s*[\"']([A-Z_]+)", text))
        read |= set(re.findall(r"env(?:\.get\(|\[)\s*[\"']([A-Z_]+)", text))
    assert read - PLATFORM <= NAMES, read - PLATFORM - NAMES
    assert not any("os.environ[" in p.read_text() and "] =" in p.read_text() for p in PRODUCT)


def test_each_stage_sets_only_settings_and_what_the_docs_say_it_sets():
    config = json.loads((REPO_ROOT / ".chalice" / "config.json").read_text())
    docs = (REPO_ROOT / "docs" / "deploy.md").read_text()
    for name in ("dev", "prod"):
        variables = config["stages"][name]["environment_variables"]
        assert set(variables) <= NAMES
        for variable, value in variables.items():
            assert f"`{variable}`" in docs
            getattr(settings, variable).value_of(value)  # a value of its kind
        assert variables["DATASET_QUIET_SECONDS"] == "60"  # "of the stage, 60 s" (docs)


WRONG = ["-1", "x", "1.5", "٣", "true1", " 12a", "1e3", "nan"]


def test_a_wrong_value_is_refused_naming_the_variable_and_the_value():
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    for s in VARIABLES:
        if s.kind is settings.TEXT:
            continue
        for text in [*WRONG, *(rng.choice(WRONG) + rng.choice("0aZ-") for _ in range(20))]:
            if s.kind.parse(text.strip()) is not None:
                continue  # a right value for this kind (e.g. "nan" is no whole number, though)
            with pytest.raises(SettingError) as refused:
                s.read({s.name: text})
            assert s.name in str(refused.value) and repr(text.strip()) in str(refused.value)


def test_empty_is_the_default_and_a_required_variable_says_it_is_missing():
    for s in VARIABLES:
        if s.required:
            with pytest.raises(SettingError, match=s.name):
                s.read({s.name: " "})
        else:
            assert s.read({}) == s.read({s.name: ""}) == s.default


def test_the_job_passes_its_arguments_on_and_never_writes_the_environment(monkeypatch):
    monkeypatch.delenv("DB_HOST", raising=False)
    monkeypatch.setenv("RUN_LEASE_SECONDS", "40")
    args = job.parse_args(["job", "--source", "s3://b/k.parquet", "--db_host", "db.internal"])
    options = job.options_from(args | {"db_port": "6543"})
    assert options.database is not None
    assert (options.database["DB_HOST"], options.database["DB_PORT"]) == ("db.internal", "6543")
    assert options.lease_s == 40
    assert "DB_HOST" not in os.environ
    with pytest.raises(SettingError, match="RUN_LEASE_SECONDS"):
        job.options_from(args | {"run_lease_seconds": "0"})
