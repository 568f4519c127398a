"""Bug found by the replay suite's state check: ``HEAD /v1/objects/{id}`` ran the whole retrieval
after answering the headers: the gateway fetched k shards from miners, rebuilt the segments and
counted them as served, for a request that delivers no byte. Any client could make the gateway and
the miners do a retrieval's work (and count it as serving) at the price of a HEAD. Now a HEAD answers
the object's parameters from the manifest and fetches nothing."""

from __future__ import annotations

import json


def test_a_head_of_an_object_fetches_nothing_and_counts_nothing(world, tally, clean_log):
    before = world.snapshot("validator")
    reply = world.send("validator", "HEAD", f"/v1/objects/{world.object_id}", signer="client")
    tally.add("HEAD /v1/objects/{id} (validator)", "head-retrieval", reply.status)
    world.quiet()  # a retrieval still going after the answer is over now
    assert reply.status == 200 and reply.body == b""
    assert json.loads(reply.headers["x-tensorage-object"])["id"] == world.object_id
    assert world.snapshot("validator") == before  # no shard was fetched and counted as served


def test_control_a_get_still_retrieves_and_counts(world):
    before = world.snapshot("validator")
    reply = world.send("validator", "GET", f"/v1/objects/{world.object_id}", signer="client", whole=True)
    world.quiet()
    assert reply.status == 200 and reply.body.endswith(b"END1")
    assert world.snapshot("validator") != before  # the served bytes were counted
