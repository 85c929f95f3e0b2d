"""The stacks fit together: every parameter a deploy must give has a source (the stage's settings,
the user's inputs, or an earlier stack's outputs, matched by name), the stage settings name real
parameters with allowed values, and the templates agree with the code they deploy (the job's
arguments, the upload filter, the lake layout, the psycopg2 pin, the queue's timeout)."""

from __future__ import annotations

import pytest

from chalicelib import sources
from glue_jobs.pipeline import PARTITIONS
from glue_jobs.voucher_selection_job import ARGUMENTS
from infra.deploy import deploy, package, templates
from infra.local.settings import CURATED_PREFIX, RAW_PREFIX, REJECTED_PREFIX
from tests.fixtures.infra import chalice_stage

STAGES = ("dev", "prod")
#: What the deploy computes itself, besides the inputs and the stage settings.
COMPUTED = {"Stage", "GlueAvailabilityZone"}
#: Glue's own job options, as opposed to the job script's arguments.
GLUE_OPTIONS = {
    "job-language",
    "job-bookmark-option",
    "extra-py-files",
    "additional-python-modules",
    "enable-continuous-cloudwatch-log",
    "continuous-log-logGroup",
}
#: What on_upload passes with each run (chalicelib.launchers.job_arguments), besides --countries.
PER_RUN = {"source", "run_id"}
INPUTS = deploy.Inputs("vpc-0abc", ("subnet-0aaa", "subnet-0bbb"))


def _template(part: str) -> dict:
    return templates.load(templates.path(part))


@pytest.mark.parametrize("stage", STAGES)
def test_every_required_parameter_has_a_source(stage):
    available = COMPUTED | set(deploy.stage_settings(stage)) | set(INPUTS.values())
    for part in templates.DATA_PLANE:
        template = _template(part)
        missing = templates.required_parameters(template) - available
        assert not missing, f"{part}.yaml: nothing gives {sorted(missing)}"
        available |= set(template["Outputs"])
    missing = templates.required_parameters(templates.load(templates.CHALICE_OVERLAY)) - available
    assert not missing, f"chalice-overlay.yaml: nothing gives {sorted(missing)}"


@pytest.mark.parametrize("stage", STAGES)
def test_stage_settings_name_real_parameters_with_allowed_values(stage):
    declared = {}
    for file in [*map(templates.path, templates.DATA_PLANE), templates.CHALICE_OVERLAY]:
        declared |= templates.parameters(templates.load(file))
    for name, value in deploy.stage_settings(stage).items():
        assert name in declared, f"stages/{stage}.json: {name} is no template's parameter"
        spec = declared[name]
        if "AllowedValues" in spec:
            assert value in map(str, spec["AllowedValues"]), (name, value)
        if spec["Type"] == "Number":
            assert float(spec.get("MinValue", "-inf")) <= float(value), (name, value)
            assert float(value) <= float(spec.get("MaxValue", "inf")), (name, value)


def test_glue_job_arguments_are_the_job_scripts_own():
    job = _template("glue")["Resources"]["GlueJob"]["Properties"]
    given = {name.removeprefix("--") for name in job["DefaultArguments"]} - GLUE_OPTIONS
    assert given | PER_RUN == set(ARGUMENTS)
    assert not given & PER_RUN  # every run brings its own
    assert job["GlueVersion"] == "5.0"
    assert job["DefaultArguments"]["--job-bookmark-option"] == "job-bookmark-disable"
    script = job["Command"]["ScriptLocation"]["Fn::Sub"]
    assert script.endswith(f"/glue/{package.GLUE_SCRIPT.name}")
    assert job["DefaultArguments"]["--extra-py-files"]["Fn::Sub"].endswith("/glue/voucher_libs.zip")


def test_the_job_registers_its_partitions_in_the_tables_of_the_folders_it_writes():
    resources = _template("glue")["Resources"]
    arguments = resources["GlueJob"]["Properties"]["DefaultArguments"]
    assert arguments["--catalog_database"] == {"Ref": "LakeDatabase"}
    for table, prefix in (("CuratedTable", CURATED_PREFIX), ("RejectedTable", REJECTED_PREFIX)):
        declared = resources[table]["Properties"]
        assert declared["DatabaseName"] == {"Ref": "LakeDatabase"}
        location = declared["TableInput"]["StorageDescriptor"]["Location"]
        assert location == arguments[f"--{prefix.rstrip('/')}_location"]
        assert location == {"Fn::Sub": f"s3://${{LakeBucketName}}/{prefix}"}
        assert [k["Name"] for k in declared["TableInput"]["PartitionKeys"]] == PARTITIONS


def test_glue_installs_the_psycopg2_the_lambdas_use():
    default = _template("glue")["Parameters"]["GluePythonModules"]["Default"]
    assert default == package.psycopg2_requirement() == "psycopg2-binary==2.9.13"


def test_the_raw_bucket_notifies_every_object_created_under_the_upload_prefix():
    """No suffix filter: S3's is case-sensitive and names are no proof; on_upload judges."""
    bucket = _template("storage")["Resources"]["RawBucket"]["Properties"]
    [queue] = bucket["NotificationConfiguration"]["QueueConfigurations"]
    assert queue["Event"] == "s3:ObjectCreated:*"
    assert queue["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": RAW_PREFIX}]
    assert RAW_PREFIX == sources.INCOMING


def test_the_lake_lifecycle_covers_the_prefixes_the_job_writes():
    rules = _template("storage")["Resources"]["LakeBucket"]["Properties"]["LifecycleConfiguration"]
    prefixes = {rule.get("Prefix") for rule in rules["Rules"]}
    assert {CURATED_PREFIX, REJECTED_PREFIX} <= prefixes


@pytest.mark.parametrize("stage", STAGES)
def test_the_upload_queue_outlasts_the_on_upload_timeout(stage):
    visibility = _template("storage")["Parameters"]["UploadVisibilityTimeoutSeconds"]["Default"]
    timeout = chalice_stage(stage)["lambda_functions"]["on_upload"]["lambda_timeout"]
    assert visibility >= 6 * timeout  # AWS's advice for SQS event sources


def test_templates_fit_in_a_create_stack_request():
    for part in templates.DATA_PLANE:
        assert len(templates.path(part).read_bytes()) < templates.TEMPLATE_BODY_LIMIT, part
