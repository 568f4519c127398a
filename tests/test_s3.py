"""`tensorage s3` with real S3 clients (boto3, aws-cli, rclone) on one real devnet world: miner
processes, a validator gateway, and the S3 server as its own process. Every operation the issue
names has a test here; the 1,100-key listing uses 0-byte objects, which are metadata only."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
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


def test_ranged_gets_return_exactly_the_range(s3, bucket):
    data = os.urandom(3 * MiB + 12345)  # several gateway segments (1 MiB shards) and AEAD segments
    s3.put_object(Bucket=bucket, Key="ranged.bin", Body=data)
    for first, last in [(0, 0), (100, 65_635), (65_536, 65_536 + 70_000), (2 * MiB - 7, 3 * MiB + 100),
                        (len(data) - 10, len(data) - 1)]:
        got = s3.get_object(Bucket=bucket, Key="ranged.bin", Range=f"bytes={first}-{last}")
        assert got["Body"].read() == data[first:last + 1]
        assert got["ContentRange"] == f"bytes {first}-{last}/{len(data)}"
    assert s3.get_object(Bucket=bucket, Key="ranged.bin", Range="bytes=-100")["Body"].read() == data[-100:]
    assert s3.get_object(Bucket=bucket, Key="ranged.bin", Range=f"bytes={MiB}-")["Body"].read() == data[MiB:]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="ranged.bin", Range=f"bytes={len(data)}-")
    assert code(exc.value) == "InvalidRange"


def _listing_pages(s3, bucket: str, per_dir: int, page_size: int) -> None:
    s3.create_bucket(Bucket=bucket)
    keys = [f"dir{d}/file{i:04d}" for d in range(2) for i in range(per_dir)] + ["top-a", "top-b"]
    with ThreadPoolExecutor(8) as pool:  # 0 bytes: metadata only, no store on the subnet
        list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=b""), keys))
    seen, pages = [], 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": page_size}):
        seen += [o["Key"] for o in page.get("Contents", [])]
        pages += 1
    assert seen == sorted(keys) and pages == -(-len(keys) // page_size)
    under = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="dir1/")
             for o in p.get("Contents", [])]
    assert under == sorted(k for k in keys if k.startswith("dir1/"))
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["dir0/", "dir1/"]
    assert [o["Key"] for o in top["Contents"]] == ["top-a", "top-b"]
    one = s3.list_objects_v2(Bucket=bucket, Delimiter="/", MaxKeys=1)
    assert one["IsTruncated"] and [p["Prefix"] for p in one["CommonPrefixes"]] == ["dir0/"]
    rest = s3.list_objects_v2(Bucket=bucket, Delimiter="/", ContinuationToken=one["NextContinuationToken"])
    assert [p["Prefix"] for p in rest["CommonPrefixes"]] == ["dir1/"] and not rest["IsTruncated"]
    v1 = s3.list_objects(Bucket=bucket, Prefix="dir0/file000", MaxKeys=5)
    assert [o["Key"] for o in v1["Contents"]] == [f"dir0/file{i:04d}" for i in range(5)] and v1["IsTruncated"]
    gone = keys[:min(1000, len(keys) - 2)]
    deleted = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in gone]})
    assert len(deleted["Deleted"]) == len(gone)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == len(keys) - len(gone)


def test_listing_pages_with_prefixes_delimiters_and_continuation(s3):
    _listing_pages(s3, "some", per_dir=60, page_size=25)


def test_listing_pages_over_1100_keys(s3):
    """The issue's size: 1,102 signed PUTs and a FULL-synchronous commit each, 8 s on a quiet machine
    (it was behind the slow marker, so CI never ran it)."""
    _listing_pages(s3, "many", per_dir=550, page_size=250)


def test_copy_keeps_bytes_and_survives_deleting_the_source(s3, bucket):
    data = os.urandom(200_000)
    s3.put_object(Bucket=bucket, Key="orig", Body=data, Metadata={"a": "1"})
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "orig"})
    s3.copy_object(Bucket=bucket, Key="copy2", CopySource={"Bucket": bucket, "Key": "orig"},
                   MetadataDirective="REPLACE", Metadata={"b": "2"})
    s3.delete_object(Bucket=bucket, Key="orig")
    got = s3.get_object(Bucket=bucket, Key="copy")
    assert got["Body"].read() == data and got["Metadata"] == {"a": "1"}
    assert s3.head_object(Bucket=bucket, Key="copy2")["Metadata"] == {"b": "2"}
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="orig")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_deleting_objects_removes_them_from_the_gateway(world, s3, bucket):
    s3.put_object(Bucket=bucket, Key="gone-1", Body=os.urandom(5000))
    s3.put_object(Bucket=bucket, Key="gone-2", Body=os.urandom(5000))
    with world.net.client(key_file=world.key_file) as c:
        before = {o.id for o in c.list()[0]}
    s3.delete_object(Bucket=bucket, Key="gone-1")
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "gone-2"}, {"Key": "never-was"}]})
    assert {d["Key"] for d in result["Deleted"]} == {"gone-2", "never-was"}
    with world.net.client(key_file=world.key_file) as c:
        after = {o.id for o in c.list()[0]}
    assert len(before - after) == 2


def test_multipart_upload_with_boto3_transfer_and_by_hand(s3, bucket, tmp_path):
    from boto3.s3.transfer import TransferConfig

    data = os.urandom(20 * MiB + 333)
    (tmp_path / "big").write_bytes(data)
    cfg = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB)
    s3.upload_file(str(tmp_path / "big"), bucket, "multi.bin", Config=cfg)
    head = s3.head_object(Bucket=bucket, Key="multi.bin")
    md5s = [hashlib.md5(data[i:i + 8 * MiB]).digest() for i in range(0, len(data), 8 * MiB)]
    assert head["ETag"] == f'"{hashlib.md5(b"".join(md5s)).hexdigest()}-3"'
    s3.download_file(bucket, "multi.bin", str(tmp_path / "back"), Config=cfg)  # ranged GETs, in parallel
    assert (tmp_path / "back").read_bytes() == data

    up = s3.create_multipart_upload(Bucket=bucket, Key="byhand")["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key="byhand", UploadId=up, PartNumber=1, Body=data[:5 * MiB])["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key="byhand", UploadId=up, PartNumber=2, Body=b"tail")["ETag"]
    parts = s3.list_parts(Bucket=bucket, Key="byhand", UploadId=up)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 5 * MiB), (2, 4)]
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="byhand", UploadId=up, MultipartUpload={
            "Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]})
    assert code(exc.value) == "InvalidPartOrder"
    s3.complete_multipart_upload(Bucket=bucket, Key="byhand", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    assert s3.get_object(Bucket=bucket, Key="byhand")["Body"].read() == data[:5 * MiB] + b"tail"

    gone = s3.create_multipart_upload(Bucket=bucket, Key="aborted")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="aborted", UploadId=gone, PartNumber=1, Body=b"x")
    s3.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=gone)
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=bucket, Key="aborted", UploadId=gone)
    assert code(exc.value) == "NoSuchUpload"


def test_content_md5_is_checked(world, bucket):
    import base64

    s3 = world.boto3()
    good = base64.b64encode(hashlib.md5(b"hello").digest()).decode()
    s3.put_object(Bucket=bucket, Key="md5-ok", Body=b"hello", ContentMD5=good)
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="md5-bad", Body=b"hello", ContentMD5=wrong)
    assert code(exc.value) == "BadDigest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="md5-bad")
    # from 1 MiB a body is stored while it arrives: a failed check removes what the gateway kept
    with world.net.client(key_file=world.key_file) as c:
        before = {o.id for o in c.list()[0]}
    big = os.urandom(3 * MiB)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="md5-bad-big", Body=big, ContentMD5=wrong)
    assert code(exc.value) == "BadDigest"
    with world.net.client(key_file=world.key_file) as c:
        assert {o.id for o in c.list()[0] if o.state == "stored"} <= before
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="md5-bad-big")


def test_a_presigned_get_works_with_a_plain_http_client(world, bucket):
    import asyncio

    import aiohttp

    s3 = world.boto3(signature_version="s3v4")  # boto3 presigns with the legacy V2 unless told
    data = os.urandom(70_000)
    s3.put_object(Bucket=bucket, Key="shared.bin", Body=data)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared.bin"}, ExpiresIn=300)
    forged = url.replace("shared.bin", "ranged.bin")

    async def fetch(u: str):
        async with aiohttp.ClientSession() as session:
            async with session.get(u) as resp:
                return resp.status, await resp.read()

    status, body = asyncio.run(fetch(url))
    assert status == 200 and body == data
    status, body = asyncio.run(fetch(forged))
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
    legacy = world.boto3().generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared.bin"})
    status, body = asyncio.run(fetch(legacy))
    assert status == 403 and b"Signature Version 4" in body


def _tree(root: Path) -> dict[str, bytes]:
    """Files written a minute ago: `aws s3 sync` uploads a file whose mtime is newer than the object's
    LastModified, which S3 gives to the second, so a file written in the second of its upload would
    be sent again by the next sync (a fresh-clone run did just that)."""
    files = {"a.txt": b"alpha\n", "sub/b.bin": os.urandom(300_000), "sub/deeper/c.txt": b"", "d e.txt": b"spaces"}
    past = time.time() - 60
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        os.utime(root / rel, (past, past))
    return files


def aws(world, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["aws", "--endpoint-url", world.endpoint, *args], capture_output=True, text=True,
                          env=world.env(), timeout=300)


def test_aws_cli_cp_ls_and_sync(world, s3, tmp_path):
    s3.create_bucket(Bucket="awscli")
    src = tmp_path / "src"
    files = _tree(src)
    r = aws(world, "s3", "cp", str(src / "a.txt"), "s3://awscli/single/a.txt")
    assert r.returncode == 0, r.stderr
    r = aws(world, "s3", "sync", str(src), "s3://awscli/tree/")
    assert r.returncode == 0, r.stderr
    r = aws(world, "s3", "ls", "--recursive", "s3://awscli/")
    assert r.returncode == 0, r.stderr
    listed = {line.split(maxsplit=3)[3] for line in r.stdout.splitlines()}
    assert listed == {"single/a.txt"} | {f"tree/{rel}" for rel in files}
    r = aws(world, "s3", "sync", "s3://awscli/tree/", str(tmp_path / "back"))
    assert r.returncode == 0, r.stderr
    assert {rel: (tmp_path / "back" / rel).read_bytes() for rel in files} == files
    r = aws(world, "s3", "sync", str(src), "s3://awscli/tree/")  # nothing changed: nothing sent
    assert r.returncode == 0 and "upload:" not in r.stdout, r.stdout + r.stderr
    r = aws(world, "s3", "cp", "s3://awscli/single/a.txt", str(tmp_path / "a-again.txt"))
    assert r.returncode == 0 and (tmp_path / "a-again.txt").read_bytes() == files["a.txt"], r.stderr


def rclone(world, *args: str, cwd=None) -> subprocess.CompletedProcess:
    access, secret = world.credentials
    # AWS_CA_BUNDLE (set on some machines) makes rclone's AWS SDK fail on its own transport; the
    # endpoint is plain http anyway
    env = {**{k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}, "RCLONE_CONFIG_TS_TYPE": "s3", "RCLONE_CONFIG_TS_PROVIDER": "Other",
           "RCLONE_CONFIG_TS_ACCESS_KEY_ID": access, "RCLONE_CONFIG_TS_SECRET_ACCESS_KEY": secret,
           "RCLONE_CONFIG_TS_ENDPOINT": world.endpoint, "RCLONE_CONFIG_TS_REGION": "us-east-1"}
    return subprocess.run(["rclone", "--config", str(world.root / "rclone.conf"), *args], capture_output=True,
                          text=True, env=env, timeout=300, cwd=cwd)


@pytest.mark.skipif(subprocess.run(["which", "rclone"], capture_output=True).returncode != 0,
                    reason="rclone is not installed (.ci/run installs it from apt)")
def test_rclone_copy_and_check(world, tmp_path):
    src = tmp_path / "src"
    files = _tree(src)
    r = rclone(world, "mkdir", "ts:rclone")
    assert r.returncode == 0, r.stderr
    r = rclone(world, "copy", str(src), "ts:rclone/tree")
    assert r.returncode == 0, r.stderr
    r = rclone(world, "check", str(src), "ts:rclone/tree")
    assert r.returncode == 0, r.stderr
    assert "0 differences found" in r.stderr
    r = rclone(world, "copy", "ts:rclone/tree", str(tmp_path / "back"))
    assert r.returncode == 0, r.stderr
    assert {rel: (tmp_path / "back" / rel).read_bytes() for rel in files} == files
    (src / "a.txt").write_bytes(b"changed\n")
    r = rclone(world, "check", str(src), "ts:rclone/tree")
    assert r.returncode != 0 and "1 differences found" in r.stderr


def _object_id(world, bucket: str, key: str) -> str:
    import sqlite3

    db = sqlite3.connect(f"file:{world.state / 'tensorage-s3.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT object_id FROM entry WHERE bucket=? AND key=?", (bucket, key)).fetchone()[0]
    finally:
        db.close()


def _served_by_segment(world, object_id: str) -> dict[int, int]:
    """Bytes the gateway's shards of an object served, per gateway segment."""
    out: dict[int, int] = {}
    for row in world.net.shards_of(object_id):
        out[row.segment] = out.get(row.segment, 0) + row.served
    return out


def test_a_ranged_get_fetches_only_the_segments_that_cover_it(world, s3, bucket):
    """10 MiB at 1 MiB shards and k=4: three gateway segments. The tail's range is served by the
    last segment's shards alone (the gateway counts what each shard served)."""
    data = os.urandom(10 * MiB)
    s3.put_object(Bucket=bucket, Key="segmented.bin", Body=data)
    object_id = _object_id(world, bucket, "segmented.bin")

    def served() -> dict[int, int]:
        return _served_by_segment(world, object_id)

    before = served()
    assert len(before) == 3
    got = s3.get_object(Bucket=bucket, Key="segmented.bin", Range=f"bytes={len(data) - 100}-")["Body"].read()
    assert got == data[-100:]
    after = served()
    assert after[2] > before[2] and after[0] == before[0] and after[1] == before[1]
    whole = s3.get_object(Bucket=bucket, Key="segmented.bin")["Body"].read()
    assert whole == data and all(served()[s] > after[s] for s in (0, 1))
    reply = world.net.call("validator-0", "GET", f"/v1/objects/{object_id}?stripes=5-999999", as_="client")
    assert reply.status == 416 and "stripes" in reply.error_message  # the gateway bounds what it is asked


# --- the whole path: S3 and the tensorage commands see the same objects (keep these last: the
# rebuild test restarts the server without its mapping) ----------------------------------------


def test_a_file_put_through_s3_is_retrieved_with_tensorage_retrieve(world, s3, bucket, tmp_path):
    import json

    from .conftest import tensorage

    data = os.urandom(150_000)
    s3.put_object(Bucket=bucket, Key="reports/q3-summary.pdf", Body=data)
    listed = tensorage("ls", "--json", "--key_file", str(world.key_file), *world.net.flags)
    assert listed.returncode == 0, listed.stderr
    ids = [o["id"] for o in json.loads(listed.stdout)["objects"] if o["name"] == "q3-summary.pdf"]
    assert len(ids) == 1
    got = tensorage("retrieve", ids[0], "--key_file", str(world.key_file), *world.net.flags, cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "q3-summary.pdf").read_bytes() == data


def test_the_mapping_is_rebuilt_from_the_gateway_and_tensorage_store_shows_in_s3(world, s3, bucket, tmp_path):
    from .conftest import tensorage

    data = os.urandom(40_000)
    s3.put_object(Bucket=bucket, Key="deep/keep.bin", Body=data, Metadata={"origin": "s3"})
    etag = s3.head_object(Bucket=bucket, Key="deep/keep.bin")["ETag"]
    big = os.urandom(10 * MiB)  # three gateway segments
    s3.put_object(Bucket=bucket, Key="deep/big.bin", Body=big)
    big_id = _object_id(world, bucket, "deep/big.bin")
    multi_etag = s3.head_object(Bucket=bucket, Key="multi.bin")["ETag"]
    world.stop_s3()
    (world.state / "tensorage-s3.sqlite").rename(world.state / "lost.sqlite")  # the mapping is gone
    (tmp_path / "from-cli.txt").write_bytes(b"stored with tensorage store\n")
    stored = tensorage("store", str(tmp_path / "from-cli.txt"), "--key_file", str(world.key_file), *world.net.flags)
    assert stored.returncode == 0, stored.stderr
    world.start_s3()
    s3 = world.boto3()
    got = s3.get_object(Bucket=bucket, Key="deep/keep.bin")
    assert got["Body"].read() == data and got["ETag"] == etag and got["Metadata"] == {"origin": "s3"}
    assert s3.head_object(Bucket=bucket, Key="multi.bin")["ETag"] == multi_etag
    assert s3.get_object(Bucket="tensorage", Key="from-cli.txt")["Body"].read() == b"stored with tensorage store\n"
    ranged = s3.get_object(Bucket=bucket, Key="deep/keep.bin", Range="bytes=100-199")["Body"].read()
    assert ranged == data[100:200]
    cli = s3.get_object(Bucket="tensorage", Key="from-cli.txt", Range="bytes=5-14")["Body"].read()
    assert cli == b"stored with tensorage store\n"[5:15]

    # a rebuilt entry has no header kept: the first ranged read takes it from the object's first
    # stripe (segment 0) and keeps it; neither read fetches the middle segment
    def tail() -> bytes:
        return s3.get_object(Bucket=bucket, Key="deep/big.bin", Range=f"bytes={len(big) - 100}-")["Body"].read()

    before = _served_by_segment(world, big_id)
    assert tail() == big[-100:]
    first = _served_by_segment(world, big_id)
    assert tail() == big[-100:]
    after = _served_by_segment(world, big_id)
    assert first[1] == before[1] and first[2] > before[2]
    assert after[0] == first[0] and after[1] == first[1] and after[2] > first[2]  # the header was kept
    log = world.log.read_text()
    assert log.count(world.credentials[1]) == 1  # the secret was printed on the first run only
    assert "object(s) added from the gateway's listing" in log


def readme_example(name: str) -> list[str]:
    """The lines of README's example ``name`` (the fenced block after ``<!-- s3-example: name -->``)."""
    import re

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    found = re.search(rf"<!-- s3-example: {name} -->\n```\w+\n(.*?)```", text, flags=re.S)
    assert found, f"README has no s3 example {name}"
    return found.group(1).splitlines()


def test_readme_examples(world, tmp_path):
    """README's aws-cli, boto3 and rclone examples, run as written against this world's server (its
    port and credentials in place of the README's; `tensorage s3` and the exports are what the world
    and the environment already do)."""
    access, secret = world.credentials
    (tmp_path / "holiday.jpg").write_bytes(os.urandom(9 * MiB))  # above boto3's multipart threshold
    (tmp_path / "album").mkdir()
    for i in range(3):
        (tmp_path / "album" / f"p{i}.jpg").write_bytes(os.urandom(1000 + i))

    def local(line: str) -> str:
        return line.replace("http://127.0.0.1:9009", world.endpoint)

    env = world.env()
    for line in readme_example("aws"):
        if line.startswith("aws "):
            r = subprocess.run(local(line), shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=300)
            assert r.returncode == 0, (line, r.stderr)
    assert " album/p2.jpg" in r.stdout and " 2024/holiday.jpg" in r.stdout

    code_ = "\n".join(local(line) for line in readme_example("boto3"))
    scope: dict = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update({"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "us-east-1"})
    try:
        exec(compile(code_, "README.md (boto3 example)", "exec"), scope)
    finally:
        os.chdir(cwd)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert scope["head"] == (tmp_path / "holiday.jpg").read_bytes()[:1024]
    assert scope["url"].startswith(world.endpoint) and "X-Amz-Signature=" in scope["url"]

    for line in readme_example("rclone"):
        if line.startswith("rclone "):
            r = rclone(world, *line.split()[1:], cwd=tmp_path)
            assert r.returncode == 0, (line, r.stderr)
    assert "0 differences found" in r.stderr
