"""``chalice deploy --stage dev`` typed at the project's root, as the design card ships the app:
without the stage's values it stops before any AWS call saying which command to run first; with
them (saved from the deployed stacks' outputs, ``infra/deploy/chalice_project.py``) it deploys the
project rendered from them, by Chalice itself, into a fresh account on the local endpoint (moto
implements Lambda, IAM, API Gateway, SQS event sources and EventBridge, and validates policy
syntax as IAM does); ``chalice delete`` removes it. The root is a copy of this checkout's
project files, so that what the commands write stays in the test's folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from chalicelib import db
from infra.deploy import chalice_project, templates
from infra.local import aws
from infra.local.processes import free_port
from infra.local.settings import REGION
from tests.fixtures.infra import deployed_data_plane, new_account, new_vpc
from tests.helpers import certificate_authority, pem

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


def chalice(project: Path, account, *args: str, at_root: bool = False):
    """Chalice's command line on ``project``: given with ``--project-dir``, or (``at_root``)
    typed in that folder, as a user at the project's root does."""
    credentials = account.session.get_credentials()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": account.endpoint_url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": credentials.access_key,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
        "AWS_SESSION_TOKEN": credentials.token,
    }
    where = [] if at_root else ["--project-dir", str(project)]
    command = [sys.executable, "-c", CHALICE, *where, *args]
    return subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=600
    )


#: What a clone holds of the project that Chalice and the deploy tooling read.
PROJECT_FILES = ("app.py", "requirements.txt", ".chalice/config.json", "chalicelib", "infra")


@pytest.fixture
def root(tmp_path) -> Path:
    """The project's root, as a clone has it (no dist/, nothing rendered)."""
    copy = tmp_path / "clone"
    for name in PROJECT_FILES:
        source, target = templates.REPO_ROOT / name, copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    bundle = copy / "chalicelib" / db.CA_BUNDLE  # make package fetches AWS's; no internet here
    bundle.parent.mkdir(exist_ok=True)
    bundle.write_bytes(pem(certificate_authority("a stand-in RDS authority")[0]))
    return copy


def stage_values(data_plane, aws_account) -> dict:
    values = {
        **data_plane,
        **chalice_project.pseudo_parameters(
            "dev", REGION, aws_account.account_id, chalice_project.APP_NAME
        ),
    }
    values.setdefault("GlueJobName", "voucher-selection-dev")  # moto skips AWS::Glue::Job
    return values


def app_functions(aws_account) -> dict[str, dict]:
    return {
        f["FunctionName"]: f
        for f in aws_account.client("lambda").list_functions()["Functions"]
        if f["FunctionName"].startswith("voucher-selection-dev")
    }


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
    return chalice_project.render(
        "dev", stage_values(data_plane, aws_account), tmp_path / "chalice-deploy"
    )


def test_the_rendered_policies_hold_no_cloudformation_intrinsic(project):
    for policy in (project / ".chalice").glob("lambda-*.json"):
        text = policy.read_text()
        assert "Fn::" not in text and '"Ref"' not in text and "${" not in text, policy.name


def test_chalice_deploy_at_the_root_says_what_to_run_first_and_changes_nothing(
    root, data_plane, aws_account
):
    """A clone, the data stacks up, nothing saved yet: no MalformedPolicyDocument, no function
    made outside the VPC without its settings; the command to run first."""
    refused = chalice(root, aws_account, "deploy", "--stage", "dev", at_root=True)
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "make chalice-project STAGE=dev" in said and "MalformedPolicyDocument" not in said
    assert app_functions(aws_account) == {}
    roles = aws_account.client("iam").list_roles()["Roles"]
    assert not [r for r in roles if r["RoleName"].startswith("voucher-selection-dev")]


def test_chalice_deploy_at_the_root_creates_the_app_and_chalice_delete_removes_it(
    root, data_plane, aws_account
):
    saved = stage_values(data_plane, aws_account)
    (root / "dist" / "dev").mkdir(parents=True)  # what make chalice-project saves
    (root / "dist" / "dev" / "stack-values.json").write_text(json.dumps(saved))
    deployed = chalice(root, aws_account, "deploy", "--stage", "dev", at_root=True)
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    project = root / "dist" / "dev" / "chalice-deploy"
    assert f"in {project}" in deployed.stdout
    lambda_, iam = aws_account.client("lambda"), aws_account.client("iam")
    functions = app_functions(aws_account)
    assert set(functions) == {
        "voucher-selection-dev",
        "voucher-selection-dev-on_upload",
        "voucher-selection-dev-on_job_state",
        "voucher-selection-dev-migrate",
        "voucher-selection-dev-reconcile",
    }
    rendered = {
        p.stem: json.loads(p.read_text())
        for p in (project / ".chalice").glob("*.json")
        if p.name != "config.json"
    }
    stage = json.loads((root / ".chalice" / "config.json").read_text())["stages"]["dev"]
    for name, function in functions.items():
        chalice_name = name.removeprefix("voucher-selection-dev").lstrip("-") or "api_handler"
        file = stage["lambda_functions"].get(chalice_name, {}).get("iam_policy_file")
        expected = f"{Path(file or stage['iam_policy_file']).stem}-dev"
        role = function["Role"].rsplit("/", 1)[1]
        [policy] = iam.list_role_policies(RoleName=role)["PolicyNames"]
        document = iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
        assert document == rendered[expected], name
        assert function["TracingConfig"]["Mode"] == "Active", name
        assert function["VpcConfig"]["SubnetIds"] == saved["PrivateSubnetIds"].split(","), name
        assert function["Environment"]["Variables"]["DB_HOST"] == saved["DbHost"], name
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
    [tick] = [
        r for r in aws_account.client("events").list_rules()["Rules"] if "reconcile" in r["Name"]
    ]  # the reconciler's schedule: every upload ends even when no event arrives
    assert tick["ScheduleExpression"] == "rate(1 minute)"
    apis = [
        a
        for a in aws_account.client("apigateway").get_rest_apis()["items"]
        if a["name"] == "voucher-selection"
    ]
    assert len(apis) == 1

    removed = chalice(root, aws_account, "delete", "--stage", "dev", at_root=True)
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
