"""``chalice package`` for dev and prod, with the overlay merged: the Lambda zip is lean, and the
app stack (after the SAM transform) puts every function in the private subnets with the database
settings, feeds on_upload from its stage's queue, throttles the API and, in prod, asks for an API
key on POST /voucher. The Glue libraries' zip carries the job's packages."""

from __future__ import annotations

import json
import re
import zipfile

import pytest

from chalicelib.api import edge
from infra.deploy import package, templates
from tests.fixtures.infra import chalice_stage

APP_SOURCE = (templates.REPO_ROOT / "app.py").read_text()
DATABASE_ENV = {
    "DB_SECRET_ARN": "DbSecretArn",
    "DB_HOST": "DbHost",
    "DB_PORT": "DbPort",
    "DB_NAME": "DbName",
    "GLUE_JOB_NAME": "GlueJobName",
}


def _of_type(template: dict, kind: str) -> dict[str, dict]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def test_the_lambda_zip_holds_the_handlers_and_no_data_stack(packaged):
    for built in packaged.values():
        package.check_lambda_zip(built.lambda_zip)  # raises on pandas, pyarrow, pyspark, numpy
        names = package.top_level_names(built.lambda_zip)
        assert {"app", "chalicelib", "psycopg2"} <= names
        assert not names & package.LAMBDA_FORBIDDEN


def test_the_zip_check_refuses_a_data_stack(tmp_path):
    heavy = tmp_path / "heavy.zip"
    with zipfile.ZipFile(heavy, "w") as archive:
        archive.writestr("app.py", "")
        archive.writestr("pyarrow.libs/libarrow.so", "")
    with pytest.raises(package.PackageError, match="pyarrow"):
        package.check_lambda_zip(heavy)


def test_every_function_runs_in_the_private_subnets_with_the_database_settings(packaged):
    for built in packaged.values():
        functions = _of_type(built.transformed, "AWS::Lambda::Function")
        assert "APIHandler" in functions
        stage_env = chalice_stage(built.stage)["environment_variables"]
        for logical, function in functions.items():
            properties = function["Properties"]
            assert properties["VpcConfig"] == {
                "SecurityGroupIds": [{"Ref": "LambdaSecurityGroupId"}],
                "SubnetIds": {"Ref": "PrivateSubnetIds"},
            }, logical
            env = properties["Environment"]["Variables"]
            assert {k: env[k] for k in DATABASE_ENV} == {
                k: {"Ref": p} for k, p in DATABASE_ENV.items()
            }, logical
            assert {k: env[k] for k in stage_env} == stage_env, logical
        assert stage_env["UPLOAD_QUEUE"] == f"voucher-uploads-{built.stage}"
        assert stage_env["JOB_LAUNCHER"] == "glue"


def test_the_api_is_throttled_for_everyone_and_per_key(packaged):
    for built in packaged.values():
        [stage] = _of_type(built.transformed, "AWS::ApiGateway::Stage").values()
        [setting] = stage["Properties"]["MethodSettings"]
        assert setting["ThrottlingRateLimit"] == {"Ref": "ApiThrottleRateLimit"}
        assert setting["ThrottlingBurstLimit"] == {"Ref": "ApiThrottleBurstLimit"}
        [plan] = _of_type(built.transformed, "AWS::ApiGateway::UsagePlan").values()
        [api_stage] = plan["Properties"]["ApiStages"]
        stage_id = next(iter(_of_type(built.transformed, "AWS::ApiGateway::Stage")))
        assert api_stage["Stage"] == {"Ref": stage_id}
        assert plan["Properties"]["Throttle"]["RateLimit"] == {"Ref": "ApiThrottleRateLimit"}


def _security(built) -> dict[str, list]:
    """Per ``METHOD path`` of the deployed REST API, the security it asks for."""
    [api] = _of_type(built.transformed, "AWS::ApiGateway::RestApi").values()
    return {
        f"{method.upper()} {path}": operation.get("security", [])
        for path, item in api["Properties"]["Body"]["paths"].items()
        for method, operation in item.items()
        if method != "options"
    }


#: Routes that answer with operational data (buckets, keys, ETags, error texts) or the product
#: (the criteria are every answer at once: the winning voucher of every segment).
KEYED = {
    "POST /voucher",
    "POST /vouchers",
    "GET /runs",
    "GET /runs/{run_id}",
    "GET /selection_criteria",
}
#: The pages' HTML holds no data: public, while what they read is keyed.
OPEN = {
    "GET /search_voucher",
    "GET /selection",
    "GET /runs/page",
    "GET /health",
    "GET /openapi.json",
}


def test_prod_asks_for_the_api_key_on_every_route_with_data_and_dev_on_none(packaged):
    prod, dev = _security(packaged["prod"]), _security(packaged["dev"])
    assert set(prod) == set(dev) == KEYED | OPEN  # every route is judged here
    assert {route for route, security in prod.items() if security == [{"api_key": []}]} == KEYED
    assert all(prod[route] == [] for route in OPEN)
    assert all(security == [] for security in dev.values())
    document = json.loads((templates.REPO_ROOT / "chalicelib/api/static/openapi.json").read_text())
    documented = {  # the OpenAPI document tells clients the same
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if {"api_key": []} in operation.get("security", [])
    }
    assert documented == KEYED


#: API Gateway's refusals a client can meet -> the status and code each answers with.
GATEWAY_ERRORS = {
    "MISSING_AUTHENTICATION_TOKEN": (404, "unknown_route"),
    "INVALID_API_KEY": (403, "api_key_required"),
    "THROTTLED": (429, "throttled"),
    "QUOTA_EXCEEDED": (429, "quota_exceeded"),
    "REQUEST_TOO_LARGE": (413, "body_too_large"),
    "INTEGRATION_TIMEOUT": (504, "timeout"),
    "DEFAULT_4XX": (None, "bad_request"),  # None: the status API Gateway chose
    "DEFAULT_5XX": (None, "gateway_error"),
}


def test_every_gateway_refusal_answers_in_the_error_shape_with_a_documented_code(packaged):
    document = json.loads((templates.REPO_ROOT / "chalicelib/api/static/openapi.json").read_text())
    codes = document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"][
        "enum"
    ]
    for built in packaged.values():
        [api] = _of_type(built.transformed, "AWS::ApiGateway::RestApi").values()
        responses = api["Properties"]["Body"]["x-amazon-apigateway-gateway-responses"]
        assert set(responses) == set(GATEWAY_ERRORS)
        for kind, (status, code) in GATEWAY_ERRORS.items():
            template = responses[kind]["responseTemplates"]["application/json"]
            # as API Gateway renders it: $context.error.messageString is a quoted JSON string
            body = json.loads(template.replace("$context.error.messageString", '"Forbidden"'))
            assert body["error"]["code"] == code and code in codes
            assert set(body["error"]) == {"code", "message", "field"} and body["error"]["message"]
            assert responses[kind].get("statusCode") == (None if status is None else str(status))
        unknown = json.loads(
            responses["MISSING_AUTHENTICATION_TOKEN"]["responseTemplates"]["application/json"]
        )
        assert unknown == edge.unknown_route().body()  # as chalice local answers it
        keyless = json.loads(responses["INVALID_API_KEY"]["responseTemplates"]["application/json"])
        assert keyless == edge.api_key_required().body()  # as a keyed local stage answers it


@pytest.mark.skipif(
    "on_sqs_message" not in APP_SOURCE or 'name="migrate"' not in APP_SOURCE,
    reason="app.py has no on_upload / migrate functions yet (the event-driven issue)",
)
def test_on_upload_consumes_its_stages_queue_and_migrate_exists(packaged):
    for built in packaged.values():
        functions = _of_type(built.transformed, "AWS::Lambda::Function")
        assert {"APIHandler", "OnUpload", "Migrate"} <= set(functions)
        [mapping] = _of_type(built.transformed, "AWS::Lambda::EventSourceMapping").values()
        source = mapping["Properties"]["EventSourceArn"]["Fn::Sub"]
        assert source.endswith(f":voucher-uploads-{built.stage}")
        assert mapping["Properties"]["FunctionName"] == {"Ref": "OnUpload"}


def test_the_glue_libraries_zip_carries_the_job_packages(tmp_path):
    first = package.glue_libs_zip(tmp_path / "a" / "voucher_libs.zip")
    second = package.glue_libs_zip(tmp_path / "b" / "voucher_libs.zip")
    assert first.read_bytes() == second.read_bytes()  # same sources, same bytes
    with zipfile.ZipFile(first) as archive:
        names = set(archive.namelist())
    expected = {
        "glue_jobs/__init__.py",
        "glue_jobs/voucher_selection_job.py",
        "glue_jobs/pipeline.py",
        "chalicelib/__init__.py",
        "chalicelib/db.py",
        "chalicelib/rules.py",
        "chalicelib/migrations/0001_initial.sql",
    }
    assert expected <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_glue_final_states_of_the_stage_job_reach_on_job_state(packaged):
    for built in packaged.values():
        rules = _of_type(built.transformed, "AWS::Events::Rule")
        [rule] = [
            r
            for r in rules.values()
            if r["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["OnJobState", "Arn"]}
        ]
        pattern = rule["Properties"]["EventPattern"]
        assert pattern["source"] == ["aws.glue"]
        assert pattern["detail-type"] == ["Glue Job State Change"]
        assert pattern["detail"]["jobName"] == [{"Ref": "GlueJobName"}]  # this stage's job only
        assert set(pattern["detail"]["state"]) == {
            "SUCCEEDED",
            "FAILED",
            "TIMEOUT",
            "STOPPED",
            "ERROR",
        }


def test_every_alarm_notifies_the_topic_and_watches_what_the_product_emits(packaged):
    from chalicelib import metrics

    for built in packaged.values():
        resources = built.transformed["Resources"]
        alarms = _of_type(built.transformed, "AWS::CloudWatch::Alarm")
        assert set(alarms) == {
            "DeadLetterAlarm",
            "FailedRunsAlarm",
            "Api5xxAlarm",
            "LambdaErrorsAlarm",
            "UploadQueueAgeAlarm",
            "DbConnectionsAlarm",
            "DbCpuAlarm",
            "DbFreeStorageAlarm",
            "RunDurationAlarm",
        }
        for alarm in alarms.values():
            assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        failed = alarms["FailedRunsAlarm"]["Properties"]
        assert (failed["Namespace"], failed["MetricName"]) == (
            metrics.NAMESPACE,
            metrics.FAILED_RUNS,
        )
        assert failed["Dimensions"] == [{"Name": "Stage", "Value": {"Ref": "Stage"}}]
        assert chalice_stage(built.stage)["environment_variables"]["STAGE"] == built.stage
        metrics_of = alarms["LambdaErrorsAlarm"]["Properties"]["Metrics"]
        watched = {
            m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"]
            for m in metrics_of
            if "MetricStat" in m
        }
        functions = _of_type(built.transformed, "AWS::Lambda::Function")
        assert watched == set(functions)
        api = alarms["Api5xxAlarm"]["Properties"]["Dimensions"]
        assert api[0]["Value"] == resources["RestAPI"]["Properties"]["Name"]
        assert resources["AlarmEmailSubscription"]["Condition"] == "HasAlarmEmail"


def _parameter_values(built) -> dict:
    """The values a deploy of the stage gives the app stack's parameters that have a setting."""
    from infra.deploy import deploy

    declared = templates.parameters(templates.load(templates.CHALICE_OVERLAY))
    settings = deploy.stage_settings(built.stage)
    return {name: settings.get(name, spec.get("Default")) for name, spec in declared.items()}


def test_the_new_alarms_watch_the_queue_the_database_and_the_run_durations(packaged):
    from chalicelib import metrics

    for built in packaged.values():
        alarms = _of_type(built.transformed, "AWS::CloudWatch::Alarm")
        age = alarms["UploadQueueAgeAlarm"]["Properties"]
        assert (age["MetricName"], age["Dimensions"]) == (
            "ApproximateAgeOfOldestMessage",
            [{"Name": "QueueName", "Value": {"Ref": "UploadQueueName"}}],
        )
        assert age["Threshold"] == {"Ref": "UploadQueueAgeAlarmSeconds"}
        for name, metric in (
            ("DbConnectionsAlarm", "DatabaseConnections"),
            ("DbCpuAlarm", "CPUUtilization"),
            ("DbFreeStorageAlarm", "FreeStorageSpace"),
        ):
            watched = alarms[name]["Properties"]
            assert watched["MetricName"] == metric and watched["Namespace"] == "AWS/RDS"
            assert watched["Dimensions"] == [
                {"Name": "DBInstanceIdentifier", "Value": {"Ref": "DbInstanceId"}}
            ]
            assert watched["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        assert alarms["DbFreeStorageAlarm"]["Properties"]["ComparisonOperator"] == (
            "LessThanThreshold"
        )
        duration = alarms["RunDurationAlarm"]["Properties"]
        [stat] = [m["MetricStat"]["Metric"] for m in duration["Metrics"] if "MetricStat" in m]
        assert (stat["Namespace"], stat["MetricName"]) == (metrics.NAMESPACE, metrics.RUN_DURATION)
        assert duration["ComparisonOperator"] == "GreaterThanUpperThreshold"
        values = _parameter_values(built)
        assert 0 < float(values["DbConnectionsAlarmThreshold"]) < max_connections(built.stage)


def test_every_function_logs_json_at_info_to_a_group_kept_as_the_stage_says(packaged):
    for built in packaged.values():
        resources = built.transformed["Resources"]
        functions = _of_type(built.transformed, "AWS::Lambda::Function")
        groups = _of_type(built.transformed, "AWS::Logs::LogGroup")
        for logical, function in functions.items():
            logging = function["Properties"]["LoggingConfig"]
            assert (logging["LogFormat"], logging["ApplicationLogLevel"]) == ("JSON", "INFO")
            group = groups[logging["LogGroup"]["Ref"]]["Properties"]
            assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
            name = group["LogGroupName"]["Fn::Sub"]
            assert name.startswith("/aws/lambda/${AWS::StackName}"), logical  # policies allow it
            assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}, logical
        [stage] = _of_type(built.transformed, "AWS::ApiGateway::Stage").values()
        assert stage["Properties"]["TracingEnabled"] is True
        assert resources["RestAPI"]["Properties"]["Name"] == {
            "Fn::Sub": "voucher-selection-${Stage}"
        }
        from infra.deploy import deploy

        glue = templates.load(templates.path("glue"))["Parameters"]["LogRetentionDays"]
        assert "LogRetentionDays" in deploy.stage_settings(built.stage)  # one value, every group
        assert (
            glue["AllowedValues"]
            == templates.load(templates.CHALICE_OVERLAY)["Parameters"]["LogRetentionDays"][
                "AllowedValues"
            ]
        )


def test_the_dashboard_shows_every_function_and_what_an_operator_needs(packaged):
    from chalicelib import metrics

    for built in packaged.values():
        [board] = _of_type(built.transformed, "AWS::CloudWatch::Dashboard").values()
        body = board["Properties"]["DashboardBody"]["Fn::Sub"]
        widgets = json.loads(body)["widgets"]
        series = [tuple(m[:2]) for w in widgets for m in w["properties"].get("metrics", [])]
        for wanted in (
            (metrics.NAMESPACE, metrics.UPLOADS),
            (metrics.NAMESPACE, metrics.RUNS),
            (metrics.NAMESPACE, metrics.RUN_DURATION),
            ("AWS/ApiGateway", "Latency"),
            ("AWS/ApiGateway", "5XXError"),
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
            ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
            ("AWS/RDS", "DatabaseConnections"),
        ):
            assert wanted in series, wanted
        functions = _of_type(built.transformed, "AWS::Lambda::Function")
        for logical in functions:
            assert f"${{{logical}}}" in body and f"${{AWS::StackName}}-{logical}" in body
        declared = set(built.transformed["Parameters"]) | set(built.transformed["Resources"])
        for name in re.findall(r"\$\{([^}!]+)\}", body):  # every value Fn::Sub can resolve
            assert name.startswith("AWS::") or name in declared, name


#: The memory of the stages' instance classes (AWS's instance types), and RDS PostgreSQL's
#: max_connections formula, LEAST(DBInstanceClassMemory / 9531392, 5000).
INSTANCE_MEMORY = {"db.t4g.micro": 1 * 2**30, "db.t4g.small": 2 * 2**30}
RESERVED_FOR_ADMINS = 5  # superuser_reserved_connections 3, rds.rds_superuser_reserved 2


def max_connections(stage: str) -> int:
    from infra.deploy import deploy

    memory = INSTANCE_MEMORY[deploy.stage_settings(stage)["DbInstanceClass"]]
    return min(memory // 9531392, 5000)


def test_every_function_is_capped_and_all_connections_fit_the_database(packaged):
    """Each function holds at most one connection per concurrent execution, each Glue run two
    (its steps' and its heartbeat's): with every function capped (reserved concurrency, or the
    SQS maximum concurrency of on_upload), the stage's worst case fits its instance."""
    from infra.deploy import deploy

    for built in packaged.values():
        functions = _of_type(built.transformed, "AWS::Lambda::Function")
        mappings = _of_type(built.transformed, "AWS::Lambda::EventSourceMapping").values()
        capped_by_queue = {
            m["Properties"]["FunctionName"]["Ref"]: m["Properties"]["ScalingConfig"][
                "MaximumConcurrency"
            ]
            for m in mappings
        }
        caps = {
            logical: f["Properties"].get("ReservedConcurrentExecutions")
            or capped_by_queue.get(logical)
            for logical, f in functions.items()
        }
        assert all(caps.values()), f"uncapped functions: {[k for k, v in caps.items() if not v]}"
        assert capped_by_queue["OnUpload"] == int(
            chalice_stage(built.stage)["environment_variables"]["UPLOAD_MAX_CONCURRENCY"]
        )
        glue_runs = int(deploy.stage_settings(built.stage)["GlueMaxConcurrentRuns"])
        worst = sum(caps.values()) + 2 * glue_runs
        assert worst <= max_connections(built.stage) - RESERVED_FOR_ADMINS, (built.stage, worst)
        assert worst < float(_parameter_values(built)["DbConnectionsAlarmThreshold"])
