"""Private egress (``PRIVATE_EGRESS=endpoints``): the private subnets reach AWS only through the
network stack's VPC endpoints, so every AWS service the deployed code calls needs one.

The services are derived from the code itself, not listed here: every boto3 client the Lambda
functions (``app.py``, ``chalicelib``) and the Glue job (``glue_jobs``, ``chalicelib``) create,
named by a string literal, read with ``ast``. A client used only to sign locally (an IAM database
token, a presigned URL) calls nothing and needs no endpoint. A new ``boto3.client("x")`` in the
code fails this test until network.yaml has an endpoint for ``x``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import botocore.session

from infra.deploy import templates

DEPLOYED_CODE = ("app.py", "chalicelib", "glue_jobs")
#: botocore's client methods that sign a request locally and send nothing.
LOCAL_SIGNERS = {"generate_db_auth_token", "generate_presigned_url", "generate_presigned_post"}
_SERVICES = set(botocore.session.get_session().get_available_services())


def python_files() -> Iterator[Path]:
    for name in DEPLOYED_CODE:
        path = templates.REPO_ROOT / name
        yield from [path] if path.is_file() else sorted(path.rglob("*.py"))


def _service_named(call: ast.Call) -> str | None:
    """The service of a call such as ``boto3.client("s3")`` or ``_client("sqs")``."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if not name.endswith("client") or not call.args:
        return None
    first = call.args[0]
    if isinstance(first, ast.Constant) and first.value in _SERVICES:
        return first.value
    return None


def called_services(source: str) -> set[str]:
    """The services a module's code calls: each client it creates, unless every use of that
    client (through the function that makes it) is a local signer."""
    tree = ast.parse(source)
    makers: dict[str, str] = {}  # function name -> the service of the client it returns
    services: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            made = {_service_named(c) for c in ast.walk(node) if isinstance(c, ast.Call)}
            made.discard(None)
            if len(made) == 1 and not node.args.args:
                makers[node.name] = made.pop()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (service := _service_named(node)):
            services.add(service)
    for service in set(makers.values()):
        uses = [
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", None) in makers
            and makers[node.value.func.id] == service
        ]
        created_elsewhere = any(
            isinstance(n, ast.Call) and _service_named(n) == service
            for fn in ast.walk(tree)
            if isinstance(fn, ast.FunctionDef) and fn.name not in makers
            for n in ast.walk(fn)
        )
        if uses and set(uses) <= LOCAL_SIGNERS and not created_elsewhere:
            services.discard(service)
    return services


def endpoint_prefixes(services: set[str]) -> set[str]:
    """The names VPC endpoints use (``com.amazonaws.<region>.<prefix>``)."""
    session = botocore.session.get_session()
    return {session.get_service_model(s).endpoint_prefix for s in services}


def network_endpoints() -> set[str]:
    resources = templates.load(templates.path("network"))["Resources"]
    return {
        r["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[1]
        for r in resources.values()
        if r["Type"] == "AWS::EC2::VPCEndpoint"
    }


def test_every_service_the_deployed_code_calls_has_an_endpoint_in_private_egress_mode():
    called = set().union(*(called_services(f.read_text()) for f in python_files()))
    assert {"s3", "sqs", "glue", "secretsmanager"} <= called  # what the code is known to call
    missing = endpoint_prefixes(called) - network_endpoints()
    assert not missing, f"network.yaml has no VPC endpoint for {sorted(missing)}"


def test_the_derivation_sees_clients_and_local_signers():
    code = """
import boto3, functools

@functools.cache
def _rds():
    return boto3.client("rds")

def token():
    return _rds().generate_db_auth_token(DBHostname="h", Port=5432, DBUsername="u")

def send():
    boto3.client("sqs").send_message(QueueUrl="q", MessageBody="b")

def helper(name):
    return session.client(name)
"""
    assert called_services(code) == {"sqs"}
    assert called_services(code.replace("generate_db_auth_token", "describe_db_instances")) == {
        "rds",
        "sqs",
    }
    assert endpoint_prefixes({"cloudwatch"}) == {"monitoring"}
