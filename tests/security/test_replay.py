"""Replays and cross-receiver attempts on every signed route: a signed request sent again byte for
byte, the same signature on another path, body or method, and a request signed for one node sent
to another. The first copy gets through authentication; every other one is refused before any
handler runs, and nothing changes."""

from __future__ import annotations

import time

import pytest

from .routes import ROUTES, Route

SIGNED = [(r, m) for r in ROUTES if r.access != "public" for m in r.methods]
OTHER = {"miner": "validator", "validator": "miner"}
UNKNOWN_SHARD, UNKNOWN_OBJECT = "cd" * 32, "ef" * 16


def signer_of(route: Route) -> str:
    return route.node if route.signer == "own" else route.signer


def first_request(world, route: Route, method: str) -> tuple[str, bytes]:
    """A request the route's legitimate caller could send, that changes nothing: reads of the real
    ids, an honest window challenge, and refused bodies or unknown ids where a success would write."""
    if route.path == "/v1/challenge":
        return route.path, world.challenge_body()[0]
    ids = {"id": world.shard_id if route.node == "miner" else world.object_id, "sha": UNKNOWN_SHARD,
           "job": "sync", "action": "pause"}
    if route.mutates(method):
        ids["id"] = UNKNOWN_SHARD if route.node == "miner" else UNKNOWN_OBJECT
    target = route.target(ids)
    if route.body == "stream":
        target += "?size=16"
    body = b'{"chunks": [0]}' if route.reads_only else b"{}" if route.body == "json" else b""
    return target, body


@pytest.mark.parametrize("route, method", SIGNED, ids=[f"{r.node}-{m}-{r.path}" for r, m in SIGNED])
def test_a_signed_request_works_once_and_only_where_it_was_signed_for(world, tally, clean_log, route, method):
    target, body = first_request(world, route, method)
    who, node = signer_of(route), route.node
    me, other = world.hotkey(node), world.hotkey(OTHER[node])
    endpoint = f"{method} {route.path} ({node})"

    def attempt(kind: str, headers: dict, to: str = node, t: str = target, b: bytes = body, m: str = method):
        whole = route.path == "/v1/objects/{id}" and m == "GET"  # a retrieval read to its end (events never end)
        reply = world.send(to, m, t, b, headers, whole=whole)
        tally.add(endpoint, kind, reply.status)
        return reply

    headers = world.signed(who, method, target, body, me)
    first = attempt("replay-original", headers)
    assert first.status not in (401, 409, 421), first.body[:200]  # through authentication
    if route.path == "/v1/challenge":
        assert first.status == 200  # an honest window answer, so the replay below is of a real one
    world.quiet()
    before = {n: world.snapshot(n) for n in world.nodes}  # after it: a retrieval counts the bytes served

    refused = {
        "replay": attempt("replay", headers),
        "replay-other-path": attempt("replay", headers, t=target + ("&" if "?" in target else "?") + "x=1"),
        "replay-other-body": attempt("replay", headers, b=body + b" "),
        "replay-other-method": attempt("replay", headers, m="DELETE" if method != "DELETE" else "GET"),
    }
    assert refused["replay"].status == 409
    assert refused["replay-other-path"].status == 401
    # a streamed body is not in the signature (its signed path binds it: net/objects.py): that copy is
    # caught as the replay it is
    assert refused["replay-other-body"].status == (409 if route.body == "stream" else 401)
    if method != "HEAD":  # HEAD answers carry no body
        assert refused["replay"].error == "replayed" and refused["replay-other-path"].error == "bad_signature"
    assert refused["replay-other-method"].status in (401, 404, 405)

    # signed for this node, sent to the other one; signed for a stranger; signed for no one
    cross = world.signed(who, method, target, body, me)
    to_other = attempt("cross-receiver", cross, to=OTHER[node])
    assert to_other.status in (404, 405, 421), to_other.body[:200]
    if to_other.status == 421 and method != "HEAD":
        assert to_other.error == "wrong_receiver"
    for receiver in (world.hotkey("stranger"), other):
        reply = attempt("cross-receiver", world.signed(who, method, target, body, receiver))
        assert reply.status == 421 and (method == "HEAD" or reply.error == "wrong_receiver"), reply.body[:200]
    unbound = {k: v for k, v in world.signed(who, method, target, body, me).items() if k != "X-Bittensor-Receiver"}
    assert attempt("cross-receiver", unbound).status == 421

    # stale and from the future, correctly signed
    for skew_s in (-60, +30):
        stale = world.signed(who, method, target, body, me, nonce_ns=time.time_ns() + int(skew_s * 1e9))
        reply = attempt("stale", stale)
        assert reply.status == 401 and (method == "HEAD" or reply.error == "stale"), reply.body[:200]

    assert {n: world.snapshot(n) for n in world.nodes} == before
