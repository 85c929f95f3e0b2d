"""``chalice deploy --stage dev`` at the project's root, as a Chalice user types it.

The committed stages cannot be deployed by Chalice as they are: their policy files name their
resources with CloudFormation references (``{"Ref": "DbSecretArn"}``), which ``chalice package``
resolves in the template it writes but ``chalice deploy`` would send to IAM as they are
(``MalformedPolicyDocument``); and the database settings and private subnets a function needs come
from the deployed data plane stacks, not from ``.chalice/config.json``.

So a stage's values (the data plane stacks' outputs, with the account and region) are saved in
``dist/<stage>/stack-values.json`` (git-ignored) by ``make deploy`` or, once the data stacks are
up, by ``make chalice-project STAGE=dev``; from them :func:`render` writes
``dist/<stage>/chalice-deploy/``: ``app.py``, ``chalicelib/``, ``requirements.txt`` and a
``.chalice/config.json`` of that stage alone, its policy files resolved (no intrinsic left), the
database and job settings the app stack's template would have set, the private subnets and the
log retention. Chalice keeps its deployment record beside them (``.chalice/deployed/``).

``chalice deploy`` (or ``delete``) of a cloud stage at the root loads ``app.py``, which calls
:func:`redirect`: the project is rendered again from the saved values with the current code, and
the same Chalice command carries on in it; without saved values it stops before any AWS call,
saying which command to run first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infra.deploy import templates
from infra.deploy.package import DIST, ensure_ca_bundle
from infra.deploy.templates import resolve
from infra.local.paths import REPO_ROOT

CHALICE_DIR = REPO_ROOT / ".chalice"
APP_NAME = "voucher-selection"
#: Chalice commands that change a stage in AWS.
DEPLOYING = ("deploy", "delete")


def function_environment() -> dict[str, Any]:
    """What a deployed function reads from the environment, as the app stack's template sets it
    for every function (its one source: the overlay's ``Globals``)."""
    overlay = templates.load(templates.CHALICE_OVERLAY)
    return dict(overlay["Globals"]["Function"]["Environment"]["Variables"])


def values_file(stage: str) -> Path:
    return DIST / stage / "stack-values.json"


def project_dir(stage: str) -> Path:
    return DIST / stage / "chalice-deploy"


def pseudo_parameters(stage: str, region: str, account: str, app_name: str) -> dict[str, str]:
    """The pseudo parameters as the functions ``chalice deploy`` creates see them: they are named
    ``<app>-<stage>...``, as the app stack's functions are named ``<stack>...``."""
    return {
        "AWS::Partition": "aws",
        "AWS::Region": region,
        "AWS::AccountId": account,
        "AWS::StackName": f"{app_name}-{stage}",
    }


def save(stage: str, values: Mapping[str, str]) -> Path:
    """Keep a stage's values (outputs, inputs, pseudo parameters: no secret among them)."""
    file = values_file(stage)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(dict(values), indent=2, sort_keys=True) + "\n")
    return file


def render(stage: str, values: Mapping[str, str], out: Path) -> Path:
    """Write the project for ``stage`` into ``out`` (replaced, Chalice's deployment record
    kept); return ``out``."""
    from infra.deploy import deploy

    config = json.loads((CHALICE_DIR / "config.json").read_text())
    settings = dict(config["stages"][stage])
    deployed = out / ".chalice" / "deployed"
    kept = {p.name: p.read_bytes() for p in deployed.glob("*.json")} if deployed.is_dir() else {}
    shutil.rmtree(out, ignore_errors=True)
    (out / ".chalice").mkdir(parents=True)
    for name, data in kept.items():
        deployed.mkdir(exist_ok=True)
        (deployed / name).write_bytes(data)
    for name in ("app.py", "requirements.txt"):
        shutil.copy2(REPO_ROOT / name, out / name)
    shutil.copytree(
        REPO_ROOT / "chalicelib",
        out / "chalicelib",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )

    def rendered_policy(file: str) -> str:
        name = f"{Path(file).stem}-{stage}.json"
        document = resolve(json.loads((CHALICE_DIR / file).read_text()), values)
        (out / ".chalice" / name).write_text(json.dumps(document, indent=2) + "\n")
        return name

    settings["iam_policy_file"] = rendered_policy(settings["iam_policy_file"])
    settings["lambda_functions"] = {
        function: {
            **options,
            **(
                {"iam_policy_file": rendered_policy(options["iam_policy_file"])}
                if "iam_policy_file" in options
                else {}
            ),
        }
        for function, options in settings.get("lambda_functions", {}).items()
    }
    settings["environment_variables"] = {
        **{env: resolve(value, values) for env, value in function_environment().items()},
        **settings.get("environment_variables", {}),
    }
    settings["subnet_ids"] = resolve({"Ref": "PrivateSubnetIds"}, values).split(",")
    settings["security_group_ids"] = [resolve({"Ref": "LambdaSecurityGroupId"}, values)]
    settings["log_retention_in_days"] = int(deploy.stage_settings(stage)["LogRetentionDays"])
    project = {**{k: v for k, v in config.items() if k != "stages"}, "stages": {stage: settings}}
    (out / ".chalice" / "config.json").write_text(json.dumps(project, indent=2) + "\n")
    return out


def redirect(stage: str, argv: list[str], original: list[str]) -> None:
    """Carry a ``chalice deploy|delete --stage <stage>`` typed at the root on in the project
    rendered from the stage's saved values (this process is replaced); without them, stop
    saying which command to run first. ``argv`` is ``sys.argv``, ``original`` the interpreter's
    own (``sys.orig_argv``)."""
    command = next(a for a in argv[1:] if a in DEPLOYING)
    if not values_file(stage).is_file():
        raise SystemExit(
            f"chalice {command} --stage {stage} needs the settings of the stage's deployed data"
            f" stacks (database, subnets, the resources its policies name): run `make"
            f" chalice-project STAGE={stage}` first (AWS credentials, once the data stacks are"
            " up; `make deploy` does it too), then this command again."
        )
    ensure_ca_bundle()  # the functions verify the database's certificate with it
    out = render(stage, json.loads(values_file(stage).read_text()), project_dir(stage))
    print(f"chalice {command} --stage {stage}: in {out} (rendered from its stacks)", flush=True)
    interpreter = original[: len(original) - len(argv) + 1]  # python [-c code | script]
    arguments = [a for a in argv[1:] if not a.startswith("--project-dir=")]
    if "--project-dir" in arguments:  # the root it was given: the rendered project instead
        at = arguments.index("--project-dir")
        del arguments[at : at + 2]
    os.execv(sys.executable, [*interpreter, "--project-dir", str(out), *arguments])


def stack_values(session: Any, stage: str) -> dict[str, str]:
    """The outputs of a stage's deployed data plane stacks, with the pseudo parameters."""
    from infra.deploy import stacks, templates

    cfn = session.client("cloudformation")
    values = {"Stage": stage}
    for part in templates.DATA_PLANE:
        values |= stacks.outputs(cfn, stacks.stack_name(stage, part))
    account = session.client("sts").get_caller_identity()["Account"]
    return values | pseudo_parameters(stage, session.region_name, account, APP_NAME)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.deploy.chalice_project",
        description="Save a stage's values from its deployed data stacks and render the project"
        " `chalice deploy --stage <stage>` deploys (docs/deploy.md).",
    )
    parser.add_argument("--stage", default="dev", choices=["dev", "prod"])
    args = parser.parse_args(argv)
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        values = stack_values(boto3.session.Session(), args.stage)
    except (BotoCoreError, ClientError) as exc:
        print(f"error: the {args.stage} data stacks cannot be read: {exc}", file=sys.stderr)
        return 2
    print(f"saved {save(args.stage, values).relative_to(REPO_ROOT)}")
    print(f"fetched {ensure_ca_bundle().relative_to(REPO_ROOT)}")
    print(f"rendered {render(args.stage, values, project_dir(args.stage)).relative_to(REPO_ROOT)}")
    print(f"now: chalice deploy --stage {args.stage}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
