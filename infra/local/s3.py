"""The local endpoint: clients with the dummy credentials, and idempotent buckets."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from infra.local.settings import DUMMY_CREDENTIAL, REGION


def client(endpoint_url: str, service: str = "s3", config: Any = None) -> Any:
    """A boto3 client of ``service`` for ``endpoint_url`` (created on call, never at import)."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=DUMMY_CREDENTIAL,
        aws_secret_access_key=DUMMY_CREDENTIAL,
        config=config,
    )


def bucket_exists(s3: Any, name: str) -> bool:
    try:
        s3.head_bucket(Bucket=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchBucket"):
            return False
        raise
    return True


def ensure_bucket(s3: Any, name: str) -> bool:
    """Create bucket ``name`` unless it exists; return whether it was created."""
    if bucket_exists(s3, name):
        return False
    try:
        s3.create_bucket(Bucket=name)
    except ClientError as exc:  # created meanwhile by a concurrent caller
        if exc.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
            raise
        return False
    return True


def empty_bucket(s3: Any, name: str) -> None:
    """Delete every object of bucket ``name`` and abort its multipart uploads in progress."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=name, Delete={"Objects": keys})
    for upload in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])


def delete_bucket(s3: Any, name: str) -> None:
    """Delete bucket ``name`` and everything in it."""
    empty_bucket(s3, name)
    s3.delete_bucket(Bucket=name)
