"""Signed-request middleware: ``bittensor.http_auth`` plus a metagraph check.

Every route is signed except the ones marked ``public``; challenge routes also need
a validator permit. Rejections never change state: the replay store is written only
after the signature verifies, and handlers run only after every check passed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Optional

import bittensor as bt
from aiohttp import web

from .. import PROTOCOL_VERSION
from ..chain.port import Metagraph, Neuron
from .errors import RequestRejected, error_response

log = logging.getLogger(__name__)

PUBLIC, REGISTERED, VALIDATOR, OPERATOR = "public", "registered", "validator", "operator"
CLIENT = "client"  # registered, or listed in the app's ALLOWED_CLIENTS (a gateway's --gateway.allow)
ALLOWED_CLIENTS = web.AppKey("allowed_clients", frozenset)
# Told (route, error code) of every request the middleware refuses: a node counts them for its metrics.
ON_REFUSED = web.AppKey("on_refused", Callable)
# the error code, kept on the response the middleware made (aiohttp before 3.13 has no ResponseKey)
REFUSAL = web.ResponseKey("tensorage_refusal", str) if hasattr(web, "ResponseKey") else "tensorage_refusal"
CALLER = web.RequestKey("caller", bt.http_auth.Caller)
NEURON = web.RequestKey("neuron", Neuron)
BODY = web.RequestKey("body", bytes)
MAX_AGE_S = 10.0
ALLOWED_SKEW_S = 2.0
# A signed body is read before its signature is checked, so the read is bounded: one slower than the
# freshness window would be refused as stale anyway, and without a bound any stranger could hold a
# handler and a 1 MiB buffer per connection for as long as it liked by never finishing its body.
BODY_READ_S = MAX_AGE_S + ALLOWED_SKEW_S

_STATUS = {
    bt.http_auth.MalformedAuth: (401, "unauthorized", "the request is not signed correctly ({}); sign it with "
                                 "bittensor.http_auth.sign"),
    bt.http_auth.BadSignature: (401, "bad_signature", "the signature does not match the hotkey and body ({})"),
    bt.http_auth.StaleRequest: (401, "stale", "the request is too old or from the future ({}); check the clock "
                                "(NTP) and send a freshly signed request"),
    bt.http_auth.WrongReceiver: (421, "wrong_receiver", "the request was signed for another hotkey ({}); look up "
                                 "this node's hotkey in the metagraph"),
    bt.http_auth.ReplayedRequest: (409, "replayed", "this nonce was already used ({}); sign every request anew"),
}


def access(level: str, streamed: bool = False) -> Callable:
    """Mark a handler: ``public``, ``registered`` (default), ``validator``, ``client``, or ``operator``
    (only this node's own hotkey: the operator's console attached to a running node).

    ``streamed``: the body is not read before the handler runs. The request is signed over an
    empty body, its signed path binds what the stream must be (e.g. an id that is the stream's
    hash and a size), and the handler counts and checks the bytes as they arrive."""

    def mark(handler: Callable) -> Callable:
        handler.__tensorage_access__ = level  # type: ignore[attr-defined]
        handler.__tensorage_streamed__ = streamed  # type: ignore[attr-defined]
        return handler

    return mark


class PeerDirectory:
    """Who may call: the last synced metagraph, refreshed early when a stranger calls."""

    def __init__(self, load: Callable[[], Awaitable[Metagraph]], min_refresh_s: float = 5.0) -> None:
        self._load = load
        self._metagraph: Optional[Metagraph] = None
        self._refreshed = 0.0
        self._lock = asyncio.Lock()
        self.min_refresh_s = min_refresh_s

    @property
    def metagraph(self) -> Optional[Metagraph]:
        return self._metagraph

    def update(self, metagraph: Metagraph) -> None:
        self._metagraph = metagraph
        self._refreshed = time.monotonic()

    async def refresh(self, if_older_than: Optional[float] = None) -> Metagraph:
        """Reload the metagraph; with ``if_older_than``, only when the copy in hand is older than
        that (checked again once the lock is held: callers that queued behind one reload reuse it)."""
        async with self._lock:
            fresh = self._metagraph is not None and if_older_than is not None and \
                time.monotonic() - self._refreshed <= if_older_than
            if not fresh:
                self.update(await self._load())
            return self._metagraph  # type: ignore[return-value]

    async def lookup(self, hotkey: str) -> Optional[Neuron]:
        """A caller not in the metagraph may have just registered: reload, at most once every
        ``min_refresh_s`` however many strangers call at once."""
        neuron = self._metagraph.by_hotkey(hotkey) if self._metagraph else None
        if neuron is None and time.monotonic() - self._refreshed > self.min_refresh_s:
            try:
                neuron = (await self.refresh(if_older_than=self.min_refresh_s)).by_hotkey(hotkey)
            except Exception as exc:  # the chain is down: judge on what we have
                log.warning("metagraph refresh failed: %s", exc)
        return neuron


async def _read_body(request: web.Request) -> bytes:
    try:
        async with asyncio.timeout(BODY_READ_S):
            return await request.read()
    except TimeoutError:
        raise RequestRejected(408, "too_slow", f"the body did not arrive within {BODY_READ_S:g}s, after which "
                              f"its signature is stale anyway: sign the request and send it at once") from None


def auth_middleware(self_hotkey: str, directory: PeerDirectory, netuid: int,
                    nonce_store: Optional[bt.http_auth.NonceStore] = None) -> Callable:
    store = nonce_store or bt.http_auth.InMemoryNonceStore(retention=60.0)

    @web.middleware
    async def middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
        response = await _handled(request, handler)
        code = response.get(REFUSAL) if response.status >= 400 else None
        if code is not None and ON_REFUSED in request.app:
            resource = request.match_info.route.resource
            try:
                request.app[ON_REFUSED](resource.canonical if resource is not None else "unknown", code)
            except Exception:  # counting must never change the answer
                log.exception("counting a refused request failed")
        return response

    def _refused(status: int, code: str, message: str) -> web.Response:
        response = error_response(status, code, message)
        response[REFUSAL] = code
        return response

    async def _handled(request: web.Request, handler: Callable) -> web.StreamResponse:
        try:
            if request.match_info.http_exception is not None:
                raise request.match_info.http_exception  # no such route: 404/405 before any signature work
            target = request.match_info.handler
            level = getattr(target, "__tensorage_access__", REGISTERED)
            if level != PUBLIC:
                await _authenticate(request, level, getattr(target, "__tensorage_streamed__", False))
            return await handler(request)
        except RequestRejected as exc:
            return _refused(exc.status, exc.code, exc.message)
        except web.HTTPRequestEntityTooLarge as exc:
            return _refused(413, "too_large", f"the body is larger than this endpoint accepts "
                                  f"({exc.text or 'limit exceeded'}); send less")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            hint = {404: "unknown endpoint: see GET /v1/health for this node's role and protocol",
                    405: "method not allowed on this endpoint"}.get(exc.status, exc.reason)
            return _refused(exc.status, exc.reason.lower().replace(" ", "_"), hint)
        except ConnectionError as exc:  # the peer hung up mid-request: its doing, not a failure of this node's
            log.info("%s %s: the client went away before the request was done (%s)", request.method,
                     request.path[:200], exc)
            return _refused(400, "incomplete", "the connection closed before the request was complete: "
                                  "send it again")
        except Exception:
            log.exception("handler failed on %s %s", request.method, request.path)
            return _refused(500, "internal", "the node failed to handle this request; its operator can "
                                  "see why in its log")

    async def _authenticate(request: web.Request, level: str, streamed: bool = False) -> None:
        body = b"" if streamed else await _read_body(request)
        try:
            caller = bt.http_auth.verify(
                request.headers, body, method=request.method, path=request.raw_path,
                self_hotkey_ss58=self_hotkey, max_age=MAX_AGE_S, allowed_skew=ALLOWED_SKEW_S, nonce_store=store,
            )
        except bt.http_auth.AuthError as exc:
            status, code, text = next((v for k, v in _STATUS.items() if isinstance(exc, k)),
                                      (401, "unauthorized", "authentication failed ({})"))
            raise RequestRejected(status, code, text.format(exc)) from None
        version = request.headers.get("X-Tensorage-Protocol")
        if version is not None and version != str(PROTOCOL_VERSION):
            raise RequestRejected(426, "protocol", f"caller speaks tensorage protocol {version}, this node "
                                  f"{PROTOCOL_VERSION}: upgrade the older side (pip install -U tensorage)")
        request[CALLER] = caller
        request[BODY] = body
        if level == OPERATOR:
            if caller.hotkey_ss58 != self_hotkey:
                raise RequestRejected(403, "forbidden", f"only this node's own hotkey may use {request.path}: "
                                      f"attach with the node's wallet (--wallet.name/--wallet.hotkey)")
            return
        neuron = await directory.lookup(caller.hotkey_ss58)
        if neuron is None and level == CLIENT and caller.hotkey_ss58 in request.app.get(ALLOWED_CLIENTS, ()):
            return
        if neuron is None:
            allow = " or ask this validator's operator to allow it (--gateway.allow)" if level == CLIENT else ""
            raise RequestRejected(403, "unregistered", f"hotkey {caller.hotkey_ss58} is not registered on netuid "
                                  f"{netuid}: register it{allow} before calling this node")
        if level == VALIDATOR and not neuron.validator_permit:
            raise RequestRejected(403, "forbidden", f"uid {neuron.uid} has no validator permit: only validators "
                                  f"may call {request.path}")
        request[NEURON] = neuron

    return middleware
