"""Property-based fuzzing of every endpoint of every node: path, query, headers and body, unsigned
and validly signed by a peer the endpoint admits (a hostile peer signs its garbage). Every answer
is a clear 4xx (or the read-only answer the route gives anyone it admits), nothing is logged as an
unhandled error, and neither node's files, databases nor listing change."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .hostile import (HEADER_NAMES, assert_refused_clearly, bodies, fuzz_settings, header_safe, ids, query_safe,
                      strings)
from .routes import Route, endpoints

EXAMPLES = 25


@st.composite
def hostile_request(draw, route: Route, method: str):
    target = route.target({p: draw(ids) for p in route.params})
    query = {name: draw(strings) for name in route.query + ("x", "size", "since") if draw(st.booleans())}
    if query:
        target += "?" + "&".join(f"{query_safe(k)}={query_safe(v)}" for k, v in query.items())
    headers = draw(st.dictionaries(st.sampled_from(HEADER_NAMES + list(route.headers)), strings.map(header_safe),
                                   max_size=4))
    body = draw(bodies(route.fields)) if route.body != "none" or draw(st.booleans()) else b""
    return target, headers, body


def signer_of(route: Route) -> str:
    return route.node if route.signer == "own" else route.signer


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("route, method", endpoints(), ids=[f"{r.node}-{m}-{r.path}" for r, m in endpoints()])
def test_hostile_requests_are_refused_clearly_and_change_nothing(world, tally, clean_log, route, method, signed):
    before = {n: world.snapshot(n) for n in world.nodes}
    seen: list[int] = []

    @fuzz_settings(EXAMPLES)
    @given(hostile_request(route, method))
    def one(req):
        target, headers, body = req
        reply = world.send(route.node, method, target, body, headers, signer=signer_of(route) if signed else None)
        seen.append(reply.status)
        tally.add(f"{method} {route.path} ({route.node})", "fuzz-signed" if signed else "fuzz-unsigned",
                  reply.status)
        context = f"{method} {target[:200]!r} headers={list(headers)} body={body[:100]!r}"
        assert_refused_clearly(reply, method, context)
        if not signed and route.access != "public":
            assert reply.status in (400, 401, 404, 405, 413, 417, 421, 426, 431), context
        if route.mutates(method):  # what changes state: never for garbage
            assert reply.status >= 400, context

    one()
    assert len(seen) == EXAMPLES
    assert {n: world.snapshot(n) for n in world.nodes} == before
