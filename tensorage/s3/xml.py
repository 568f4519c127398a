"""S3's XML bodies, built and parsed with ElementTree (the 2006-03-01 namespace clients expect)."""

from __future__ import annotations

import datetime as dt
from typing import Iterable, Optional
from urllib.parse import quote
from xml.etree import ElementTree as ET

from .errors import MalformedXML, S3Error

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_XML_BODY = 2 << 20  # DeleteObjects of 1,000 keys of 1,024 bytes fits with room


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _doc(root: ET.Element) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")


def _sub(parent: ET.Element, tag: str, text: Optional[object] = None) -> ET.Element:
    e = ET.SubElement(parent, tag)
    if text is not None:
        e.text = str(text)
    return e


def _root(tag: str) -> ET.Element:
    return ET.Element(tag, xmlns=NS)


def error(exc: S3Error, request_id: str) -> bytes:
    root = ET.Element("Error")
    _sub(root, "Code", exc.code)
    _sub(root, "Message", exc.message)
    if exc.resource:
        _sub(root, "Resource", exc.resource)
    _sub(root, "RequestId", request_id)
    return _doc(root)


def _owner(parent: ET.Element, owner: str) -> None:
    o = _sub(parent, "Owner")
    _sub(o, "ID", owner)
    _sub(o, "DisplayName", owner)


def list_buckets(buckets: Iterable, owner: str) -> bytes:
    root = _root("ListAllMyBucketsResult")
    _owner(root, owner)
    bs = _sub(root, "Buckets")
    for b in buckets:
        e = _sub(bs, "Bucket")
        _sub(e, "Name", b.name)
        _sub(e, "CreationDate", iso(b.created_at))
    return _doc(root)


def location() -> bytes:
    return _doc(_root("LocationConstraint"))


def _enc(value: str, url: bool) -> str:
    return quote(value, safe="/") if url else value


def list_objects(bucket: str, page, *, v2: bool, prefix: str, delimiter: str, max_keys: int, url: bool,
                 marker: str = "", continuation: str = "", start_after: str = "", owner: str = "") -> bytes:
    root = _root("ListBucketResult")
    _sub(root, "Name", bucket)
    _sub(root, "Prefix", _enc(prefix, url))
    if v2:
        if continuation:
            _sub(root, "ContinuationToken", continuation)
        if start_after:
            _sub(root, "StartAfter", _enc(start_after, url))
        _sub(root, "KeyCount", len(page.objects) + len(page.prefixes))
    else:
        _sub(root, "Marker", _enc(marker, url))
    _sub(root, "MaxKeys", max_keys)
    if delimiter:
        _sub(root, "Delimiter", _enc(delimiter, url))
    if url:
        _sub(root, "EncodingType", "url")
    _sub(root, "IsTruncated", "true" if page.truncated else "false")
    if page.truncated:
        if v2:
            _sub(root, "NextContinuationToken", page.next_token)
        elif delimiter:
            _sub(root, "NextMarker", _enc(page.last, url))
    for o in page.objects:
        c = _sub(root, "Contents")
        _sub(c, "Key", _enc(o.key, url))
        _sub(c, "LastModified", iso(o.modified_at))
        _sub(c, "ETag", f'"{o.etag}"')
        _sub(c, "Size", o.size)
        if owner:
            _owner(c, owner)
        _sub(c, "StorageClass", "STANDARD")
    for p in page.prefixes:
        _sub(_sub(root, "CommonPrefixes"), "Prefix", _enc(p, url))
    return _doc(root)


def copy_result(etag: str, modified_at: float) -> bytes:
    root = _root("CopyObjectResult")
    _sub(root, "LastModified", iso(modified_at))
    _sub(root, "ETag", f'"{etag}"')
    return _doc(root)


def initiate_multipart(bucket: str, key: str, upload_id: str) -> bytes:
    root = _root("InitiateMultipartUploadResult")
    _sub(root, "Bucket", bucket)
    _sub(root, "Key", key)
    _sub(root, "UploadId", upload_id)
    return _doc(root)


def complete_multipart(location_: str, bucket: str, key: str, etag: str) -> bytes:
    root = _root("CompleteMultipartUploadResult")
    _sub(root, "Location", location_)
    _sub(root, "Bucket", bucket)
    _sub(root, "Key", key)
    _sub(root, "ETag", f'"{etag}"')
    return _doc(root)


def list_parts(bucket: str, key: str, upload_id: str, parts: list, max_parts: int, marker: int,
               truncated: bool, owner: str) -> bytes:
    root = _root("ListPartsResult")
    _sub(root, "Bucket", bucket)
    _sub(root, "Key", key)
    _sub(root, "UploadId", upload_id)
    _owner(root, owner)
    _sub(root, "StorageClass", "STANDARD")
    _sub(root, "PartNumberMarker", marker)
    if parts:
        _sub(root, "NextPartNumberMarker", parts[-1].number)
    _sub(root, "MaxParts", max_parts)
    _sub(root, "IsTruncated", "true" if truncated else "false")
    for p in parts:
        e = _sub(root, "Part")
        _sub(e, "PartNumber", p.number)
        _sub(e, "LastModified", iso(p.created_at))
        _sub(e, "ETag", f'"{p.etag}"')
        _sub(e, "Size", p.size)
    return _doc(root)


def delete_result(deleted: list[str], errors: list[tuple[str, S3Error]], quiet: bool) -> bytes:
    root = _root("DeleteResult")
    if not quiet:
        for key in deleted:
            _sub(_sub(root, "Deleted"), "Key", key)
    for key, exc in errors:
        e = _sub(root, "Error")
        _sub(e, "Key", key)
        _sub(e, "Code", exc.code)
        _sub(e, "Message", exc.message)
    return _doc(root)


# --- parsing ---------------------------------------------------------------------------------


def _parse(body: bytes, tag: str) -> ET.Element:
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise MalformedXML() from None
    if root.tag.rpartition("}")[2] != tag:
        raise MalformedXML(f"expected <{tag}>, got <{root.tag.rpartition('}')[2]}>")
    return root


def _children(e: ET.Element, tag: str) -> list[ET.Element]:
    return [c for c in e if c.tag.rpartition("}")[2] == tag]


def _text(e: ET.Element, tag: str) -> Optional[str]:
    found = _children(e, tag)
    return (found[0].text or "") if found else None


def parse_delete(body: bytes) -> tuple[list[str], bool]:
    """DeleteObjects: (keys, quiet)."""
    root = _parse(body, "Delete")
    keys = []
    for o in _children(root, "Object"):
        key = _text(o, "Key")
        if key is None:
            raise MalformedXML("an <Object> without a <Key>")
        keys.append(key)
    if not keys or len(keys) > 1000:
        raise MalformedXML("DeleteObjects takes 1 to 1,000 keys")
    return keys, (_text(root, "Quiet") or "").strip().lower() == "true"


def parse_complete(body: bytes) -> list[tuple[int, str]]:
    """CompleteMultipartUpload: [(part number, etag without quotes)]."""
    root = _parse(body, "CompleteMultipartUpload")
    parts = []
    for p in _children(root, "Part"):
        number, etag = _text(p, "PartNumber"), _text(p, "ETag")
        if number is None or etag is None or not number.strip().isdigit():
            raise MalformedXML("each <Part> needs a <PartNumber> and an <ETag>")
        parts.append((int(number), etag.strip().strip('"')))
    if not parts:
        raise MalformedXML("CompleteMultipartUpload names no parts")
    return parts
