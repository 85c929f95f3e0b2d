"""Deploy a stage to AWS: ``make deploy STAGE=dev`` (docs/deploy.md).

Needs AWS credentials and a region (as the AWS CLI finds them), and the VPC to deploy into::

    VPC_ID=vpc-0abc PRIVATE_SUBNET_IDS=subnet-0aaa,subnet-0bbb \\
        [PRIVATE_EGRESS=nat|endpoints] [PRIVATE_ROUTE_TABLE_IDS=rtb-0ccc,rtb-0ddd] \\
        [ALARM_EMAIL=ops@example.com] python -m infra.deploy.deploy --stage dev

The sequence: check the account and inputs; build dist/ (package); deploy the storage, network
and database stacks; upload the Glue job's files; deploy the glue stack; upload the Lambda code
and deploy the app stack (the template chalice package wrote); invoke ``migrate``. Each stack
takes, by name, the stage's settings (``stages/<stage>.json``), the inputs above and the outputs
of the stacks before it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.deploy import chalice_project as chalice_project_module
from infra.deploy import package, stacks, templates
from infra.deploy.stacks import DeployError, Echo
from infra.local.paths import REPO_ROOT

STAGES_DIR = Path(__file__).with_name("stages")
APP_CAPABILITIES = ("CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND")  # SAM transform, unnamed roles
DATA_CAPABILITIES = ("CAPABILITY_NAMED_IAM",)  # the Glue role has a name
EGRESS = ("nat", "endpoints")


@dataclass(frozen=True)
class Inputs:
    """Where to deploy: the VPC, its private subnets and how they reach AWS APIs."""

    vpc_id: str
    subnet_ids: tuple[str, ...]
    egress: str = "nat"
    route_table_ids: tuple[str, ...] = ()
    alarm_email: str = ""  # the alarms' e-mail subscription (optional)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Inputs:
        def ids(name: str) -> tuple[str, ...]:
            return tuple(i.strip() for i in environ.get(name, "").split(",") if i.strip())

        inputs = cls(
            vpc_id=environ.get("VPC_ID", "").strip(),
            subnet_ids=ids("PRIVATE_SUBNET_IDS"),
            egress=environ.get("PRIVATE_EGRESS", "nat").strip() or "nat",
            route_table_ids=ids("PRIVATE_ROUTE_TABLE_IDS"),
            alarm_email=environ.get("ALARM_EMAIL", "").strip(),
        )
        problems = inputs.problems()
        if problems:
            raise DeployError(
                "; ".join(problems) + ". Example: make deploy STAGE=dev VPC_ID=vpc-0abc "
                "PRIVATE_SUBNET_IDS=subnet-0aaa,subnet-0bbb (docs/deploy.md)"
            )
        return inputs

    def problems(self) -> list[str]:
        found = []
        if not self.vpc_id:
            found.append("VPC_ID is not set")
        if len(self.subnet_ids) < 2:
            found.append("PRIVATE_SUBNET_IDS needs two or more subnets (two zones for RDS)")
        if self.egress not in EGRESS:
            found.append(f"PRIVATE_EGRESS must be one of {', '.join(EGRESS)}")
        if self.egress == "endpoints" and not self.route_table_ids:
            found.append("PRIVATE_EGRESS=endpoints needs PRIVATE_ROUTE_TABLE_IDS (for S3)")
        return found

    def values(self) -> dict[str, str]:
        """As template parameters."""
        return {
            "VpcId": self.vpc_id,
            "PrivateSubnetIds": ",".join(self.subnet_ids),
            "PrivateEgress": self.egress,
            "PrivateRouteTableIds": ",".join(self.route_table_ids),
            "GlueSubnetId": self.subnet_ids[0],
            "AlarmEmail": self.alarm_email,
        }


def stage_settings(stage: str) -> dict[str, str]:
    """The stage's parameter values (sizes, retention, throttling): ``stages/<stage>.json``."""
    values: dict[str, str] = json.loads((STAGES_DIR / f"{stage}.json").read_text())
    return values


def preflight(session: Any) -> dict[str, str]:
    """Fail clearly, before anything is built or changed, when AWS cannot be reached."""
    if os.environ.get("AWS_ENDPOINT_URL"):
        raise DeployError(
            f"AWS_ENDPOINT_URL is set ({os.environ['AWS_ENDPOINT_URL']}, the local stack?): "
            "make deploy talks to AWS itself; unset it"
        )
    if not session.region_name:
        raise DeployError("no AWS region: set AWS_REGION (or give your AWS profile a region)")
    if session.get_credentials() is None:
        raise DeployError(
            "no AWS credentials: run `aws configure` or `aws sso login`, or set AWS_PROFILE "
            "(or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        identity = session.client("sts").get_caller_identity()
    except (BotoCoreError, ClientError) as exc:
        raise DeployError(f"AWS rejected the credentials: {exc}") from exc
    return {"account": identity["Account"], "arn": identity["Arn"], "region": session.region_name}


def subnet_zone(ec2: Any, subnet_id: str) -> str:
    zone: str = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["AvailabilityZone"]
    return zone


def deploy_part(
    cfn: Any, stage: str, part: str, values: Mapping[str, str], echo: Echo
) -> dict[str, str]:
    """Deploy one data plane stack with the values its template declares; its outputs."""
    text = templates.path(part).read_text()
    if len(text.encode()) > templates.TEMPLATE_BODY_LIMIT:
        raise DeployError(f"{part}.yaml is over CloudFormation's {templates.TEMPLATE_BODY_LIMIT} B")
    names = templates.parameters(templates.loads(text))
    return stacks.deploy(
        cfn,
        stacks.stack_name(stage, part),
        {"TemplateBody": text},
        stacks.select(names, values),
        DATA_CAPABILITIES,
        echo,
    )


def upload(s3: Any, file: Path, bucket: str, key: str, echo: Echo) -> str:
    s3.upload_file(str(file), bucket, key)
    echo(f"uploaded s3://{bucket}/{key}")
    return f"s3://{bucket}/{key}"


def upload_glue_files(s3: Any, built: package.Build, bucket: str, echo: Echo) -> dict[str, str]:
    """The job's script and libraries at the paths glue.yaml names; the values they set."""
    upload(s3, built.glue_script, bucket, f"glue/{built.glue_script.name}", echo)
    upload(s3, built.glue_libs, bucket, f"glue/{built.glue_libs.name}", echo)
    if built.glue_wheel is None:
        return {}
    wheel = upload(s3, built.glue_wheel, bucket, f"glue/wheels/{built.glue_wheel.name}", echo)
    return {"GluePythonModules": wheel}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def app_template(sam_template: Path, code_uri: str) -> str:
    """The app stack's template (JSON) with every function's code at ``code_uri`` in S3."""
    template = yaml.safe_load(sam_template.read_text())  # Chalice writes plain, long-form YAML
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = code_uri
    return json.dumps(template, indent=1)


def upload_app_code(s3: Any, built: package.Build, bucket: str, echo: Echo) -> tuple[str, str]:
    """The Lambda zip under ``app/<stage>/`` of ``bucket``, named by its digest: its key."""
    key = f"app/{built.stage}/deployment-{_digest(built.lambda_zip.read_bytes())}.zip"
    upload(s3, built.lambda_zip, bucket, key, echo)
    return bucket, key


def deploy_app(
    cfn: Any,
    s3: Any,
    built: package.Build,
    code: tuple[str, str],
    values: Mapping[str, str],
    echo: Echo,
) -> dict[str, str]:
    bucket, key = code
    text = app_template(built.template, f"s3://{bucket}/{key}")
    template_key = f"app/{built.stage}/template-{_digest(text.encode())}.json"
    s3.put_object(Bucket=bucket, Key=template_key, Body=text.encode())
    region = s3.meta.region_name
    url = f"https://{bucket}.s3.{region}.amazonaws.com/{template_key}"
    names = templates.parameters(json.loads(text))
    return stacks.deploy(
        cfn,
        stacks.stack_name(built.stage, "app"),
        {"TemplateURL": url},
        stacks.select(names, values),
        APP_CAPABILITIES,
        echo,
    )


def migrate_function(cfn: Any, stage: str) -> str | None:
    """The app stack's ``migrate`` function, or ``None`` before the stack's first deploy."""
    name = stacks.stack_name(stage, "app")
    if stacks.status(cfn, name) is None:
        return None
    try:
        detail = cfn.describe_stack_resource(StackName=name, LogicalResourceId="Migrate")
    except Exception as exc:
        raise DeployError(
            f'{name} has no Migrate function: app.py needs @app.lambda_function(name="migrate")'
        ) from exc
    function: str = detail["StackResourceDetail"]["PhysicalResourceId"]
    return function


def invoke_migrate(lambda_client: Any, function: str, echo: Echo) -> str:
    """Run the ``migrate`` function (inside the VPC) once; its answer."""
    answer = lambda_client.invoke(FunctionName=function, Payload=b"{}")
    payload: str = answer["Payload"].read().decode()
    if answer.get("FunctionError"):
        raise DeployError(f"migrate ({function}) failed: {payload}")
    echo(f"migrate: {payload}")
    return payload


def migrate_first(
    cfn: Any, lambda_client: Any, stage: str, code: tuple[str, str], echo: Echo
) -> bool:
    """Migrate with the release's own migrations before any of its code serves: the deployed
    ``migrate`` function gets the new code and runs it. Migrations are expand-only (columns and
    tables added, nothing the running release reads removed), so the release still serving
    works on the new schema. ``False`` on a first deploy (no function yet, nothing serving)."""
    function = migrate_function(cfn, stage)
    if function is None:
        return False
    bucket, key = code
    lambda_client.update_function_code(FunctionName=function, S3Bucket=bucket, S3Key=key)
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=function)
    echo(f"migrate: {function} runs the new release's migrations first")
    invoke_migrate(lambda_client, function, echo)
    return True


def chalice_project(session: Any, stage: str, values: Mapping[str, str], echo: Echo) -> Path:
    """``dist/<stage>/chalice-deploy``: the app as ``chalice deploy`` takes it, its policies and
    settings rendered from ``values`` (the data plane's outputs)."""
    account = session.client("sts").get_caller_identity()["Account"]
    pseudo = chalice_project_module.pseudo_parameters(
        stage, session.region_name, account, chalice_project_module.APP_NAME
    )
    chalice_project_module.save(stage, {**values, **pseudo})
    out = chalice_project_module.render(
        stage, {**values, **pseudo}, chalice_project_module.project_dir(stage)
    )
    echo(f"rendered {out.relative_to(REPO_ROOT)}: chalice deploy --stage {stage} works")
    return out


def run(
    session: Any, stage: str, inputs: Inputs, built: package.Build, echo: Echo = print
) -> dict[str, str]:
    """The whole sequence after the preflight; every stack's outputs, merged.

    Nothing of the new release serves before its migrations ran: the data stacks (no code of
    the release's), the migrations (the deployed ``migrate`` with the new code), then the job's
    code and the app. A first deploy migrates once the app stack made ``migrate``.
    """
    from botocore.config import Config

    cfn = session.client("cloudformation")
    s3 = session.client("s3")
    lambda_client = session.client("lambda", config=Config(read_timeout=300))
    values = {"Stage": stage, **stage_settings(stage), **inputs.values()}
    values["GlueAvailabilityZone"] = subnet_zone(session.client("ec2"), inputs.subnet_ids[0])
    for part in (p for p in templates.DATA_PLANE if p != "glue"):  # no code of the release
        values |= deploy_part(cfn, stage, part, values, echo)
    code = upload_app_code(s3, built, values["ArtifactsBucketName"], echo)
    migrated = migrate_first(cfn, lambda_client, stage, code, echo)
    values |= upload_glue_files(s3, built, values["ArtifactsBucketName"], echo)
    values |= deploy_part(cfn, stage, "glue", values, echo)
    chalice_project(session, stage, values, echo)
    values |= deploy_app(cfn, s3, built, code, values, echo)
    if not migrated:
        invoke_migrate(lambda_client, migrate_function(cfn, stage) or "", echo)
    return values


def summary(values: Mapping[str, str]) -> str:
    return "\n".join(
        [
            f"API:          {values.get('EndpointURL', '?')}",
            f"API key id:   {values.get('ApiKeyId', '?')} "
            "(aws apigateway get-api-key --include-value --api-key <id>)",
            f"upload to:    s3://{values['RawBucketName']}/incoming/<name>.parquet",
            f"dead letters: {values['UploadDeadLetterQueueUrl']}",
            f"alarms:       {values.get('AlarmTopicArn', '?')} (SNS; ALARM_EMAIL subscribes)",
            f"or by hand:   chalice deploy --stage {values.get('Stage', '<stage>')}"
            " (at the project's root)",
            f"Glue job:     {values['GlueJobName']} (logs: {values['GlueLogGroupName']})",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.deploy.deploy",
        description=__doc__.split("\n\n")[0],
        epilog="Inputs: VPC_ID, PRIVATE_SUBNET_IDS, PRIVATE_EGRESS, PRIVATE_ROUTE_TABLE_IDS,"
        " ALARM_EMAIL.",
    )
    parser.add_argument("--stage", required=True, choices=["dev", "prod"])
    args = parser.parse_args(argv)
    import boto3

    try:
        inputs = Inputs.from_env()
        # botocore reads AWS_DEFAULT_REGION and profiles; the AWS CLI also reads AWS_REGION.
        session = boto3.session.Session(region_name=os.environ.get("AWS_REGION") or None)
        who = preflight(session)
        print(
            f"deploying {args.stage} to account {who['account']} in {who['region']} as {who['arn']}"
        )
        built = package.build(args.stage, wheel=inputs.egress == "endpoints")
        values = run(session, args.stage, inputs, built)
    except (DeployError, package.PackageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary(values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
