"""The client's key file: 32 random bytes made on first use beside the wallet, never sent.

Losing it loses every object encrypted with it, so it is created once (O_EXCL, mode 0600)
and never overwritten; a key file others can read is refused, as ssh refuses such keys.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import KeyFileError

KEY_FILE_NAME = "tensorage-client.key"
MAGIC = b"tensorage-client-key-v1\n"
KEY_BYTES = 32


@dataclass(frozen=True)
class ClientKey:
    path: Path
    key: bytes
    created: bool  # made by this call: tell the user to back it up


def default_key_path(wallet_dir: Path, wallet_name: str) -> Path:
    """Beside the wallet's coldkey: ``<wallets>/<name>/tensorage-client.key``."""
    return Path(wallet_dir).expanduser() / wallet_name / KEY_FILE_NAME


def load_key(path: Path) -> ClientKey:
    """Read an existing key file; refuse one that is malformed or readable by others."""
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
    if not data.startswith(MAGIC) or len(data) != len(MAGIC) + 2 * KEY_BYTES + 1:
        raise KeyFileError(f"{path} is not a tensorage client key file: restore it from your backup")
    try:
        key = bytes.fromhex(data[len(MAGIC):].decode().strip())
    except ValueError:
        raise KeyFileError(f"{path} is damaged (not hex): restore it from your backup") from None
    return ClientKey(path=path, key=key, created=False)


def load_or_create_key(path: Path) -> ClientKey:
    """The key at ``path``, made now (0600, atomically, never overwriting) if there is none."""
    path = Path(path).expanduser()
    if path.exists():
        return load_key(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(f"cannot create {path.parent} ({exc.strerror or exc}): pass --key_file") from None
    key = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + key.hex().encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # fails if another process made one meanwhile: never overwrite a key
    except FileExistsError:
        return load_key(path)
    except OSError as exc:
        raise KeyFileError(f"cannot write the key file {path} ({exc.strerror or exc}): pass --key_file") from None
    finally:
        tmp.unlink(missing_ok=True)
    return ClientKey(path=path, key=key, created=True)
