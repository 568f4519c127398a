"""Signed replies: a peer's answer that it cannot later deny, bound to the request it answers.

Requests are signed with ``bittensor.http_auth``; replies usually are not, which is fine for
anything the caller only uses for itself. A gateway, though, must never count a shard lost on a
reply that a network hop or a proxy could have made up: a re-check's reply is signed by the
miner's hotkey over the reply body, the request's path and the request's nonce (so it answers
that request and no other). ``bittensor.http_auth`` does the signing, with ``REPLY`` as the
method so a reply can never pass for a request.
"""

from __future__ import annotations

from typing import Mapping

import bittensor as bt

REPLY_METHOD = "REPLY"
MAX_AGE_S = 30.0
# A reply answers one request (its nonce is in what was signed), so replaying one elsewhere fails
# its signature; http_auth still wants a store that outlives its freshness window.
_SEEN = bt.http_auth.InMemoryNonceStore(retention=2 * MAX_AGE_S)


def _target(path: str, request_nonce: str) -> str:
    return f"{path}#{request_nonce}"


def sign_reply(signer, path: str, request_nonce: str, body: bytes, receiver: str) -> dict[str, str]:
    return bt.http_auth.sign(signer, method=REPLY_METHOD, path=_target(path, request_nonce), body=body,
                             receiver_ss58=receiver)


def reply_signed_by(headers: Mapping[str, str], body: bytes, path: str, request_nonce: str, signer_hotkey: str,
                    self_hotkey: str) -> bool:
    """Did ``signer_hotkey`` sign this reply to our request (nonce ``request_nonce``) on ``path``?"""
    try:
        caller = bt.http_auth.verify(headers, body, method=REPLY_METHOD, path=_target(path, request_nonce),
                                     self_hotkey_ss58=self_hotkey, max_age=MAX_AGE_S, allowed_skew=MAX_AGE_S,
                                     nonce_store=_SEEN)
    except bt.http_auth.AuthError:
        return False
    return caller.hotkey_ss58 == signer_hotkey
