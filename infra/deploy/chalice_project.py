"""A Chalice project that ``chalice deploy`` can deploy as it is: the app with a stage's policy
files and settings rendered from the deployed stacks' outputs, every CloudFormation intrinsic of
the policy files (``Ref``, ``Fn::Sub``) resolved.

``chalice package`` (the CI/CD path, ``make deploy``) resolves them in the template it writes;
``chalice deploy`` calls IAM directly and would send them as they are. So the deploy renders
``dist/<stage>/chalice-deploy/`` (git-ignored): ``app.py``, ``chalicelib/``,
``requirements.txt`` and a ``.chalice/config.json`` of that stage alone, with its rendered policy
files beside it, the database and job settings the app stack's template would have set, and the
private subnets. Then::

    chalice --project-dir dist/dev/chalice-deploy deploy --stage dev
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

from infra.deploy.templates import REPO_ROOT, resolve

CHALICE_DIR = REPO_ROOT / ".chalice"
#: What a deployed function reads from the environment (the app stack's Globals in the template).
ENVIRONMENT = {
    "DB_SECRET_ARN": "DbSecretArn",
    "DB_HOST": "DbHost",
    "DB_PORT": "DbPort",
    "DB_NAME": "DbName",
    "GLUE_JOB_NAME": "GlueJobName",
}


def pseudo_parameters(stage: str, region: str, account: str, app_name: str) -> dict[str, str]:
    """The pseudo parameters as the functions ``chalice deploy`` creates see them: they are named
    ``<app>-<stage>...``, as the app stack's functions are named ``<stack>...``."""
    return {
        "AWS::Partition": "aws",
        "AWS::Region": region,
        "AWS::AccountId": account,
        "AWS::StackName": f"{app_name}-{stage}",
    }


def render(stage: str, values: Mapping[str, str], out: Path) -> Path:
    """Write the project for ``stage`` into ``out`` (replaced); return ``out``."""
    config = json.loads((CHALICE_DIR / "config.json").read_text())
    settings = dict(config["stages"][stage])
    shutil.rmtree(out, ignore_errors=True)
    (out / ".chalice").mkdir(parents=True)
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
        **{env: resolve({"Ref": output}, values) for env, output in ENVIRONMENT.items()},
        **settings.get("environment_variables", {}),
    }
    settings["subnet_ids"] = resolve({"Ref": "PrivateSubnetIds"}, values).split(",")
    settings["security_group_ids"] = [resolve({"Ref": "LambdaSecurityGroupId"}, values)]
    project = {**{k: v for k, v in config.items() if k != "stages"}, "stages": {stage: settings}}
    (out / ".chalice" / "config.json").write_text(json.dumps(project, indent=2) + "\n")
    return out
