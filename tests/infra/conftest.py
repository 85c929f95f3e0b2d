"""Fixtures of the infrastructure tests: a fresh AWS account on the local moto server with a VPC
in it, the data plane stacks deployed there by the deploy's own code, and the Chalice packages of
both stages."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from infra.deploy import deploy, package, stacks, templates
from infra.local.settings import REGION

#: What moto's CloudFormation cannot create: the database stack (no MasterUserSecret attribute).
#: These stand in for its outputs so that the glue stack, which takes them, can be deployed.
FAKE_DATABASE = {
    "DbHost": "voucher-dev.cluster.internal",
    "DbPort": "5432",
    "DbName": "voucher",
    "DbResourceId": "db-ABCDEFGHIJKLMNOPQRSTUVWXYZ",
}
#: The stacks moto deploys for real, in the deploy's order.
MOTO_PARTS = ("storage", "network", "glue")
CHALICE_CONFIG = templates.REPO_ROOT / ".chalice" / "config.json"


def chalice_stage(stage: str) -> dict:
    """A stage of .chalice/config.json, as written."""
    return json.loads(CHALICE_CONFIG.read_text())["stages"][stage]


@dataclass(frozen=True)
class Account:
    session: boto3.session.Session
    endpoint_url: str
    account_id: str

    def client(self, service: str):
        return self.session.client(service, endpoint_url=self.endpoint_url)


def new_account(endpoint: str) -> Account:
    """A session in a fresh account (moto keys accounts by the assumed role's account id)."""
    account_id = str(random.randrange(10**11, 10**12))
    sts = boto3.client("sts", endpoint_url=endpoint, region_name=REGION)
    role = f"arn:aws:iam::{account_id}:role/infra-tests"
    credentials = sts.assume_role(RoleArn=role, RoleSessionName="infra-tests")["Credentials"]
    session = boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=REGION,
    )
    return Account(session, endpoint, account_id)


def new_vpc(account: Account) -> deploy.Inputs:
    """A VPC with private subnets in two zones, as a user would name them to the deploy."""
    ec2 = account.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnets = tuple(
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{n}.0/24", AvailabilityZone=zone)["Subnet"][
            "SubnetId"
        ]
        for n, zone in enumerate((f"{REGION}a", f"{REGION}b"), start=1)
    )
    return deploy.Inputs(vpc_id=vpc, subnet_ids=subnets)


@contextlib.contextmanager
def deployed_data_plane(account: Account, vpc: deploy.Inputs) -> Iterator[dict[str, str]]:
    """The storage, network and glue stacks of stage dev, deployed by ``deploy.deploy_part`` as
    ``make deploy`` does; every value the deploy had at the end (inputs and outputs)."""
    cfn = account.client("cloudformation")
    secret = f"arn:aws:secretsmanager:{REGION}:{account.account_id}:secret:rds!db-test-AbCdEf"
    values = {"Stage": "dev", **deploy.stage_settings("dev"), **vpc.values()}
    zone = deploy.subnet_zone(account.client("ec2"), vpc.subnet_ids[0])
    values |= {"GlueAvailabilityZone": zone, "DbSecretArn": secret, **FAKE_DATABASE}
    for part in MOTO_PARTS:
        values |= deploy.deploy_part(cfn, "dev", part, values, echo=lambda _: None)
    yield values
    for part in reversed(MOTO_PARTS):
        cfn.delete_stack(StackName=stacks.stack_name("dev", part))


@pytest.fixture(scope="session")
def aws_account(local_stack) -> Account:
    """An account of this session's own on the shared moto server: names never collide with
    other test sessions', and nothing needs resetting."""
    return new_account(local_stack.endpoint_url)


@pytest.fixture(scope="session")
def vpc_inputs(aws_account) -> deploy.Inputs:
    return new_vpc(aws_account)


@pytest.fixture(scope="session")
def data_plane(aws_account, vpc_inputs) -> Iterator[dict[str, str]]:
    with deployed_data_plane(aws_account, vpc_inputs) as values:
        yield values


@dataclass(frozen=True)
class Packaged:
    stage: str
    template: Path  # as chalice package wrote it (SAM)
    lambda_zip: Path
    transformed: dict  # after the SAM transform: the plain CloudFormation AWS would create


class _NoManagedPolicies:
    """The SAM transform asks IAM for managed policy ARNs only when a function names one."""

    def load(self) -> dict:
        return {}


def sam_transform(template: Path, stage: str) -> dict:
    """The app stack's template as ``make deploy`` sends it, through AWS's own SAM translator."""
    from samtranslator.translator.transform import transform

    code_uri = f"s3://voucher-artifacts-{stage}-123456789012-{REGION}/app/{stage}/deployment.zip"
    sam = json.loads(deploy.app_template(template, code_uri))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", REGION)  # the translator resolves AWS::Region
        return transform(sam, {}, _NoManagedPolicies())


@pytest.fixture(scope="session")
def packaged(tmp_path_factory) -> dict[str, Packaged]:
    """``chalice package`` of both stages with the overlay merged, as ``make package`` runs it."""
    out = tmp_path_factory.mktemp("dist")
    built = {}
    for stage in ("dev", "prod"):
        template = package.chalice_package(stage, out / stage)
        transformed = sam_transform(template, stage)
        built[stage] = Packaged(stage, template, out / stage / "deployment.zip", transformed)
    return built
