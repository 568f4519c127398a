"""Operator endpoints (the console attached to a running node) tried with every hotkey but the node's
own: the other node, another registered miner, a client the gateway admits, and a key nobody knows.
Each is refused (403) before anything runs, with real job names and a real share request."""

from __future__ import annotations

import json

import pytest

from .routes import ROUTES

OTHERS = {"miner": ["validator", "miner-x", "client", "stranger"],
          "validator": ["miner", "miner-x", "client", "stranger"]}


def attempts(route) -> list[tuple[str, str, bytes]]:
    """(method, target, body) an operator would really send on this route."""
    if route.path == "/v1/jobs/{job}/{action}":
        return [("POST", f"/v1/jobs/{job}/{action}", b"") for job in ("sync", "proof_round", "reallocate", "weights")
                for action in ("run", "pause", "resume")]
    if route.path == "/v1/share":
        return [("POST", "/v1/share", json.dumps({"size_in_gb": s, "remove_plots": True}).encode())
                for s in (0.001, 0.05, 1000.0)]
    if route.path == "/v1/events":
        return [(m, t, b"") for m in route.methods for t in ("/v1/events", "/v1/events?since=0")]
    return [(m, route.path, b"") for m in route.methods]


def jobs(world, node: str) -> dict:
    return {j.id: (j.runs, j.next_run) for j in world.nodes[node].engine.jobs.state()}


OPERATOR_ROUTES = [r for r in ROUTES if r.access == "operator"]


@pytest.mark.parametrize("route", OPERATOR_ROUTES, ids=[f"{r.node}-{r.path}" for r in OPERATOR_ROUTES])
def test_only_the_nodes_own_hotkey_may_operate_it(world, tally, clean_log, route):
    before, jobs_before = world.snapshot(route.node), jobs(world, route.node)
    tried = 0
    for who in OTHERS[route.node]:
        for method, target, body in attempts(route):
            reply = world.send(route.node, method, target, body, signer=who)
            tally.add(f"{method} {route.path} ({route.node})", f"operator-as-{who}", reply.status)
            tried += 1
            assert reply.status == 403, (who, method, target, reply.status, reply.body[:200])
            if method != "HEAD":
                assert reply.error == "forbidden" and "own hotkey" in reply.message
    assert tried >= 8
    assert world.snapshot(route.node) == before and jobs(world, route.node) == jobs_before


@pytest.mark.parametrize("node", ["miner", "validator"])
def test_control_the_nodes_own_hotkey_is_let_in(world, node):
    """The refusals above are about who signed: the same requests signed by the node's own key pass."""
    assert world.send(node, "GET", "/v1/state", signer=node).status == 200
    job = next(iter(jobs(world, node)))
    reply = world.send(node, "POST", f"/v1/jobs/{job}/pause", signer=node)  # paused already: no change
    assert reply.status == 200 and reply.json()["changed"] is False


@pytest.mark.parametrize("body", [
    {"size_in_gb": -1}, {"size_in_gb": 0}, {"size_in_gb": 1e30}, {"size_in_gb": "abc"}, {"size_in_gb": "NaN"},
    {"size_in_gb": 0.03, "workers": 0}, {"size_in_gb": 0.03, "workers": -9223372036854775808},
    {"size_in_gb": 0.03, "workers": 100000},
])
def test_a_share_the_operator_mistyped_is_a_400_not_a_500(world, tally, clean_log, body):
    """Bug found by the fuzzer: the share's checks raised ConfigError inside pydantic validation,
    which pydantic does not turn into a validation error: the middleware answered 500 and logged a
    traceback. Now the console's wizard gets a 400 saying what to enter."""
    before = world.snapshot("miner")
    reply = world.send("miner", "POST", "/v1/share", json.dumps(body).encode(), signer="miner")
    tally.add("POST /v1/share (miner)", "share-values", reply.status)
    assert reply.status == 400, reply.body[:300]
    assert reply.error == "bad_request" and "size_in_gb" in reply.message or "workers" in reply.message
    assert world.snapshot("miner") == before


@pytest.mark.parametrize("since", ["nan", "NaN", "inf", "-inf", "1e309", "Infinity"])
def test_an_event_stream_since_a_time_that_is_no_time_is_a_400(world, tally, clean_log, since):
    """Found by the query suite: ``since=nan`` (or inf) opened a stream that could never carry an
    event (every comparison with NaN is false): the console would wait on it forever. Now a 400."""
    for node in world.nodes:
        reply = world.send(node, "GET", f"/v1/events?since={since}", signer=node)
        tally.add(f"GET /v1/events ({node})", "since-not-a-time", reply.status)
        assert reply.status == 400 and "since" in reply.message, reply.body[:200]
