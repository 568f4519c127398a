"""The client's key file: 32 random bytes made on first use beside the wallet, never sent.

Losing it loses every object encrypted with it, so it is created once (O_EXCL, mode 0600)
and never overwritten; a key file others can read is refused, as ssh refuses such keys.

As btcli does for coldkeys, the key can be kept under a passphrase (scrypt, then AES-256-GCM): taken
from ``TENSORAGE_KEY_PASSPHRASE`` or asked at a terminal. Version 1 files (the key in hex) still load.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .errors import KeyFileError

KEY_FILE_NAME = "tensorage-client.key"
MAGIC = b"tensorage-client-key-v1\n"
MAGIC_SEALED = b"tensorage-client-key-v2-scrypt-aes256gcm\n"
KEY_BYTES = 32
PASSPHRASE_ENV = "TENSORAGE_KEY_PASSPHRASE"
SCRYPT_N = 1 << 15  # ~0.1 s and 32 MiB per try: slow for a guesser, unnoticed once per command

Ask = Callable[[str], str]  # shows a prompt, returns what was typed (getpass at a terminal)


@dataclass(frozen=True)
class ClientKey:
    path: Path
    key: bytes
    created: bool  # made by this call: tell the user to back it up


def default_key_path(wallet_dir: Path, wallet_name: str) -> Path:
    """Beside the wallet's coldkey: ``<wallets>/<name>/tensorage-client.key``."""
    return Path(wallet_dir).expanduser() / wallet_name / KEY_FILE_NAME


def load_key(path: Path, ask: Optional[Ask] = None) -> ClientKey:
    """Read an existing key file; refuse one that is malformed or readable by others. A key kept
    under a passphrase is opened with ``TENSORAGE_KEY_PASSPHRASE``, else with ``ask`` (a terminal)."""
    path = Path(path).expanduser()
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):  # NotADirectory: a --wallet.path that is a file
        raise KeyFileError(f"no key file at {path}: pass the right --key_file (objects stored with another "
                           f"key cannot be read without it)") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read {path} ({exc.strerror or exc}): check its owner and permissions") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} is readable by other users (mode {stat.S_IMODE(st.st_mode):o}): "
                           f"run `chmod 600 {path}` and try again")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {path} ({exc.strerror or exc}): check its owner and permissions") from None
    if data.startswith(MAGIC_SEALED):
        return ClientKey(path=path, key=_unseal(path, data[len(MAGIC_SEALED):], ask), created=False)
    if not data.startswith(MAGIC) or len(data) != len(MAGIC) + 2 * KEY_BYTES + 1:
        raise KeyFileError(f"{path} is not a tensorage client key file: restore it from your backup")
    try:
        key = bytes.fromhex(data[len(MAGIC):].decode().strip())
    except ValueError:
        raise KeyFileError(f"{path} is damaged (not hex): restore it from your backup") from None
    return ClientKey(path=path, key=key, created=False)


def load_or_create_key(path: Path, ask: Optional[Ask] = None) -> ClientKey:
    """The key at ``path``, made now (0600, atomically, never overwriting) if there is none. A new
    key is kept under the passphrase in ``TENSORAGE_KEY_PASSPHRASE``, else under one ``ask`` gets
    (typed twice; empty keeps it in the clear, as before)."""
    path = Path(path).expanduser()
    if path.exists():
        return load_key(path, ask)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(f"cannot create {path.parent} ({exc.strerror or exc}): pass --key_file") from None
    key = secrets.token_bytes(KEY_BYTES)
    passphrase = _new_passphrase(ask)
    content = MAGIC_SEALED + _seal(key, passphrase) if passphrase else MAGIC + key.hex().encode() + b"\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # fails if another process made one meanwhile: never overwrite a key
    except FileExistsError:
        return load_key(path, ask)
    except OSError as exc:
        raise KeyFileError(f"cannot write the key file {path} ({exc.strerror or exc}): pass --key_file") from None
    finally:
        tmp.unlink(missing_ok=True)
    return ClientKey(path=path, key=key, created=True)


def _kdf(passphrase: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=SCRYPT_N, r=8, p=1).derive(passphrase.encode())


def _seal(key: bytes, passphrase: str) -> bytes:
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    blob = AESGCM(_kdf(passphrase, salt)).encrypt(nonce, key, MAGIC_SEALED)
    return (salt + nonce + blob).hex().encode() + b"\n"


def _unseal(path: Path, body: bytes, ask: Optional[Ask]) -> bytes:
    try:
        raw = bytes.fromhex(body.decode().strip())
    except ValueError:
        raise KeyFileError(f"{path} is damaged (not hex): restore it from your backup") from None
    if len(raw) != 16 + 12 + KEY_BYTES + 16:
        raise KeyFileError(f"{path} is damaged (wrong length): restore it from your backup")
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase is None:
        if ask is None:
            raise KeyFileError(f"{path} is kept under a passphrase: set {PASSPHRASE_ENV}, or run the command at "
                               f"a terminal to type it")
        passphrase = ask(f"passphrase of {path}: ")
    try:
        return AESGCM(_kdf(passphrase, raw[:16])).decrypt(raw[16:28], raw[28:], MAGIC_SEALED)
    except InvalidTag:
        raise KeyFileError(f"wrong passphrase for {path} (from {PASSPHRASE_ENV} or typed): try again") from None


def _new_passphrase(ask: Optional[Ask]) -> str:
    """The passphrase for a new key file: the environment's, else typed twice, else none."""
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase is not None or ask is None:
        return passphrase or ""
    first = ask("passphrase for the new client key file (empty: keep it unencrypted): ")
    if first and ask("the same passphrase again: ") != first:
        raise KeyFileError("the two passphrases differ: nothing was created; run the command again")
    return first


def terminal_ask() -> Optional[Ask]:
    """``getpass`` when stdin is a terminal (commands), else None: nobody could answer."""
    import getpass
    import sys

    return getpass.getpass if sys.stdin.isatty() else None
