"""Who may use the local S3 server: one access key id / secret pair, made on first run (0600,
beside the client key file) and printed once; every request checked with AWS Signature V4.

The signature is not re-implemented here: the request is rebuilt as a botocore ``AWSRequest`` with
exactly the headers the client signed, and botocore's own S3 signer computes what the signature
must be, compared in constant time. Both forms: the ``Authorization`` header and presigned URLs.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional
from urllib.parse import parse_qsl

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from .errors import (AccessDenied, AuthorizationHeaderMalformed, ExpiredPresignedUrl, InvalidAccessKeyId,
                     RequestTimeTooSkewed, SignatureDoesNotMatch)

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 15 * 60      # S3's own bound on a signed request's clock
MAX_PRESIGN_S = 7 * 86400  # S3's longest presigned URL
UNSIGNED = "UNSIGNED-PAYLOAD"
_AUTH = re.compile(r"^AWS4-HMAC-SHA256\s+Credential=([^,\s]+)\s*,\s*SignedHeaders=([^,\s]+)\s*,\s*"
                   r"Signature=([0-9a-f]{64})\s*$")
CREDENTIALS_FILE = "tensorage-s3.json"


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    path: Path
    created: bool  # made by this call: print them once


def load_or_create(path: Path) -> Credentials:
    """The pair at ``path``; made now (atomically, 0600, never overwritten) when there is none."""
    path = Path(path).expanduser()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"access_key_id": "TSG" + secrets.token_hex(8).upper(), "secret_access_key": secrets.token_urlsafe(30)}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            created = True
        except FileExistsError:
            created = False
        finally:
            tmp.unlink(missing_ok=True)
    else:
        created = False
    data = json.loads(path.read_text())
    return Credentials(data["access_key_id"], data["secret_access_key"], path, created)


@dataclass(frozen=True)
class Verified:
    """What a good signature vouches for: the body's sha256 when the client signed it."""
    payload_sha256: Optional[str]  # hex, or None (UNSIGNED-PAYLOAD, presigned URL)


@dataclass(frozen=True)
class Incoming:
    """The parts of an HTTP request a signature covers (aiohttp-independent, for tests)."""
    method: str
    raw_path: str           # path as sent, with its query
    headers: Mapping[str, str]


def _parse_time(text: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise AccessDenied("X-Amz-Date is not a date like 20250101T000000Z") from None


class Verifier:
    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    def verify(self, req: Incoming, now: Optional[dt.datetime] = None) -> Verified:
        now = now or dt.datetime.now(dt.timezone.utc)
        path, _, query = req.raw_path.partition("?")
        params = parse_qsl(query, keep_blank_values=True)
        if any(k == "X-Amz-Signature" for k, _ in params):
            return self._presigned(req, path, params, now)
        header = req.headers.get("Authorization", "")
        if header.startswith("AWS ") or any(k == "AWSAccessKeyId" for k, _ in params):
            raise AccessDenied("only AWS Signature Version 4 is accepted: configure the client for it (boto3: "
                               "Config(signature_version='s3v4'))")
        if not header:
            raise AccessDenied("the request is not signed: give the client the access key id and secret "
                               "`tensorage s3` printed")
        found = _AUTH.match(header)
        if not found:
            raise AuthorizationHeaderMalformed("only AWS Signature Version 4 (AWS4-HMAC-SHA256) is accepted")
        credential, signed, signature = found.groups()
        amz_date = req.headers.get("X-Amz-Date") or ""
        when = _parse_time(amz_date)
        if abs((now - when).total_seconds()) > MAX_SKEW_S:
            raise RequestTimeTooSkewed()
        payload = req.headers.get("X-Amz-Content-SHA256")
        if payload is None:
            raise AccessDenied("x-amz-content-sha256 is missing: S3 requires it with Signature V4")
        region = self._scope(credential, amz_date)
        headers = self._signed_headers(req, signed)
        expected = self._sign(S3SigV4Auth, req.method, path, params, headers, amz_date, region)
        if not hmac.compare_digest(expected, signature):
            raise SignatureDoesNotMatch()
        is_hash = re.fullmatch(r"[0-9a-f]{64}", payload) is not None
        return Verified(payload_sha256=payload if is_hash else None)

    def _presigned(self, req: Incoming, path: str, params: list, now: dt.datetime) -> Verified:
        q = dict(params)
        if q.get("X-Amz-Algorithm") != ALGORITHM:
            raise AuthorizationHeaderMalformed("only AWS4-HMAC-SHA256 presigned URLs are accepted")
        amz_date = q.get("X-Amz-Date", "")
        when = _parse_time(amz_date)
        try:
            expires = int(q.get("X-Amz-Expires", ""))
        except ValueError:
            raise AuthorizationHeaderMalformed("X-Amz-Expires is not a number of seconds") from None
        if not 1 <= expires <= MAX_PRESIGN_S:
            raise AuthorizationHeaderMalformed(f"X-Amz-Expires must be 1..{MAX_PRESIGN_S}")
        if now > when + dt.timedelta(seconds=expires) or when - now > dt.timedelta(seconds=MAX_SKEW_S):
            raise ExpiredPresignedUrl()
        region = self._scope(q.get("X-Amz-Credential", ""), amz_date)
        headers = self._signed_headers(req, q.get("X-Amz-SignedHeaders", "host"))
        rest = [(k, v) for k, v in params if k != "X-Amz-Signature"]
        expected = self._sign(S3SigV4QueryAuth, req.method, path, rest, headers, amz_date, region)
        if not hmac.compare_digest(expected, q.get("X-Amz-Signature", "")):
            raise SignatureDoesNotMatch()
        return Verified(payload_sha256=None)

    def _scope(self, credential: str, amz_date: str) -> str:
        """The region the client signed for (any is accepted, as a local server has none) after the
        access key and date are checked."""
        parts = credential.split("/")
        if len(parts) != 5 or parts[3] != "s3" or parts[4] != "aws4_request":
            raise AuthorizationHeaderMalformed("the credential scope must be KEY/DATE/REGION/s3/aws4_request")
        if not hmac.compare_digest(parts[0], self.credentials.access_key):
            raise InvalidAccessKeyId()
        if parts[1] != amz_date[:8]:
            raise AuthorizationHeaderMalformed("the credential's date is not the request's date")
        return parts[2]

    @staticmethod
    def _signed_headers(req: Incoming, signed: str) -> dict[str, str]:
        names = signed.split(";")
        if "host" not in names:
            raise AuthorizationHeaderMalformed("the Host header must be signed")
        lower = {}
        for name, value in req.headers.items():
            lower.setdefault(name.lower(), []).append(value)
        out = {}
        for name in names:
            if name not in lower:
                raise SignatureDoesNotMatch(f"the signed header {name} is missing")
            out[name] = ",".join(lower[name])
        return out

    def _sign(self, signer_cls, method: str, path: str, params: list, headers: dict, amz_date: str,
              region: str) -> str:
        """What the signature must be: botocore's signer on the rebuilt request."""
        signer = signer_cls(BotoCredentials(self.credentials.access_key, self.credentials.secret_key), "s3", region,
                            **({"expires": 1} if signer_cls is S3SigV4QueryAuth else {}))
        request = AWSRequest(method=method, url=f"http://{headers['host']}{path}", headers=headers,
                             params=params)
        request.context["timestamp"] = amz_date
        canonical = signer.canonical_request(request)
        return signer.signature(signer.string_to_sign(request, canonical), request)
