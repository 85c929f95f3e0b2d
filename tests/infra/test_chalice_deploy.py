"""``chalice deploy``, as the design card ships the app: the stage's policy files and settings
rendered from the deployed stacks' outputs (``infra/deploy/chalice_project.py``), deployed by
Chalice itself into a fresh account on the local endpoint (moto implements Lambda, IAM, API
Gateway, SQS event sources and EventBridge, and validates policy syntax as IAM does), then
removed by ``chalice delete``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from infra.deploy import chalice_project
from infra.local import aws
from infra.local.processes import free_port
from infra.local.settings import REGION
from tests.infra.conftest import deployed_data_plane, new_account, new_vpc

#: Chalice's own command line, with one allowance for the emulator: moto 5.2.5 imports a REST
#: API only from OpenAPI 3 with an ``info.description``, where AWS takes the Swagger 2.0 Chalice
#: writes; the same definition is handed to moto as OpenAPI 3 (paths, integrations and security
#: as Chalice wrote them).
CHALICE = """
import sys
from chalice.cli import main
from chalice.deploy.swagger import SwaggerGenerator

swagger = SwaggerGenerator.generate_swagger

def refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                node[key] = value.replace("#/definitions/", "#/components/schemas/")
            else:
                refs(value)
    elif isinstance(node, list):
        for value in node:
            refs(value)

def openapi3(self, app, rest_api=None):
    doc = swagger(self, app, rest_api)
    refs(doc)
    doc.pop("swagger"), doc.pop("schemes", None)
    doc["openapi"] = "3.0.1"
    doc["info"]["description"] = "Voucher Selection"
    doc["components"] = {"schemas": doc.pop("definitions", {}),
                         "securitySchemes": doc.pop("securityDefinitions", {})}
    return doc

SwaggerGenerator.generate_swagger = openapi3
sys.argv = ["chalice", *sys.argv[1:]]
sys.exit(main())
"""


def chalice(project: Path, account, *args: str) -> subprocess.CompletedProcess:
    credentials = account.session.get_credentials()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": account.endpoint_url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": credentials.access_key,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
        "AWS_SESSION_TOKEN": credentials.token,
    }
    command = [sys.executable, "-c", CHALICE, "--project-dir", str(project), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def aws_account(tmp_path_factory, local_stack):
    """A moto server of this module's own, with the dev data plane deployed: moto leaves a
    deleted function's trigger on its queue (a later SendMessage fails "Function not found"), so
    ``chalice delete`` must not run in the account the other infrastructure tests share."""
    state, port = tmp_path_factory.mktemp("moto-deploy"), free_port()
    aws.start(replace(local_stack.settings, state_dir=state, aws_port=port, aws_emulator="moto"))
    try:
        yield new_account(aws.endpoint_url(port))
    finally:
        aws.stop(state)


@pytest.fixture(scope="module")
def data_plane(aws_account):
    with deployed_data_plane(aws_account, new_vpc(aws_account)) as values:
        yield values


@pytest.fixture
def project(data_plane, aws_account, tmp_path):
    values = {
        **data_plane,
        **chalice_project.pseudo_parameters(
            "dev", REGION, aws_account.account_id, "voucher-selection"
        ),
    }
    values.setdefault("GlueJobName", "voucher-selection-dev")  # moto skips AWS::Glue::Job
    return chalice_project.render("dev", values, tmp_path / "chalice-deploy")


def test_the_rendered_policies_hold_no_cloudformation_intrinsic(project):
    for policy in (project / ".chalice").glob("lambda-*.json"):
        text = policy.read_text()
        assert "Fn::" not in text and '"Ref"' not in text and "${" not in text, policy.name


def test_chalice_deploy_creates_the_app_and_chalice_delete_removes_it(project, aws_account):
    deployed = chalice(project, aws_account, "deploy", "--stage", "dev")
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    lambda_, iam = aws_account.client("lambda"), aws_account.client("iam")
    functions = {
        f["FunctionName"]: f
        for f in lambda_.list_functions()["Functions"]
        if f["FunctionName"].startswith("voucher-selection-dev")
    }
    assert set(functions) == {
        "voucher-selection-dev",
        "voucher-selection-dev-on_upload",
        "voucher-selection-dev-on_job_state",
        "voucher-selection-dev-migrate",
    }
    rendered = {
        p.stem: json.loads(p.read_text())
        for p in (project / ".chalice").glob("*.json")
        if p.name != "config.json"
    }
    for name, function in functions.items():
        role = function["Role"].rsplit("/", 1)[1]
        [policy] = iam.list_role_policies(RoleName=role)["PolicyNames"]
        document = iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
        expected = "lambda-on-upload-dev" if name.endswith("on_upload") else "lambda-default-dev"
        assert document == rendered[expected], name
    sqs = aws_account.client("sqs")
    queue = sqs.get_queue_attributes(
        QueueUrl=sqs.get_queue_url(QueueName="voucher-uploads-dev")["QueueUrl"],
        AttributeNames=["QueueArn"],
    )["Attributes"]["QueueArn"]
    [mapping] = [
        m
        for m in lambda_.list_event_source_mappings()["EventSourceMappings"]
        if m["FunctionArn"] == functions["voucher-selection-dev-on_upload"]["FunctionArn"]
    ]
    assert mapping["EventSourceArn"] == queue
    [rule] = [
        r for r in aws_account.client("events").list_rules()["Rules"] if "on_job_state" in r["Name"]
    ]  # Glue's state changes of the stage's job
    assert json.loads(rule["EventPattern"])["detail"]["jobName"] == ["voucher-selection-dev"]
    apis = [
        a
        for a in aws_account.client("apigateway").get_rest_apis()["items"]
        if a["name"] == "voucher-selection"
    ]
    assert len(apis) == 1

    removed = chalice(project, aws_account, "delete", "--stage", "dev")
    assert removed.returncode == 0, removed.stdout[-3000:] + removed.stderr[-3000:]
    left = [
        f["FunctionName"]
        for f in lambda_.list_functions()["Functions"]
        if f["FunctionName"].startswith("voucher-selection-dev")
    ]
    assert left == []
    assert not [
        m
        for m in lambda_.list_event_source_mappings()["EventSourceMappings"]
        if m["EventSourceArn"] == queue
    ]  # the queue feeds nothing any more
    assert not [
        a
        for a in aws_account.client("apigateway").get_rest_apis()["items"]
        if a["name"] == "voucher-selection"
    ]
