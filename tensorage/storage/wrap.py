"""The gateway's shard wrap (docs/design.md#client-data): AES-256-CTR with a key only this validator can derive.

A miner can be its own client and so know a shard's unwrapped bytes; if it could regenerate
what it stores it could drop it and rebuild it when audited. Each shard is therefore XORed
with a keystream from ``HKDF-SHA256(validator secret, info = "tensorage/wrap/v1" | wrap id)``
(a random 16-byte wrap id per placed shard, so no key is used twice). Audits are over the
wrapped bytes, which nobody but the miner storing them has.

The secret is 32 random bytes in ``<db_root>/index/gateway.secret`` (0600), made on first
start: losing it makes every shard this validator placed unreadable by it.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ConfigError

SECRET_FILE = "gateway.secret"
SECRET_BYTES = 32
WRAP_ID_BYTES = 16
_INFO = b"tensorage/wrap/v1"


def load_or_create_secret(path: Path) -> bytes:
    path = Path(path)
    if path.exists():
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{path} is readable by other users: run `chmod 600 {path}` (anyone with it can "
                              f"regenerate the wrap of every shard this validator placed)")
        data = path.read_bytes()
        if len(data) != SECRET_BYTES:
            raise ConfigError(f"{path} is damaged ({len(data)} bytes, not {SECRET_BYTES}): restore it from a "
                              f"backup; without it the shards this validator placed cannot be unwrapped")
        return data
    secret = secrets.token_bytes(SECRET_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # never overwrite an existing secret
    except FileExistsError:
        return load_or_create_secret(path)
    finally:
        tmp.unlink(missing_ok=True)
    return secret


def new_wrap_id() -> str:
    return secrets.token_hex(WRAP_ID_BYTES)


def wrap_key(secret: bytes, wrap_id: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO + bytes.fromhex(wrap_id)).derive(secret)


class Keystream:
    """XOR with AES-256-CTR from offset 0; the same call wraps and unwraps, sequentially.

    It writes into a buffer of its own (``update_into``: 5.8 GB/s here, against 1.4 for ``update``,
    which allocates a new object each call) and returns a view of it, valid until the next call:
    the caller hashes and writes it first."""

    def __init__(self, key: bytes) -> None:
        self._ctx = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        self._buf = bytearray()

    def __call__(self, data: bytes | memoryview) -> memoryview:
        n = len(data)
        if len(self._buf) < n + 15:
            self._buf = bytearray(n + 15)
        written = self._ctx.update_into(data, self._buf)
        return memoryview(self._buf)[:written]


def keystream(secret: bytes, wrap_id: str) -> Keystream:
    return Keystream(wrap_key(secret, wrap_id))
