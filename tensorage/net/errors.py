"""Every rejection is a JSON error body with a message that says what to do."""

from __future__ import annotations

from typing import NoReturn, Optional, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from .messages import ErrorBody

M = TypeVar("M", bound=BaseModel)


def error_response(status: int, code: str, message: str, detail: Optional[str] = None) -> web.Response:
    return web.json_response(ErrorBody(error=code, message=message, detail=detail).model_dump(exclude_none=True),
                             status=status)


class RequestRejected(Exception):
    """Raised by handlers; the middleware turns it into a JSON error response."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def reject(status: int, code: str, message: str) -> NoReturn:
    raise RequestRejected(status, code, message)


def parse(model: type[M], body: bytes) -> M:
    """Parse and validate a JSON body, or reject with what is wrong in it."""
    if not body:
        reject(400, "bad_request", f"empty body: send a JSON {model.__name__}")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        reject(400, "bad_request", f"invalid {model.__name__}: {where}: {first['msg']}")
