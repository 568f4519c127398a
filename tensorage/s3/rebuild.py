"""The mapping rebuilt from the gateway's listing: every object this key file sealed carries its own
name, and an object stored through S3 carries its bucket, key, ETag, type and user metadata, sealed
(only this key file opens them). Objects the mapping does not know are added; none is removed (a
listing says what the gateway holds, not what the user deleted here).

Objects stored with `tensorage store` appear in the bucket ``tensorage`` under their file names."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .mapping import Mapping
from .remote import Remote

log = logging.getLogger(__name__)
STORED_BUCKET = "tensorage"


@dataclass(frozen=True)
class Rebuilt:
    added: int
    sealed_elsewhere: int  # objects of this wallet sealed under another key file: not readable here


async def rebuild(mapping: Mapping, remote: Remote) -> Rebuilt:
    objects, _, _ = await remote.call(lambda c: c.list())
    known = mapping.known_objects()
    added = elsewhere = 0
    for o in sorted(objects, key=lambda o: o.created_at):
        if o.id in known or o.state not in ("stored", "damaged"):
            continue
        if o.meta is None:
            elsewhere += 1
            continue
        s3 = o.meta.get("s3") if isinstance(o.meta.get("s3"), dict) else None
        size = o.plain_size if isinstance(o.plain_size, int) else 0
        if s3 is not None:
            bucket, key = str(s3.get("b", STORED_BUCKET)), str(s3.get("k", o.name or o.id))
            # a body stored while it arrived has no ETag sealed (unknown until its end): its id stands in
            etag, ctype, meta = str(s3.get("e", o.id)), str(s3.get("t", "binary/octet-stream")), dict(s3.get("m", {}))
        else:
            bucket, key, etag, ctype, meta = STORED_BUCKET, str(o.name or o.id), o.id, "binary/octet-stream", {}
        mapping.create_bucket(bucket, exist_ok=True)
        if _exists(mapping, bucket, key):
            key = f"{key}.{o.id[:8]}"  # two objects under one name: both stay reachable
        mapping.put(bucket, key, o.id, size, etag, ctype, meta, modified_at=o.created_at)
        added += 1
    return Rebuilt(added=added, sealed_elsewhere=elsewhere)


def _exists(mapping: Mapping, bucket: str, key: str) -> bool:
    E = mapping.Entry
    return E.select().where((E.bucket == bucket) & (E.key == key)).exists()
