"""Create or update one CloudFormation stack and wait for it; read its outputs.

Plain ``create_stack``/``update_stack`` (with ``CAPABILITY_AUTO_EXPAND`` they take the SAM
template too), so the same code deploys to AWS and, in the tests, to the local moto server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from botocore.exceptions import ClientError, WaiterError

Echo = Callable[[str], None]
#: Poll every 15 s for up to 90 min: a first RDS instance alone takes 10-20 min.
WAIT = {"Delay": 15, "MaxAttempts": 360}
_NO_UPDATES = "No updates are to be performed"
TAGS = [{"Key": "project", "Value": "voucher-selection"}]


class DeployError(RuntimeError):
    """A deploy step failed; the message says which and why."""


def stack_name(stage: str, part: str) -> str:
    return f"voucher-selection-{stage}-{part}"


def select(names: Iterable[str], values: Mapping[str, str]) -> dict[str, str]:
    """The values a template takes: those of ``values`` named like one of its parameters."""
    return {name: str(values[name]) for name in names if name in values}


def status(cfn: Any, name: str) -> str | None:
    """The stack's status, or ``None`` when there is no such stack."""
    try:
        stack_status: str = cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
        return stack_status
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise


def outputs(cfn: Any, name: str) -> dict[str, str]:
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []}


def _failures(cfn: Any, name: str) -> str:
    """The reasons CloudFormation gave for failed resources, newest first."""
    events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    reasons = [
        f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', e['ResourceStatus'])}"
        for e in events
        if e["ResourceStatus"].endswith("_FAILED")
    ]
    return "; ".join(reasons[:5]) or "no failed resource reported"


def deploy(
    cfn: Any,
    name: str,
    template: Mapping[str, str],
    parameters: Mapping[str, str],
    capabilities: Iterable[str] = (),
    echo: Echo = print,
) -> dict[str, str]:
    """Create the stack, or update it when it exists; wait; return its outputs.

    ``template`` is ``{"TemplateBody": text}`` or ``{"TemplateURL": url}``.
    """
    current = status(cfn, name)
    if current == "ROLLBACK_COMPLETE":
        raise DeployError(
            f"{name} failed its first creation and cannot be updated: delete it "
            f"(aws cloudformation delete-stack --stack-name {name}) and deploy again"
        )
    if current and current.endswith("_IN_PROGRESS"):
        raise DeployError(f"{name} is busy ({current}); wait for it to settle and deploy again")
    request: dict[str, Any] = {
        "StackName": name,
        **template,
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        "Capabilities": list(capabilities),
    }
    if current is None:
        echo(f"stack {name}: creating")
        cfn.create_stack(**request, OnFailure="ROLLBACK", Tags=TAGS)
        waiter = "stack_create_complete"
    else:
        echo(f"stack {name}: updating")
        try:
            cfn.update_stack(**request, Tags=TAGS)
        except ClientError as exc:
            if _NO_UPDATES not in str(exc):
                raise
            echo(f"stack {name}: no changes")
            return outputs(cfn, name)
        waiter = "stack_update_complete"
    try:
        cfn.get_waiter(waiter).wait(StackName=name, WaiterConfig=WAIT)
    except WaiterError as exc:
        raise DeployError(f"{name}: {status(cfn, name)}: {_failures(cfn, name)}") from exc
    echo(f"stack {name}: {status(cfn, name)}")
    return outputs(cfn, name)
