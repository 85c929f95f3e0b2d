"""The storage, network and glue stacks, deployed by the deploy's own code into the local moto
server's CloudFormation (a fresh account of their own), and what they created.

moto creates buckets (with their encryption), queues, security groups and their ingress rules,
the Glue role and its policy, and log groups. It silently skips the queue policy, bucket policies,
bucket versioning, public access blocks, lifecycle rules and notifications, security group egress
rules, and the Glue job and connection; the database stack does not deploy at all (moto's RDS has
no ``MasterUserSecret``). Those are checked by cfn-lint (test_lint), by the wiring tests
(test_stack_wiring) and, for the notification, by applying the template's own rules below.
"""

from __future__ import annotations

import ast
import json
import uuid

from infra.deploy import deploy, stacks, templates
from tests.fixtures.infra import FAKE_DATABASE, chalice_stage


def test_storage_outputs_name_what_the_chalice_stage_and_the_job_use(data_plane, aws_account):
    suffix = f"dev-{aws_account.account_id}-us-east-1"
    assert data_plane["RawBucketName"] == f"voucher-raw-{suffix}"
    assert data_plane["LakeBucketName"] == f"voucher-lake-{suffix}"
    assert data_plane["ArtifactsBucketName"] == f"voucher-artifacts-{suffix}"
    assert data_plane["CuratedLocation"] == f"s3://voucher-lake-{suffix}/curated/"
    assert data_plane["RejectedLocation"] == f"s3://voucher-lake-{suffix}/rejected/"
    upload_queue = chalice_stage("dev")["environment_variables"]["UPLOAD_QUEUE"]
    assert data_plane["UploadQueueName"] == upload_queue
    assert data_plane["UploadQueueArn"].endswith(f":{aws_account.account_id}:voucher-uploads-dev")


def test_the_buckets_exist_encrypted(data_plane, aws_account):
    s3 = aws_account.client("s3")
    for name in ("RawBucketName", "LakeBucketName", "ArtifactsBucketName"):
        rules = s3.get_bucket_encryption(Bucket=data_plane[name])[
            "ServerSideEncryptionConfiguration"
        ]["Rules"]
        assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def _queue_url(aws_account, name: str) -> str:
    return aws_account.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]


def _drain(sqs, queue: str) -> list[dict]:
    """Every message waiting, each deleted (PurgeQueue works once a minute)."""
    drained = []
    while messages := sqs.receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1
    ).get("Messages", []):
        for message in messages:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        drained += messages
    return drained


def test_an_upload_event_goes_to_the_dead_letter_queue_after_three_receives(
    data_plane, aws_account
):
    sqs = aws_account.client("sqs")
    queue = _queue_url(aws_account, data_plane["UploadQueueName"])
    dead = _queue_url(aws_account, f"{data_plane['UploadQueueName']}-dlq")
    assert (
        sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["VisibilityTimeout"])[
            "Attributes"
        ]["VisibilityTimeout"]
        == "180"
    )
    _drain(sqs, queue)
    body = f"poison-{uuid.uuid4().hex}"
    sqs.send_message(QueueUrl=queue, MessageBody=body)
    for _ in range(int(data_plane["UploadMaxReceiveCount"])):  # each delivery fails, say
        got = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0, WaitTimeSeconds=1)
        assert [m["Body"] for m in got.get("Messages", [])] == [body]
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0)
    moved = sqs.receive_message(QueueUrl=dead, WaitTimeSeconds=1).get("Messages", [])
    assert [m["Body"] for m in moved] == [body]


def _api_notification(template_rules: list[dict], queue_arn: str) -> dict:
    """storage.yaml's QueueConfigurations in the S3 API's shape, the queue resolved."""
    return {
        "QueueConfigurations": [
            {
                "QueueArn": queue_arn,
                "Events": [rule["Event"]],
                "Filter": {"Key": {"FilterRules": rule["Filter"]["S3Key"]["Rules"]}},
            }
            for rule in template_rules
        ]
    }


def test_the_templates_notification_rules_route_every_upload_and_nothing_else(
    data_plane, aws_account
):
    """moto skips NotificationConfiguration in CloudFormation but honours it through the API:
    apply the template's own rules to the deployed bucket and queue, then upload. Every object
    under incoming/ reaches on_upload, whatever its name (it judges them by their bytes)."""
    s3, sqs = aws_account.client("s3"), aws_account.client("sqs")
    bucket, queue = data_plane["RawBucketName"], _queue_url(aws_account, "voucher-uploads-dev")
    raw = templates.load(templates.path("storage"))["Resources"]["RawBucket"]["Properties"]
    rules = raw["NotificationConfiguration"]["QueueConfigurations"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration=_api_notification(rules, data_plane["UploadQueueArn"]),
    )
    _drain(sqs, queue)
    keys = [
        "incoming/A.PARQUET",
        "incoming/b.parquet.gzip",
        "incoming/c.csv",
        "incoming/folder/part-0",
        "other/d.parquet",
    ]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"PAR1")
    received = [
        record["s3"]["object"]["key"]
        for message in _drain(sqs, queue)
        for record in json.loads(message["Body"]).get("Records", [])  # none in s3:TestEvent
    ]
    assert sorted(k.replace("%2F", "/") for k in received) == sorted(keys[:4])


def test_the_database_admits_only_the_lambdas_and_glue_on_5432(data_plane, aws_account):
    ec2 = aws_account.client("ec2")
    group = ec2.describe_security_groups(GroupIds=[data_plane["DatabaseSecurityGroupId"]])[
        "SecurityGroups"
    ][0]
    assert group["VpcId"] == data_plane["VpcId"]
    [rule] = group["IpPermissions"]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 5432, 5432)
    assert rule["IpRanges"] == [] and rule["Ipv6Ranges"] == []
    sources = {pair["GroupId"] for pair in rule["UserIdGroupPairs"]}
    assert sources == {data_plane["LambdaSecurityGroupId"], data_plane["GlueSecurityGroupId"]}


def test_glue_workers_may_reach_each_other(data_plane, aws_account):
    ec2 = aws_account.client("ec2")
    glue = data_plane["GlueSecurityGroupId"]
    group = ec2.describe_security_groups(GroupIds=[glue])["SecurityGroups"][0]
    [rule] = group["IpPermissions"]
    assert (rule["FromPort"], rule["ToPort"]) == (0, 65535)
    assert [pair["GroupId"] for pair in rule["UserIdGroupPairs"]] == [glue]


def _statements(aws_account, role: str) -> dict[str, dict]:
    iam = aws_account.client("iam")
    [name] = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    if isinstance(document, str):  # moto keeps a CloudFormation-made one as Python's repr
        document = ast.literal_eval(document)
    return {s["Sid"]: s for s in document["Statement"]}


def test_the_glue_role_reads_uploads_and_writes_only_the_lake(data_plane, aws_account):
    role = data_plane["GlueRoleArn"].rsplit("/", 1)[1]
    trust = aws_account.client("iam").get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "glue.amazonaws.com"}]
    statements = _statements(aws_account, role)
    raw, lake = data_plane["RawBucketName"], data_plane["LakeBucketName"]
    assert statements["ReadUploads"]["Resource"] == f"arn:aws:s3:::{raw}/incoming/*"
    writes = [s for s in statements.values() if "s3:PutObject" in s["Action"]]
    assert [w["Resource"] for w in writes] == [
        [f"arn:aws:s3:::{lake}/curated*", f"arn:aws:s3:::{lake}/rejected*"]
    ]
    # The job never reads the master secret: it logs in as the writer role with an IAM token.
    assert not [s for s in statements.values() if "secretsmanager:GetSecretValue" in s["Action"]]
    assert statements["ConnectAsTheWriterRole"]["Resource"] == (
        f"arn:aws:rds-db:us-east-1:{aws_account.account_id}:dbuser:"
        f"{data_plane['DbResourceId']}/voucher_writer"
    )
    artifacts = data_plane["ArtifactsBucketName"]
    assert statements["ReadJobArtifacts"]["Resource"] == f"arn:aws:s3:::{artifacts}/glue/*"


def test_the_glue_role_may_register_partitions_of_its_stages_lake_tables_only(
    data_plane, aws_account
):
    statements = _statements(aws_account, data_plane["GlueRoleArn"].rsplit("/", 1)[1])
    register = statements["RegisterLakePartitions"]
    assert sorted(register["Action"]) == [
        "glue:BatchCreatePartition",
        "glue:GetPartition",
        "glue:GetTable",
    ]
    catalog, *scoped = register["Resource"]
    assert catalog.endswith(":catalog")
    assert [r.rsplit(":", 1)[1] for r in scoped] == [
        "database/voucher_selection_dev",
        "table/voucher_selection_dev/*",
    ]


def test_the_glue_log_group_keeps_the_stage_retention(data_plane, aws_account):
    name = data_plane["GlueLogGroupName"]
    groups = aws_account.client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    assert [(g["logGroupName"], g.get("retentionInDays")) for g in groups] == [
        (name, int(deploy.stage_settings("dev")["LogRetentionDays"]))
    ]


def test_the_glue_stack_takes_the_database_stacks_outputs(data_plane, aws_account):
    cfn = aws_account.client("cloudformation")
    stack = cfn.describe_stacks(StackName=stacks.stack_name("dev", "glue"))["Stacks"][0]
    given = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    for name, value in FAKE_DATABASE.items():
        assert given[name] == value
    assert given["GlueSubnetId"] == data_plane["PrivateSubnetIds"].split(",")[0]
    assert given["ArtifactsBucketName"] == data_plane["ArtifactsBucketName"]


def test_a_second_deploy_updates_the_stack_in_place(data_plane, aws_account):
    cfn, sqs = aws_account.client("cloudformation"), aws_account.client("sqs")
    queue = _queue_url(aws_account, data_plane["UploadQueueName"])
    try:
        changed = {**data_plane, "UploadVisibilityTimeoutSeconds": "240"}
        again = deploy.deploy_part(cfn, "dev", "storage", changed, echo=lambda _: None)
        assert again["UploadQueueArn"] == data_plane["UploadQueueArn"]
        attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["VisibilityTimeout"])
        assert attributes["Attributes"]["VisibilityTimeout"] == "240"
    finally:
        deploy.deploy_part(cfn, "dev", "storage", data_plane, echo=lambda _: None)
