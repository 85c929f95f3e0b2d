"""The raw bucket's upload notification has one source, the storage template: the local stack
configures what it declares (the events, the prefix), and moto holds exactly that."""

from __future__ import annotations

from infra.deploy import templates


def test_the_local_bucket_notifies_what_the_storage_template_declares(uploads, s3, buckets):
    declared = templates.load(templates.path("storage"))["Resources"]["RawBucket"]["Properties"][
        "NotificationConfiguration"
    ]["QueueConfigurations"]
    configured = s3.get_bucket_notification_configuration(Bucket=buckets.raw)
    assert [
        (c["Events"], {r["Name"].lower(): r["Value"] for r in c["Filter"]["Key"]["FilterRules"]})
        for c in configured["QueueConfigurations"]
    ] == [
        ([d["Event"]], {r["Name"]: r["Value"] for r in d["Filter"]["S3Key"]["Rules"]})
        for d in declared
    ]
