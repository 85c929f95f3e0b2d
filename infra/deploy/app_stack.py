"""What every function of the app stack gets, added to the template ``chalice package`` wrote
(``make package``), so that a function added to ``app.py`` has it without anyone listing it:

- its own log group, kept ``LogRetentionDays`` (the stage's setting, as the Glue job's), and
  Lambda's logging configuration: JSON lines, application and platform logs at INFO;
- its errors in the ``lambda-errors`` alarm;
- its errors, throttles and concurrency on the stage's dashboard, beside the product's metrics
  (uploads, runs by outcome, run duration), the API's latency and 5xx, the queues and the
  database, and a log query of every function's warnings and errors;
- the IaC scanner's (checkov's) exceptions that hold for every function, each with its reason.
"""

from __future__ import annotations

import json
from typing import Any

from chalicelib import metrics

FUNCTION = "AWS::Serverless::Function"
#: Lambda's logging configuration of every function (its log group is added per function).
LOGGING = {"LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "INFO"}
#: The API's stage name (.chalice/config.json api_gateway_stage) and API name (the overlay's).
API = ("voucher-selection-${Stage}", "api")


#: checkov's findings on every function, its role and its log group, and why each is accepted.
SKIPS = {
    FUNCTION: {
        "CKV_AWS_116": "No dead-letter queue of its own: the API and migrate are invoked"
        " synchronously (the caller sees the error), on_upload's messages go to the upload"
        " queue's dead-letter queue, and a lost Glue state event is covered by the run's lease.",
        "CKV_AWS_173": "The variables are names, hosts and ARNs, never a secret (the database"
        " logins are IAM tokens or the master secret read at run time); Lambda encrypts them"
        " at rest with its own key.",
    },
    "AWS::IAM::Role": {
        "CKV_AWS_111": 'The only actions on "*" are those AWS offers no narrower resource for:'
        " the VPC network interfaces Lambda requires and X-Ray's trace upload"
        " (tests/unit/infra/test_policies.py allows no other).",
    },
    "AWS::Logs::LogGroup": {
        "CKV_AWS_158": "CloudWatch Logs encrypts every log group at rest; these lines hold run"
        " ids, counts, object keys and errors, never a secret or a customer's data.",
    },
}
#: A function capped by its SQS event source (MaximumConcurrency) rather than reserved
#: concurrency; one with neither is left for checkov (and tests/unit/infra) to refuse.
QUEUE_CAPPED = {"CKV_AWS_115": "Capped by its SQS event source's MaximumConcurrency."}


def functions(template: dict[str, Any]) -> list[str]:
    """The logical ids of the template's functions, in order."""
    return sorted(k for k, r in template["Resources"].items() if r["Type"] == FUNCTION)


def log_group_name(logical_id: str) -> dict[str, str]:
    """``/aws/lambda/<stack>-<function>``: under the prefix the policy files let functions write
    to, and not the name Lambda would make itself (those groups exist, kept forever)."""
    return {"Fn::Sub": f"/aws/lambda/${{AWS::StackName}}-{logical_id}"}


def complete(template: dict[str, Any]) -> dict[str, Any]:
    """Add the log groups, logging configuration, errors alarm and dashboard (in place)."""
    resources = template["Resources"]
    names = functions(template)
    for name in names:
        group = f"{name}LogGroup"
        resources[group] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": log_group_name(name),
                "RetentionInDays": {"Ref": "LogRetentionDays"},
            },
        }
        resources[name]["Properties"]["LoggingConfig"] = {**LOGGING, "LogGroup": {"Ref": group}}
    for resource in list(resources.values()):
        skips = dict(SKIPS.get(resource["Type"], {}))
        if resource["Type"] == FUNCTION and _capped_by_queue(resource):
            skips |= QUEUE_CAPPED
        if skips:
            resource.setdefault("Metadata", {})["checkov"] = {
                "skip": [{"id": check, "comment": why} for check, why in skips.items()]
            }
    resources["LambdaErrorsAlarm"] = errors_alarm(names)
    resources["Dashboard"] = {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {
            "DashboardName": {"Fn::Sub": "voucher-selection-${Stage}"},
            "DashboardBody": {"Fn::Sub": json.dumps(dashboard(names), separators=(",", ":"))},
        },
    }
    return template


def _capped_by_queue(function: dict[str, Any]) -> bool:
    return any(
        event.get("Type") == "SQS"
        and event.get("Properties", {}).get("ScalingConfig", {}).get("MaximumConcurrency")
        for event in function["Properties"].get("Events", {}).values()
    )


def errors_alarm(names: list[str]) -> dict[str, Any]:
    ids = {name: name.lower() for name in names}
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmName": {"Fn::Sub": "voucher-selection-${Stage}-lambda-errors"},
            "AlarmDescription": "A Lambda function of the app failed (its log group says why).",
            "Metrics": [
                *(
                    {
                        "Id": ids[name],
                        "ReturnData": False,
                        "MetricStat": {
                            "Metric": {
                                "Namespace": "AWS/Lambda",
                                "MetricName": "Errors",
                                "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": name}}],
                            },
                            "Period": 300,
                            "Stat": "Sum",
                        },
                    }
                    for name in names
                ),
                {
                    "Id": "errors",
                    "Expression": " + ".join(ids.values()),
                    "Label": "Lambda errors",
                    "ReturnData": True,
                },
            ],
            "EvaluationPeriods": 1,
            "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": [{"Ref": "AlarmTopic"}],
        },
    }


def _widget(title: str, series: list[list[Any]], stat: str = "Sum", **extra: Any) -> dict[str, Any]:
    return {
        "type": "metric",
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "region": "${AWS::Region}",
            "view": "timeSeries",
            "stat": stat,
            "period": 300,
            "metrics": series,
            **extra,
        },
    }


def dashboard(names: list[str]) -> dict[str, Any]:
    """The stage's dashboard (a ``Fn::Sub`` text: ``${...}`` are the stack's values)."""
    product = [metrics.NAMESPACE]
    stage = ["Stage", "${Stage}"]
    api_name, api_stage = API
    api = ["AWS/ApiGateway"]
    database = ["AWS/RDS"]
    db = ["DBInstanceIdentifier", "${DbInstanceId}"]
    widgets = [
        _widget("Uploads", [[*product, metrics.UPLOADS, *stage]]),
        _widget(
            "Runs by outcome",
            [
                *([*product, metrics.RUNS, *stage, "Outcome", o] for o in metrics.OUTCOMES),
                [*product, metrics.FAILED_RUNS, *stage, {"label": "failed or abandoned (all)"}],
            ],
        ),
        _widget(
            "Run duration (s)",
            [
                [*product, metrics.RUN_DURATION, *stage, {"stat": "p50"}],
                [*product, metrics.RUN_DURATION, *stage, {"stat": "Maximum"}],
            ],
        ),
        _widget(
            "API latency (ms)",
            [
                [*api, "Latency", "ApiName", api_name, "Stage", api_stage, {"stat": "p50"}],
                [*api, "Latency", "ApiName", api_name, "Stage", api_stage, {"stat": "p99"}],
            ],
        ),
        _widget(
            "API requests and 5xx",
            [
                [*api, "Count", "ApiName", api_name, "Stage", api_stage],
                [*api, "5XXError", "ApiName", api_name, "Stage", api_stage],
                [*api, "4XXError", "ApiName", api_name, "Stage", api_stage],
            ],
        ),
        _widget(
            "Upload queue: oldest message (s), dead letters",
            [
                [
                    "AWS/SQS",
                    "ApproximateAgeOfOldestMessage",
                    "QueueName",
                    "${UploadQueueName}",
                    {"stat": "Maximum"},
                ],
                [
                    "AWS/SQS",
                    "ApproximateNumberOfMessagesVisible",
                    "QueueName",
                    "${UploadDeadLetterQueueName}",
                    {"stat": "Maximum", "yAxis": "right"},
                ],
            ],
        ),
        _widget(
            "Database: connections, CPU %",
            [
                [*database, "DatabaseConnections", *db, {"stat": "Maximum"}],
                [*database, "CPUUtilization", *db, {"stat": "Average", "yAxis": "right"}],
            ],
        ),
        _widget(
            "Database: free storage (bytes)",
            [[*database, "FreeStorageSpace", *db, {"stat": "Minimum"}]],
        ),
        *(
            _widget(
                f"{name}: errors, throttles, concurrency",
                [
                    ["AWS/Lambda", "Errors", "FunctionName", f"${{{name}}}"],
                    ["AWS/Lambda", "Throttles", "FunctionName", f"${{{name}}}"],
                    [
                        "AWS/Lambda",
                        "ConcurrentExecutions",
                        "FunctionName",
                        f"${{{name}}}",
                        {"stat": "Maximum", "yAxis": "right"},
                    ],
                ],
            )
            for name in names
        ),
        {
            "type": "log",
            "width": 24,
            "height": 6,
            "properties": {
                "title": "Warnings and errors of every function (run_id, requestId)",
                "region": "${AWS::Region}",
                "view": "table",
                "query": " | ".join(
                    [
                        " ".join(f"SOURCE '/aws/lambda/${{AWS::StackName}}-{n}'" for n in names),
                        "fields @timestamp, level, run_id, requestId, message, @log",
                        'filter level in ["WARNING", "ERROR", "CRITICAL"]',
                        "sort @timestamp desc",
                        "limit 100",
                    ]
                ),
            },
        },
    ]
    for n, widget in enumerate(widgets):  # two a row, the log table across
        widget["x"], widget["y"] = (n % 2) * 12, (n // 2) * 6
    return {"widgets": widgets}
