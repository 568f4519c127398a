"""Bug found by the traversal suite: ids were checked with ``re.match("^[0-9a-f]{64}$")``, and "$"
also matches before a trailing newline. ``DELETE /v1/shards/<real id>%0a`` passed the check and
answered 200 "deleted"; every id route took such an id past its validation. Now an id is the
exact hex and nothing else, and the real shard and object are untouched."""

from __future__ import annotations

import pytest

CASES = [("miner", "GET", "/v1/shards/{shard}%0a", "validator", "/v1/shards/{id}"),
         ("miner", "DELETE", "/v1/shards/{shard}%0a", "validator", "/v1/shards/{id}"),
         ("miner", "POST", "/v1/shards/{shard}%0a/check", "validator", "/v1/shards/{id}/check"),
         ("miner", "GET", "/v1/shards/legacy/{shard}%0a", "validator", "/v1/shards/legacy/{sha}"),
         ("validator", "GET", "/v1/objects/{object}%0a", "client", "/v1/objects/{id}"),
         ("validator", "DELETE", "/v1/objects/{object}%0a", "client", "/v1/objects/{id}")]


@pytest.mark.parametrize("node, method, target, who, route", CASES, ids=[f"{c[1]}-{c[2]}" for c in CASES])
def test_an_id_with_a_trailing_newline_is_not_an_id(world, tally, clean_log, node, method, target, who, route):
    before = {n: world.snapshot(n) for n in world.nodes}
    path = target.format(shard=world.shard_id, object=world.object_id)
    body = b"{}" if method == "POST" else b""
    reply = world.send(node, method, path, body, signer=who)
    tally.add(f"{method} {route} ({node})", "newline-id", reply.status)
    assert reply.status in (400, 404), reply.body[:200]
    assert reply.error in ("bad_shard_id", "bad_object_id", "unknown_shard"), reply.body[:200]
    assert {n: world.snapshot(n) for n in world.nodes} == before
    real = f"/v1/shards/{world.shard_id}" if node == "miner" else f"/v1/objects/{world.object_id}"
    assert world.send(node, "GET", real, signer=who).status == 200  # still held and served
