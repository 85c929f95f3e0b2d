"""``make deploy`` cannot run here (no AWS account): it must fail early and clearly when AWS is
out of reach or an input is missing, and its template rewriting must be right."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from infra.deploy import deploy, templates

VPC = {"VPC_ID": "vpc-0abc", "PRIVATE_SUBNET_IDS": "subnet-0aaa,subnet-0bbb"}


def run_deploy(tmp_path, **env) -> subprocess.CompletedProcess:
    """``python -m infra.deploy.deploy --stage dev`` with no AWS configuration but ``env``."""
    nowhere = str(tmp_path / "absent")
    base = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": nowhere,
        "AWS_SHARED_CREDENTIALS_FILE": nowhere,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return subprocess.run(
        [sys.executable, "-m", "infra.deploy.deploy", "--stage", "dev"],
        cwd=templates.REPO_ROOT,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_credentials_it_stops_before_building_anything(tmp_path):
    done = run_deploy(tmp_path, AWS_REGION="eu-west-1", **VPC)
    assert done.returncode == 2
    assert "no AWS credentials" in done.stderr and "aws configure" in done.stderr
    assert "Creating deployment package" not in done.stdout


def test_without_a_region_it_says_so(tmp_path):
    done = run_deploy(tmp_path, **VPC)
    assert done.returncode == 2 and "no AWS region" in done.stderr


def test_it_names_every_missing_input(tmp_path):
    done = run_deploy(tmp_path, AWS_REGION="eu-west-1")
    assert done.returncode == 2
    assert "VPC_ID is not set" in done.stderr and "PRIVATE_SUBNET_IDS" in done.stderr


def test_it_refuses_the_local_endpoint(tmp_path):
    done = run_deploy(
        tmp_path,
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL="http://127.0.0.1:4566",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        **VPC,
    )
    assert done.returncode == 2 and "AWS_ENDPOINT_URL" in done.stderr


@pytest.mark.parametrize(
    ("inputs", "problem"),
    [
        (deploy.Inputs("vpc-1", ("subnet-1",)), "two or more subnets"),
        (deploy.Inputs("vpc-1", ("subnet-1", "subnet-2"), "vpn"), "PRIVATE_EGRESS"),
        (deploy.Inputs("vpc-1", ("subnet-1", "subnet-2"), "endpoints"), "ROUTE_TABLE"),
    ],
)
def test_inputs_are_checked(inputs, problem):
    assert any(problem in p for p in inputs.problems())


def test_endpoints_inputs_give_the_templates_their_values():
    inputs = deploy.Inputs(
        "vpc-1", ("subnet-1", "subnet-2"), "endpoints", ("rtb-1", "rtb-2"), "ops@example.com"
    )
    assert inputs.problems() == []
    assert inputs.values() == {
        "VpcId": "vpc-1",
        "PrivateSubnetIds": "subnet-1,subnet-2",
        "PrivateEgress": "endpoints",
        "PrivateRouteTableIds": "rtb-1,rtb-2",
        "GlueSubnetId": "subnet-1",
        "AlarmEmail": "ops@example.com",
    }


def test_the_app_template_points_every_function_at_the_uploaded_code(tmp_path):
    sam = tmp_path / "sam.yaml"
    sam.write_text(
        yaml.safe_dump(
            {
                "Resources": {
                    "A": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "./x"}},
                    "B": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "./x"}},
                    "R": {"Type": "AWS::IAM::Role", "Properties": {}},
                }
            }
        )
    )
    template = json.loads(deploy.app_template(sam, "s3://bucket/app/dev/deployment-1.zip"))
    uris = {k: r["Properties"].get("CodeUri") for k, r in template["Resources"].items()}
    assert uris == {"A": "s3://bucket/app/dev/deployment-1.zip", "B": uris["A"], "R": None}


def test_the_certificate_bundle_packaged_must_hold_certificates(tmp_path):
    """make package fetches AWS's RDS bundle once (no internet here: a stand-in is placed) and
    refuses one that is not a bundle of PEM certificates."""
    from chalicelib import db
    from infra.deploy import package
    from tests.helpers import certificate_authority, pem

    bundle = tmp_path / "chalicelib" / db.CA_BUNDLE
    bundle.parent.mkdir(parents=True)
    bundle.write_bytes(pem(certificate_authority("a")[0]) + pem(certificate_authority("b")[0]))
    assert package.ensure_ca_bundle(tmp_path) == bundle
    bundle.write_text("<html>not found</html>")
    with pytest.raises(package.PackageError, match="no certificate"):
        package.ensure_ca_bundle(tmp_path)
    bundle.write_text("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
    with pytest.raises(package.PackageError, match="not a bundle of PEM certificates"):
        package.ensure_ca_bundle(tmp_path)


@pytest.mark.parametrize("app_stack_exists", [True, False])
def test_a_deploy_migrates_before_any_code_of_the_release_serves(monkeypatch, app_stack_exists):
    """The order of ``deploy.run``'s steps (AWS itself cannot be reached here): with the app
    stack deployed, the deployed ``migrate`` runs the new release's migrations (its code
    updated first) before the job's script and the app change; on a first deploy, nothing
    serves yet and ``migrate`` runs once the app stack made it."""
    steps: list[str] = []

    class Lambda:
        def update_function_code(self, FunctionName, S3Bucket, S3Key):
            steps.append(f"migrate code {S3Key}")

        def get_waiter(self, name):
            return type("Waiter", (), {"wait": lambda self, **kw: None})()

        def invoke(self, FunctionName, Payload):
            steps.append("migrate")
            return {"Payload": __import__("io").BytesIO(b'{"applied": []}')}

    class Session:
        region_name = "us-east-1"

        def client(self, service, **kwargs):
            return Lambda() if service == "lambda" else None

    deployed = {"app": app_stack_exists}

    def part(cfn, stage, name, values, echo):
        steps.append(f"stack {name}")
        return {"ArtifactsBucketName": "artifacts"} if name == "storage" else {}

    def app(cfn, s3, built, code, values, echo):
        steps.append("stack app")
        deployed["app"] = True
        return {}

    monkeypatch.setattr(deploy, "deploy_part", part)
    monkeypatch.setattr(deploy, "deploy_app", app)
    monkeypatch.setattr(deploy, "subnet_zone", lambda ec2, subnet: "us-east-1a")
    monkeypatch.setattr(deploy, "upload_app_code", lambda *a: ("artifacts", "app/dev/z.zip"))
    monkeypatch.setattr(deploy, "upload_glue_files", lambda *a: steps.append("glue files") or {})
    monkeypatch.setattr(deploy, "chalice_project", lambda *a: None)
    monkeypatch.setattr(
        deploy, "migrate_function", lambda cfn, stage: "fn-migrate" if deployed["app"] else None
    )
    built = type("Built", (), {"stage": "dev"})()
    deploy.run(Session(), "dev", deploy.Inputs("vpc-1", ("subnet-1", "subnet-2")), built, print)
    data = ["stack storage", "stack network", "stack database"]
    if app_stack_exists:
        assert steps == [*data, "migrate code app/dev/z.zip", "migrate", "glue files"] + [
            "stack glue",
            "stack app",
        ]
    else:
        assert steps == [*data, "glue files", "stack glue", "stack app", "migrate"]
