"""What can go wrong for a client, each with what to do about it."""

from __future__ import annotations

from typing import Optional

from ..errors import TensorageError


class ClientError(TensorageError):
    """Base class of client-side errors."""


class KeyFileError(ClientError):
    """The key file is missing, unreadable, malformed or readable by others."""


class WrongKey(ClientError):
    """The object was encrypted with another key file."""


class IntegrityError(ClientError):
    """Bytes came back that do not decrypt or do not match the content hash."""


class OutputError(ClientError):
    """The output path cannot be written (exists, or its directory is unusable)."""


class GatewayError(ClientError):
    """The gateway refused or failed a request; ``status`` and ``code`` say how."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status, self.code = status, code


class NoGateway(GatewayError):
    """No validator serving a gateway could be found or reached."""


def from_reply(what: str, status: int, code: Optional[str], message: str) -> GatewayError:
    return GatewayError(f"{what}: the gateway answered {status} {code or ''}: {message}".replace("  ", " "),
                        status=status, code=code or "")
