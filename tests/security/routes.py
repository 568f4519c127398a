"""Every HTTP route of every node, with what a fuzzer needs to know about it. The suite checks this
table against the nodes' own routers (tests/security/test_routes.py): a route added to a node
without an entry here fails the suite, so no endpoint escapes the hostile inputs."""

from __future__ import annotations

from dataclasses import dataclass, field

from tensorage.net.objects import CERTIFICATE_HEADER

# who may call: the identity a hostile peer signs its garbage with, to get past authentication
SIGNER = {"public": "validator", "validator": "validator", "client": "client", "operator": "own"}


@dataclass(frozen=True)
class Route:
    node: str                      # "miner" or "validator" (with its gateway)
    methods: tuple[str, ...]
    path: str                      # the router's canonical path, {name} for a parameter
    access: str                    # public | validator | client | operator
    params: tuple[str, ...] = ()   # path parameters: every one an id a traversal is tried in
    query: tuple[str, ...] = ()    # query parameters the handler reads
    body: str = "none"             # none | json | stream
    headers: tuple[str, ...] = ()  # headers the handler reads
    fields: dict[str, str] = field(default_factory=dict)  # a JSON body's fields -> kind, for mutations
    reads_only: bool = False       # a POST that changes nothing (a re-check): it may answer 200 to a valid body

    @property
    def key(self) -> str:
        return f"{self.node} {self.path}"

    @property
    def signer(self) -> str:
        return SIGNER[self.access]

    def mutates(self, method: str) -> bool:
        """Whether a 2xx to this method may change the node: never for hostile input."""
        return method not in ("GET", "HEAD") and not self.reads_only

    def target(self, values: dict[str, str]) -> str:
        out = self.path
        for name in self.params:
            out = out.replace("{" + name + "}", values.get(name, "x"))
        return out


GET = ("GET", "HEAD")
COMMON = [  # every node (engines/node.py)
    Route("{node}", GET, "/v1/health", "public"),
    Route("{node}", GET, "/v1/events", "operator", query=("since",)),
    Route("{node}", GET, "/v1/state", "operator"),
    Route("{node}", ("POST",), "/v1/jobs/{job}/{action}", "operator", params=("job", "action")),
]
MINER = [
    Route("miner", GET, "/v1/plots", "validator", headers=("If-None-Match",)),
    Route("miner", ("POST",), "/v1/challenge", "validator", body="json",
          fields={"window": "int", "beacon": "hex32", "listing": "hex32", "deadline": "float", "protocol": "int"}),
    Route("miner", ("POST",), "/v1/share", "operator", body="json",
          fields={"size_in_gb": "float", "workers": "int", "remove_plots": "bool", "protocol": "int"}),
    Route("miner", GET, "/v1/shards", "validator"),
    Route("miner", ("PUT",), "/v1/shards/{id}", "validator", params=("id",), query=("size",), body="stream",
          headers=(CERTIFICATE_HEADER,)),
    Route("miner", GET, "/v1/shards/{id}", "validator", params=("id",)),
    Route("miner", ("DELETE",), "/v1/shards/{id}", "validator", params=("id",)),
    Route("miner", ("POST",), "/v1/shards/{id}/check", "validator", params=("id",), body="json",
          fields={"chunks": "intlist", "leaves": "bool", "protocol": "int"}, reads_only=True),
    Route("miner", GET, "/v1/shards/legacy/{sha}", "validator", params=("sha",)),
    Route("miner", ("POST",), "/v1/certificates", "validator", body="json",
          fields={"certificates": "strlist", "protocol": "int"}),
]
GATEWAY = [
    Route("validator", GET, "/v1/gateway", "public"),
    Route("validator", ("POST",), "/v1/objects", "client", body="json",
          fields={"size": "int", "k": "int", "n": "int", "block": "int", "meta": "str", "protocol": "int"}),
    Route("validator", GET, "/v1/objects", "client"),
    Route("validator", ("PUT",), "/v1/objects/{id}", "client", params=("id",), query=("size",), body="stream"),
    Route("validator", GET, "/v1/objects/{id}", "client", params=("id",)),
    Route("validator", ("DELETE",), "/v1/objects/{id}", "client", params=("id",)),
]


def _for(node: str, route: Route) -> Route:
    return Route(node, route.methods, route.path, route.access, route.params, route.query, route.body,
                 route.headers, dict(route.fields), route.reads_only)


ROUTES: list[Route] = [_for(n, r) for n in ("miner", "validator") for r in COMMON] + MINER + GATEWAY


def endpoints() -> list[tuple[Route, str]]:
    """(route, method) for every method of every route."""
    return [(r, m) for r in ROUTES for m in r.methods]


def find(node: str, method: str, path: str) -> Route | None:
    return next((r for r in ROUTES if r.node == node and r.path == path and method in r.methods), None)
