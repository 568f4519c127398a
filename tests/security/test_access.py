"""Every signed route tried by every identity its access level refuses: a miner without a permit
on validator-only routes, a key the chain does not know (registered nowhere, not on the gateway's
allow-list) on every route. Each is a 403 before the handler runs, and nothing changes."""

from __future__ import annotations

import pytest

from .routes import ROUTES, Route

REFUSED = {"validator": {"miner-x": "forbidden", "client": "unregistered", "stranger": "unregistered"},
           "client": {"stranger": "unregistered"}}
CASES = [(r, m) for r in ROUTES for m in r.methods if r.access in REFUSED]


def target_of(world, route: Route) -> tuple[str, bytes]:
    ids = {"id": world.shard_id if route.node == "miner" else world.object_id, "sha": world.shard_id}
    target = route.target(ids) + ("?size=16500" if route.body == "stream" else "")
    if route.path == "/v1/challenge":
        return target, world.challenge_body()[0]
    return target, b'{"chunks": [0]}' if route.reads_only else b"{}" if route.body == "json" else b""


@pytest.mark.parametrize("route, method", CASES, ids=[f"{r.node}-{m}-{r.path}" for r, m in CASES])
def test_a_caller_the_route_does_not_admit_is_refused(world, tally, clean_log, route, method):
    before = {n: world.snapshot(n) for n in world.nodes}
    target, body = target_of(world, route)
    for who, code in REFUSED[route.access].items():
        reply = world.send(route.node, method, target, body, signer=who)
        tally.add(f"{method} {route.path} ({route.node})", f"access-as-{who}", reply.status)
        assert reply.status == 403, (who, reply.body[:200])
        if method != "HEAD":
            assert reply.error == code and len(reply.message) > 20, (who, reply.body[:200])
    assert {n: world.snapshot(n) for n in world.nodes} == before
