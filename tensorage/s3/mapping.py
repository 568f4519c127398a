"""Bucket/key names -> client objects, in a small local SQLite (``s3.sqlite`` beside the key file).

Names never reach the gateway in the clear: the gateway knows object ids, the sealed metadata of
each object carries its bucket, key, ETag and user metadata, and :mod:`.rebuild` recovers this
mapping from the gateway's listing. A 0-byte object is metadata only (``object_id`` NULL): there
are no bytes to protect, and a directory marker should not cost n shards on n miners.

Several keys may share one object (CopyObject); the object is removed from the gateway when the
last key that names it goes.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import peewee as pw

from ..storage.models import open_sqlite
from .errors import BucketAlreadyOwnedByYou, BucketNotEmpty, InvalidArgument, NoSuchBucket, NoSuchKey, NoSuchUpload

MAX_SCAN = 1000  # rows read per query while paging


@dataclass
class Page:
    objects: list = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    next_token: str = ""
    last: str = ""


def encode_token(after: str) -> str:
    return base64.urlsafe_b64encode(after.encode()).decode()


def decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("The continuation token provided is incorrect") from None


class Mapping:
    def __init__(self, path: Path) -> None:
        self.db = open_sqlite(Path(path), "the S3 mapping", synchronous="full")
        db = self.db

        class Base(pw.Model):
            class Meta:
                database = db

        class Bucket(Base):
            name = pw.CharField(primary_key=True)
            created_at = pw.FloatField()

        class Entry(Base):
            bucket = pw.CharField()
            key = pw.TextField()
            object_id = pw.CharField(null=True, index=True)
            size = pw.BigIntegerField()
            etag = pw.CharField()
            content_type = pw.CharField(default="binary/octet-stream")
            meta = pw.TextField(default="{}")
            modified_at = pw.FloatField()
            sealed = pw.TextField(default="")  # {"h": header hex, "s": size, "k", "n", "b"}: for ranged reads

            class Meta:
                primary_key = pw.CompositeKey("bucket", "key")

        class Upload(Base):
            id = pw.CharField(primary_key=True)
            bucket = pw.CharField()
            key = pw.TextField()
            content_type = pw.CharField(default="binary/octet-stream")
            meta = pw.TextField(default="{}")
            created_at = pw.FloatField()

        class Part(Base):
            upload = pw.CharField()
            number = pw.IntegerField()
            etag = pw.CharField()
            md5 = pw.CharField()
            size = pw.BigIntegerField()
            path = pw.TextField()
            created_at = pw.FloatField()

            class Meta:
                primary_key = pw.CompositeKey("upload", "number")

        self.Bucket, self.Entry, self.Upload, self.Part = Bucket, Entry, Upload, Part
        db.create_tables([Bucket, Entry, Upload, Part])

    def close(self) -> None:
        self.db.close()

    # buckets ----------------------------------------------------------------------------------
    def buckets(self) -> list:
        return list(self.Bucket.select().order_by(self.Bucket.name))

    def bucket(self, name: str):
        b = self.Bucket.get_or_none(self.Bucket.name == name)
        if b is None:
            raise NoSuchBucket(resource=f"/{name}")
        return b

    def create_bucket(self, name: str, created_at: Optional[float] = None, exist_ok: bool = False) -> None:
        with self.db.atomic():
            if self.Bucket.get_or_none(self.Bucket.name == name) is not None:
                if exist_ok:
                    return
                raise BucketAlreadyOwnedByYou(resource=f"/{name}")
            self.Bucket.create(name=name, created_at=created_at or time.time())

    def delete_bucket(self, name: str) -> None:
        with self.db.atomic():
            self.bucket(name)
            if self.Entry.select().where(self.Entry.bucket == name).limit(1).exists():
                raise BucketNotEmpty(resource=f"/{name}")
            self.Upload.delete().where(self.Upload.bucket == name).execute()
            self.Bucket.delete().where(self.Bucket.name == name).execute()

    # objects ------------------------------------------------------------------------------------
    def get(self, bucket: str, key: str):
        e = self.Entry.get_or_none((self.Entry.bucket == bucket) & (self.Entry.key == key))
        if e is None:
            self.bucket(bucket)
            raise NoSuchKey(resource=f"/{bucket}/{key}")
        return e

    def keep_layout(self, bucket: str, key: str, object_id: str, sealed: str) -> None:
        """Keep a header read for a ranged GET (an entry rebuilt or stored by ``tensorage store``), if
        the key still names that object."""
        self.Entry.update(sealed=sealed).where((self.Entry.bucket == bucket) & (self.Entry.key == key) &
                                               (self.Entry.object_id == object_id)).execute()

    def put(self, bucket: str, key: str, object_id: Optional[str], size: int, etag: str, content_type: str,
            meta: dict, modified_at: Optional[float] = None, sealed: str = "") -> Optional[str]:
        """Name an object; returns the object id this replaced if no other key names it (to remove)."""
        with self.db.atomic():
            self.bucket(bucket)
            old = self.Entry.get_or_none((self.Entry.bucket == bucket) & (self.Entry.key == key))
            self.Entry.replace(bucket=bucket, key=key, object_id=object_id, size=size, etag=etag,
                               content_type=content_type, meta=json.dumps(meta),
                               modified_at=modified_at or time.time(), sealed=sealed).execute()
            return self._orphan(old.object_id) if old is not None and old.object_id != object_id else None

    def delete(self, bucket: str, key: str) -> Optional[str]:
        """Forget a key (absent is fine, as in S3); returns its object id if no other key names it."""
        with self.db.atomic():
            self.bucket(bucket)
            old = self.Entry.get_or_none((self.Entry.bucket == bucket) & (self.Entry.key == key))
            if old is None:
                return None
            old.delete_instance()
            return self._orphan(old.object_id)

    def _orphan(self, object_id: Optional[str]) -> Optional[str]:
        if object_id is None or self.Entry.select().where(self.Entry.object_id == object_id).exists():
            return None
        return object_id

    def known_objects(self) -> set[str]:
        return {e.object_id for e in self.Entry.select(self.Entry.object_id).where(self.Entry.object_id.is_null(False))}

    def list(self, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int) -> Page:
        """One page of keys > ``after`` under ``prefix``, keys below a delimiter rolled into common
        prefixes; a page holds at most ``max_keys`` keys and prefixes together."""
        self.bucket(bucket)
        page = Page()
        if delimiter and after.startswith(prefix) and delimiter in after[len(prefix):]:
            rest = after[len(prefix):]  # a common prefix ended the last page: skip every key under it
            after = prefix + rest[:rest.find(delimiter) + len(delimiter)] + "\U0010ffff"
        cursor = max(after, prefix) if prefix else after
        inclusive = bool(prefix) and prefix > after
        while True:
            q = self.Entry.select().where(self.Entry.bucket == bucket)
            q = q.where((self.Entry.key >= cursor) if inclusive else (self.Entry.key > cursor))
            rows = list(q.order_by(self.Entry.key).limit(MAX_SCAN))
            inclusive = False
            for e in rows:
                if not e.key.startswith(prefix):
                    return page
                cursor = e.key
                rest = e.key[len(prefix):]
                cut = rest.find(delimiter) if delimiter else -1
                if len(page.objects) + len(page.prefixes) >= max_keys:
                    page.truncated = True
                    page.next_token = encode_token(page.last)
                    return page
                if cut >= 0:
                    common = prefix + rest[:cut + len(delimiter)]
                    page.prefixes.append(common)
                    page.last = common
                    cursor = common + "\U0010ffff"  # past every key under it
                    break
                page.objects.append(e)
                page.last = e.key
            else:
                if len(rows) < MAX_SCAN:
                    return page

    # multipart ------------------------------------------------------------------------------------
    def create_upload(self, upload_id: str, bucket: str, key: str, content_type: str, meta: dict) -> None:
        with self.db.atomic():
            self.bucket(bucket)
            self.Upload.create(id=upload_id, bucket=bucket, key=key, content_type=content_type,
                               meta=json.dumps(meta), created_at=time.time())

    def upload(self, bucket: str, key: str, upload_id: str):
        u = self.Upload.get_or_none(self.Upload.id == upload_id)
        if u is None or u.bucket != bucket or u.key != key:
            raise NoSuchUpload(resource=f"/{bucket}/{key}")
        return u

    def put_part(self, upload_id: str, number: int, etag: str, md5: str, size: int, path: str) -> Optional[str]:
        """Record a part; returns the file of the part it replaced."""
        with self.db.atomic():
            old = self.Part.get_or_none((self.Part.upload == upload_id) & (self.Part.number == number))
            self.Part.replace(upload=upload_id, number=number, etag=etag, md5=md5, size=size, path=path,
                              created_at=time.time()).execute()
            return old.path if old is not None and old.path != path else None

    def parts(self, upload_id: str, after: int = 0, limit: int = 10000) -> list:
        return list(self.Part.select().where((self.Part.upload == upload_id) & (self.Part.number > after))
                    .order_by(self.Part.number).limit(limit))

    def drop_upload(self, upload_id: str) -> list[str]:
        """Forget an upload; returns its part files (to delete)."""
        with self.db.atomic():
            paths = [p.path for p in self.Part.select().where(self.Part.upload == upload_id)]
            self.Part.delete().where(self.Part.upload == upload_id).execute()
            self.Upload.delete().where(self.Upload.id == upload_id).execute()
        return paths
