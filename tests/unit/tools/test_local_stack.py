"""The local stack's settings and environment, read without starting anything."""

from __future__ import annotations

import subprocess
import sys

from infra.local import settings


def test_env_defaults_are_local():
    conf = settings.from_env({})
    assert conf.env() == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:55432/voucher",
        "RAW_BUCKET": "voucher-raw",
        "LAKE_BUCKET": "voucher-lake",
        "CATALOG_DATABASE": "voucher_selection_local",
        "UPLOAD_QUEUE": "voucher-uploads",
        "JOB_LAUNCHER": "local",
        "JOB_LOG_DIR": str(conf.state_dir / "runs"),
        "SPARK_CLASS_ARCHIVE": str(conf.spark_class_archive),
    }
    assert conf.spark_class_archive.parent == settings.Settings().state_dir  # one per checkout


def test_the_catalog_defaults_to_none_on_localstack_whose_free_edition_has_no_glue():
    assert settings.from_env({"AWS_EMULATOR": "localstack"}).catalog_database == ""
    assert (
        settings.from_env(
            {"AWS_EMULATOR": "localstack", "CATALOG_DATABASE": "lake"}
        ).catalog_database
        == "lake"
    )
    assert settings.from_env({"CATALOG_DATABASE": ""}).env()["CATALOG_DATABASE"] == ""


def test_the_stack_environment_is_named_without_starting_pyspark():
    """``stack env`` (every ``make serve``) names the class archive without importing pyspark."""
    probe = (
        "import sys; from infra.local import settings; env = settings.from_env().env();"
        " print(env['SPARK_CLASS_ARCHIVE'], 'pyspark' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=settings.REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[0].endswith(".jsa") and out[1] == "False"
