"""Path traversal in every id of every route, and hostile strings through every query parameter,
signed by a peer the route admits (so the handler, not only the signature check, sees them).
Nothing outside the node's directories is read or written: no answer carries the canary file, a
database or a plot, every file outside the nodes is unchanged, and neither node's state moves."""

from __future__ import annotations

import pytest

from .hostile import STRINGS, TRAVERSAL, assert_refused_clearly, query_safe
from .routes import ROUTES, Route

ID_ROUTES = [r for r in ROUTES if r.params]
QUERY_ROUTES = [r for r in ROUTES if r.access != "public"]
LEAKS = [b"CANARY-outside-every-node", b"SQLite format 3", b"root:x:0:0", b"[wallet"]


def near_real(world) -> list[str]:
    """Spellings around the ids the nodes really hold: what a traversal built on a known id looks like."""
    out = []
    for real in (world.shard_id, world.object_id):
        out += [real + "%00", real + "%2f..", real + "/..", "..%2f" + real, real.upper(), real + ".tree",
                real + "%2e" + "tree", real[:-1], real + "0", "%20" + real, real + "%0a", "./" + real]
    return out


def signer_of(route: Route) -> str:
    return route.node if route.signer == "own" else route.signer


def request_for(route: Route, method: str, target: str) -> tuple[str, bytes, dict]:
    """A request that gets as far into the handler as it can: sizes and bodies where the route reads them."""
    headers, body = {}, b""
    if route.body == "stream":
        target += "?size=16"
        body = b"\x00" * 16
        headers["X-Tensorage-Certificate"] = "00" * 120
    elif route.body == "json":
        body = b'{"chunks": [0], "leaves": true}' if route.path.endswith("/check") else b"{}"
    return target, body, headers


@pytest.mark.parametrize("route", ID_ROUTES, ids=[f"{r.node}-{r.path}" for r in ID_ROUTES])
def test_path_traversal_in_every_id_reads_and_writes_nothing(world, tally, clean_log, route):
    before = {n: world.snapshot(n) for n in world.nodes}
    outside = world.outside_files()
    tried = 0
    for method in route.methods:
        for name in route.params:
            for value in TRAVERSAL + near_real(world):
                values = {p: ("pause" if p == "action" else "sync") for p in route.params} | {name: value}
                target, body, headers = request_for(route, method, route.target(values))
                reply = world.send(route.node, method, target, body, headers, signer=signer_of(route))
                tally.add(f"{method} {route.path} ({route.node})", "traversal", reply.status)
                tried += 1
                context = f"{method} {target[:120]!r}"
                assert_refused_clearly(reply, method, context)
                assert reply.status >= 400, context
                assert not any(leak in reply.body for leak in LEAKS), context
    assert tried >= len(TRAVERSAL)
    assert world.outside_files() == outside
    assert {n: world.snapshot(n) for n in world.nodes} == before


@pytest.mark.parametrize("route", QUERY_ROUTES, ids=[f"{r.node}-{r.path}" for r in QUERY_ROUTES])
def test_hostile_strings_through_every_query_parameter(world, tally, clean_log, route):
    before = {n: world.snapshot(n) for n in world.nodes}
    values = {p: ("pause" if p == "action" else "sync" if p == "job" else "0" * 64) for p in route.params}
    base = route.target(values)
    tried = 0
    for method in route.methods:
        for param in route.query + ("x",):
            for text in STRINGS:
                target = f"{base}?{query_safe(param)}={query_safe(text)}"
                if route.body == "stream" and param != "size":
                    target += "&size=16"
                body = b"{}" if route.body == "json" else b""
                reply = world.send(route.node, method, target, body, signer=signer_of(route))
                tally.add(f"{method} {route.path} ({route.node})", "query", reply.status)
                tried += 1
                context = f"{method} {target[:120]!r}"
                assert_refused_clearly(reply, method, context)
                if route.mutates(method) and not route.path.startswith("/v1/jobs"):
                    assert reply.status >= 400, context
    assert tried >= len(STRINGS)
    assert {n: world.snapshot(n) for n in world.nodes} == before


@pytest.mark.parametrize("node, target, who", [
    ("miner", "/v1/shards/{shard}", "validator"),
    ("validator", "/v1/objects/{object}", "client"),
])
def test_control_the_real_ids_are_served_to_their_owner_only(world, node, target, who):
    """The refusals above are about the spelling: the real id, asked by its owner, is served; asked
    by another registered peer it is not."""
    path = target.format(shard=world.shard_id, object=world.object_id)
    assert world.send(node, "GET", path, signer=who).status == 200
    other = world.send(node, "GET", path, signer="miner-x")  # a miner: no permit; not the object's owner
    assert (other.status, other.error) in ((403, "forbidden"), (404, "unknown_object"))
