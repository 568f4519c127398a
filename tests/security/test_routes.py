"""No route escapes the suite: the table in routes.py is checked against the nodes' own routers."""

from __future__ import annotations

from .routes import ROUTES, find


def served_routes(world) -> set[tuple[str, str, str]]:
    out = set()
    for name, node in world.nodes.items():
        for r in node.engine.served.runner.app.router.routes():
            out.add((name, r.method, r.resource.canonical))
    return out


def test_every_route_of_every_node_has_a_fuzz_entry(world):
    served = served_routes(world)
    assert len(served) >= 30  # both nodes' routes were read (HEAD as well as GET)
    missing = sorted(f"{n} {m} {p}" for n, m, p in served if find(n, m, p) is None)
    assert not missing, f"routes with no entry in tests/security/routes.py (add one, with its access level, " \
                        f"ids, query and body): {missing}"


def test_the_table_names_no_route_a_node_does_not_serve(world):
    served = served_routes(world)
    stale = sorted(f"{r.node} {m} {r.path}" for r in ROUTES for m in r.methods if (r.node, m, r.path) not in served)
    assert not stale, f"routes.py lists routes no node serves (remove them): {stale}"


def test_the_table_says_what_each_handler_demands(world):
    """The access level in the table is the one the handler is marked with (net/auth.py ``access``)."""
    wrong = []
    for name, node in world.nodes.items():
        for r in node.engine.served.runner.app.router.routes():
            entry = find(name, r.method, r.resource.canonical)
            level = getattr(r.handler, "__tensorage_access__", "registered")
            if entry is not None and entry.access != level:
                wrong.append(f"{name} {r.method} {r.resource.canonical}: table {entry.access}, handler {level}")
    assert not wrong, wrong
