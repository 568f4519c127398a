"""Hostile inputs: fixed lists (path traversal in every spelling, strings that break parsers) and
hypothesis strategies for bodies, headers, queries and ids; and the verdict every answer must pass."""

from __future__ import annotations

import json
from urllib.parse import quote

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from .rawhttp import Response

HEX64 = "ab" * 32

TRAVERSAL = [
    "..", ".", "../", "../../canary.txt", "../../../canary.txt", "../../../../../../etc/passwd",
    "%2e%2e", "%2e%2e%2f%2e%2e%2fcanary.txt", "%2E%2E%2F%2E%2E%2F%2E%2E%2Fcanary.txt", "..%2f..%2f..%2fcanary.txt",
    "%252e%252e%252fcanary.txt", "..%5c..%5ccanary.txt", "..\\..\\canary.txt", "%c0%ae%c0%ae%c0%afcanary.txt",
    "/etc/passwd", "%2fetc%2fpasswd", "//etc/passwd", "%00", "x%00y", HEX64 + "%00", HEX64 + "%00.tree",
    HEX64 + ".tree", HEX64 + "/../" + HEX64, HEX64 + "%2f..%2f" + HEX64, ".tmp-" + HEX64[:16], "shards",
    "index", "miner.sqlite", "..%2findex%2fminer.sqlite", "a" * 4096, "f" * 65, "F" * 64, "0x" + HEX64[:62],
    quote("é" * 64), quote("𝕏" * 16), quote("\u202e" + HEX64[:63]), quote("ａｂ" * 32), "%ff%fe", "~", "~root",
    "$(id)", "`id`", ";ls", "|cat", "{id}", "%7bid%7d", "*", "?", "%3f", "#", "%23", "%20", "+",
]

STRINGS = [  # through every query parameter, header and JSON string
    "", " ", "0", "-1", "1e309", "-1e309", "NaN", "nan", "inf", "-inf", "Infinity", "1_000", " 12 ", "٣",
    "0x10", "1" * 5000, "9" * 40, "-" + "9" * 40, "1.5", "true", "null", "[]", "{}", "'", '"', "\\", "%", "%00",
    "\x00", "\x7f", "\r\nX-Injected: 1", "\n", "é", "𝕏", "\u202e", "\ufeff", "../../canary.txt", "/etc/passwd",
    "<script>", "' OR 1=1 --", "a" * 70_000,
]

# header names a node reads, and the auth headers (garbage in them must be a 401, never a crash)
HEADER_NAMES = ["X-Bittensor-Version", "X-Bittensor-Hotkey", "X-Bittensor-Nonce", "X-Bittensor-Signature",
                "X-Bittensor-Receiver", "X-Bittensor-Crypto", "X-Tensorage-Protocol", "X-Tensorage-Certificate",
                "If-None-Match", "Content-Type", "Content-Encoding", "Expect", "Range", "Accept-Encoding"]


def header_safe(text: str) -> str:
    """What can go in a header line at all (no CR/LF, which would end it): the rest is fair game."""
    return text.replace("\r", "").replace("\n", "")[:8000]


def query_safe(text: str) -> str:
    return quote(text, safe="")


ids = st.one_of(st.sampled_from(TRAVERSAL), st.text(min_size=1, max_size=80).map(lambda t: quote(t, safe="")),
                st.binary(min_size=1, max_size=40).map(lambda b: quote(b, safe="")))
strings = st.one_of(st.sampled_from(STRINGS), st.text(max_size=60))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | strings,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=12)


def hostile_for(kind: str):
    """Values a field of ``kind`` must refuse: wrong types, out of range, absurd sizes."""
    wrong = st.one_of(st.none(), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3),
                                                                                      st.integers(), max_size=2))
    if kind in ("int", "float"):
        return st.one_of(wrong, st.sampled_from([-1, -2**63, 2**64, 2**300, "x", "1e999", "NaN", "", -1e308]),
                         st.text(min_size=1, max_size=20).filter(lambda t: not t.strip().lstrip("-").isdigit()))
    if kind == "bool":
        return st.one_of(wrong, st.sampled_from(["maybe", 2, -1, 1.5, "yes please"]))
    if kind == "hex32":
        return st.one_of(wrong, st.sampled_from(TRAVERSAL + ["A" * 64, "g" * 64, "0" * 63]), st.integers())
    if kind in ("intlist", "strlist"):
        return st.one_of(st.sampled_from([-1, "x", {}]), st.lists(st.integers(min_value=2**40), min_size=1,
                                                                   max_size=3) if kind == "intlist" else
                         st.lists(st.sampled_from(TRAVERSAL + ["zz", ""]), min_size=1, max_size=3),
                         st.lists(st.integers(), min_size=3000, max_size=3000))
    if kind == "str":
        return st.one_of(wrong, st.sampled_from(["../../x", "a b", "\x00", "é" * 2000, "$" * 10]))
    return wrong


def bodies(fields: dict[str, str]):
    """Garbage of every shape: random bytes, random JSON, and a JSON object of the endpoint's own
    fields with one of them hostile (what gets furthest into a handler)."""
    raw = st.binary(max_size=2048)
    junk = json_values.map(lambda v: json.dumps(v).encode())
    if not fields:
        return st.one_of(raw, junk)

    @st.composite
    def mutated(draw):
        base = {name: _plausible(kind) for name, kind in fields.items()}
        bad = draw(st.sampled_from(sorted(fields)))
        base[bad] = draw(hostile_for(fields[bad]))
        if draw(st.booleans()):
            base[draw(st.text(min_size=1, max_size=8))] = draw(json_values)  # an extra field as well
        return json.dumps(base).encode()

    return st.one_of(raw, junk, mutated())


def _plausible(kind: str):
    return {"int": 4, "float": 1.0, "bool": False, "hex32": HEX64, "intlist": [0], "strlist": [HEX64],
            "str": ""}[kind]


def fuzz_settings(examples: int) -> settings:
    """Bounded and reproducible: CI draws the same inputs every run."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


def assert_refused_clearly(reply: Response, method: str, context: str) -> None:
    """A hostile request's answer: never a 5xx; a 4xx says what is wrong in a JSON error with a
    message. aiohttp's own answers before any handler runs are plain text and still clear: 400 for a
    request its parser cannot read, 417 for an Expect it does not know; HEAD has no body."""
    assert reply.status < 500, f"{context}: {reply.status} {reply.body[:300]!r}"
    if reply.status >= 400 and method != "HEAD":
        parser_level = reply.status in (400, 417, 431) and "json" not in reply.headers.get("content-type", "")
        if not parser_level:
            assert reply.error and len(reply.message) > 10, f"{context}: {reply.status} {reply.body[:300]!r}"
