"""Least privilege, checked on every IAM policy the product creates: the Glue role (glue.yaml),
the Lambda policy files (infra/policies, as Chalice embeds them in the app stack).

Allowed: named actions (no ``*`` in an Allow's actions) on named resources (an ARN may end in a
wildcard under a named bucket, log group or prefix, but never in its service, region or account).
``Resource: "*"`` only for actions AWS offers no resource-level permission for (listed here with the
reason). Deny statements (the buckets' TLS-only policies) may be broad: they only take away.
"""

from __future__ import annotations

import json
import re

import pytest

from infra.deploy import templates
from tests.fixtures.infra import chalice_stage

POLICIES_DIR = templates.REPO_ROOT / "infra" / "policies"
#: Actions allowed on "*", and why.
ALL_RESOURCES_REQUIRED = {
    "ec2:DescribeNetworkInterfaces": "EC2 Describe* has no resource-level permissions",
    "ec2:DescribeSecurityGroups": "EC2 Describe* has no resource-level permissions",
    "ec2:DescribeSubnets": "EC2 Describe* has no resource-level permissions",
    "ec2:DescribeVpcAttribute": "EC2 Describe* has no resource-level permissions",
    "ec2:DescribeVpcEndpoints": "EC2 Describe* has no resource-level permissions",
    "ec2:DescribeRouteTables": "EC2 Describe* has no resource-level permissions",
    # Lambda checks a VPC function's role for these on any resource when it creates the function
    # (AWS's AWSLambdaVPCAccessExecutionRole grants them on "*" too).
    "ec2:CreateNetworkInterface": "Lambda VPC access",
    "ec2:DeleteNetworkInterface": "Lambda VPC access",
    "ec2:AssignPrivateIpAddresses": "Lambda VPC access",
    "ec2:UnassignPrivateIpAddresses": "Lambda VPC access",
    # X-Ray's trace upload has no resource-level permissions (AWS's AWSXRayDaemonWriteAccess).
    "xray:PutTraceSegments": "X-Ray tracing",
    "xray:PutTelemetryRecords": "X-Ray tracing",
}


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def data_plane_policies() -> dict[str, dict]:
    found = {}
    for part in templates.DATA_PLANE:
        resources = templates.load(templates.path(part))["Resources"]
        for logical, resource in resources.items():
            properties = resource.get("Properties", {})
            if resource["Type"] == "AWS::IAM::Role":
                for policy in properties.get("Policies", []):
                    name = f"{part}.yaml {logical} {policy['PolicyName']}"
                    found[name] = policy["PolicyDocument"]
            elif resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                found[f"{part}.yaml {logical}"] = properties["PolicyDocument"]
    return found


def lambda_policies() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(POLICIES_DIR.glob("*.json"))}


ALL_POLICIES = {**data_plane_policies(), **lambda_policies()}


def chalice_name(function: dict) -> str:
    """A packaged function's name in .chalice/config.json, from its handler (``app.<name>``;
    the REST API's ``app.app`` is ``api_handler``)."""
    name = function["Properties"]["Handler"].removeprefix("app.")
    return "api_handler" if name == "app" else name


def resource_problem(resource) -> str | None:
    """Why an Allow's resource is too broad, or None."""
    if isinstance(resource, dict):
        if "Ref" in resource or "Fn::GetAtt" in resource:
            return None  # one resource of a stack, or a parameter holding one ARN
        if "Fn::Sub" not in resource:
            return f"unexpected resource form {resource}"
        resource = re.sub(r"\$\{([^}]+)\}", lambda m: m[1].replace(":", "_"), resource["Fn::Sub"])
    if resource == "*":
        return None  # judged with the actions
    fields = resource.split(":", 5)
    if len(fields) < 6 or fields[0] != "arn":
        return f"not an ARN: {resource}"
    _, _, service, region, account, name = fields
    if "*" in service + region + account or name.startswith("*") or not name:
        return f"wildcard service, region, account or name: {resource}"
    return None


@pytest.mark.parametrize("name", sorted(ALL_POLICIES))
def test_allow_statements_name_their_actions_and_resources(name):
    problems = []
    for statement in ALL_POLICIES[name]["Statement"]:
        if statement["Effect"] == "Deny":
            continue
        assert "NotAction" not in statement and "NotResource" not in statement
        actions = _listed(statement["Action"])
        problems += [f"{statement['Sid']}: wildcard action {a}" for a in actions if "*" in a]
        resources = _listed(statement["Resource"])
        if "*" in resources:
            broad = [a for a in actions if a not in ALL_RESOURCES_REQUIRED]
            problems += [f"{statement['Sid']}: {a} on *" for a in broad]
        problems += [
            f"{statement['Sid']}: {why}" for why in map(resource_problem, resources) if why
        ]
    assert problems == []


def test_the_checks_catch_broad_grants():
    assert resource_problem({"Fn::Sub": "arn:${AWS::Partition}:s3:::*"})
    assert resource_problem({"Fn::Sub": "arn:${AWS::Partition}:logs:*:*:log-group:x"})
    assert resource_problem({"Fn::Sub": "arn:${AWS::Partition}:s3:::bucket/x/*"}) is None


def _actions(document: dict) -> dict[str, list]:
    """action -> the resources it is allowed on."""
    granted: dict[str, list] = {}
    for statement in document["Statement"]:
        for action in _listed(statement["Action"]):
            granted.setdefault(action, []).extend(_listed(statement["Resource"]))
    return granted


def test_only_on_upload_may_start_the_job_and_consume_the_queue():
    policies = {name: _actions(doc) for name, doc in lambda_policies().items()}
    on_upload = policies.pop("lambda-on-upload.json")
    for name, granted in policies.items():
        assert not [a for a in granted if a.startswith(("glue:", "sqs:", "s3:"))], name
    assert on_upload["glue:StartJobRun"] == [{"Ref": "GlueJobArn"}]
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
        assert on_upload[action] == [{"Ref": "UploadQueueArn"}]


def _database_user(resource) -> str:
    """The database role an ``rds-db:connect`` resource names (``dbuser:<id>/<role>``)."""
    return resource["Fn::Sub"].rsplit("/", 1)[1]


def test_only_migrate_reads_the_master_secret_and_each_function_connects_as_its_role():
    """The database's master user is the migrations' alone; the API connects as the read-only
    role, the upload and job-state handlers and the Glue job as the writer (chalicelib.db)."""
    from chalicelib import db

    policies = {name: _actions(doc) for name, doc in lambda_policies().items()}
    readers = {name for name, g in policies.items() if "secretsmanager:GetSecretValue" in g}
    assert readers == {"lambda-migrate.json"}
    assert policies["lambda-migrate.json"]["secretsmanager:GetSecretValue"] == [
        {"Ref": "DbSecretArn"}
    ]
    roles = {
        name: sorted(map(_database_user, granted.get("rds-db:connect", [])))
        for name, granted in policies.items()
    }
    assert roles == {
        "lambda-default.json": [],
        "lambda-migrate.json": [],
        "lambda-api.json": [db.READER],
        "lambda-on-upload.json": [db.WRITER],
        "lambda-job-state.json": [db.WRITER],
    }
    [glue] = [d for n, d in data_plane_policies().items() if n.startswith("glue.yaml")]
    assert sorted(map(_database_user, _actions(glue)["rds-db:connect"])) == [db.WRITER]
    assert "secretsmanager:GetSecretValue" not in _actions(glue)


def test_the_lambda_policies_refer_only_to_parameters_the_app_stack_declares():
    declared = set(templates.parameters(templates.load(templates.CHALICE_OVERLAY)))
    text = "".join(p.read_text() for p in POLICIES_DIR.glob("*.json"))
    referenced = {
        ref["Ref"]
        for document in lambda_policies().values()
        for statement in document["Statement"]
        for ref in _listed(statement["Resource"])
        if isinstance(ref, dict) and "Ref" in ref
    }
    assert referenced and referenced <= declared
    assert "Fn::ImportValue" not in text  # stacks pass values as parameters, not exports


def test_each_function_gets_the_policy_file_its_stage_names(packaged):
    for built in packaged.values():
        stage = chalice_stage(built.stage)
        resources = built.transformed["Resources"]
        functions = {k: r for k, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
        assert functions, "no Lambda function in the app stack"
        for function in functions.values():
            file = (
                stage.get("lambda_functions", {})
                .get(chalice_name(function), {})
                .get("iam_policy_file", stage["iam_policy_file"])
            )
            expected = json.loads((templates.REPO_ROOT / ".chalice" / file).read_text())
            role = resources[function["Properties"]["Role"]["Fn::GetAtt"][0]]
            assert [p["PolicyDocument"] for p in role["Properties"]["Policies"]] == [expected]
            assert stage["autogen_policy"] is False


def test_policy_files_are_found_where_chalice_looks():
    """Chalice joins a stage's iam_policy_file to .chalice/: the files stay in infra/policies."""
    for stage in ("dev", "prod"):
        settings = chalice_stage(stage)
        files = [settings["iam_policy_file"]] + [
            f["iam_policy_file"]
            for f in settings.get("lambda_functions", {}).values()
            if "iam_policy_file" in f
        ]
        for file in files:
            path = (templates.REPO_ROOT / ".chalice" / file).resolve()
            assert path.parent == POLICIES_DIR.resolve() and path.is_file(), file
