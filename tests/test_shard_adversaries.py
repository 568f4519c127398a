"""Soundness of client-shard credit, tested by attack: miners that cheat on the shards they hold
(tests/shard_adversaries.py) run as real processes next to honest ones, against a real validator
gateway. Every object puts one shard on every miner; once the shards are certified and listed, the
cheaters start. Each must end with no client credit it did not earn, none may change an honest
miner's result, and every object must come back intact.

| adversary      | what it does                                              | must end with                    |
|----------------|-----------------------------------------------------------|----------------------------------|
| deleter        | deletes its shards, keeps listing their certificates      | every window fails: no credit    |
| ninety         | keeps 90 % of each shard's chunks                         | a window with a dropped chunk fails whole |
| wrong_shard    | answers each chunk with another shard's                   | every window fails               |
| chunk_replayer | replays the chunks of its first window after deleting    | every later window fails         |
| refuser        | answers retrievals with 500s or stalls                    | its storage, no serving credit   |
| expired        | lists junk under certificates that expired                | not sampled, counts nothing      |
| forged         | lists certificates with a forged signature                | listing refused: nothing at all  |
| no_permit      | lists junk certified by a hotkey without a permit         | counts nothing in weights        |
"""

from __future__ import annotations

import contextlib
import os
import time

import bittensor as bt
import pytest

from tensorage.chain.devnet import Devnet
from tensorage.chain.wallets import create_wallet
from tensorage.config import PROFILES
from tensorage.proofs.certificates import Certificate, ss58_of
from tensorage.proofs.listing import Listing
from tensorage.proofs.listing_spool import ListingUnavailable
from tensorage.proofs.windows import CLIENT_WEIGHT, SERVE_WEIGHT, client_credit, live_certificates

from .objectnet import VALIDATOR, ObjectNet
from .shard_adversaries import CHEAT_FILE, EXTRA_FILE, JUNK_SHARDS, junk_certificate, junk_tree

pytestmark = [pytest.mark.timeout(600), pytest.mark.adversaries]  # a minute's arena: after the default suite

PROFILE = PROFILES["devnet"]
HONEST = ["honest-0", "honest-1", "honest-2"]
CHEATERS = ["deleter", "ninety", "wrong_shard", "chunk_replayer", "refuser", "expired", "forged", "no_permit"]
WINDOWS = 6
VALIDATOR_ARGS = ("--seconds_per_round", "3600", "--seconds_per_weights", "3600", "--gateway.shard_mb", "0.25",
                  "--gateway.repair_s", "3600", "--gateway.quota_gb", "1")


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    names = HONEST + CHEATERS
    root = tmp_path_factory.mktemp("shard-arena") / "devnet"
    net = ObjectNet(root, len(names), 0.017, VALIDATOR_ARGS, names=names, strategies={n: n for n in CHEATERS})
    try:
        net.start()
        objects = []
        with net.client() as client:
            for i in range(3):
                src = root.parent / f"object-{i}"
                src.write_bytes(os.urandom(900_000))
                objects.append((src, client.store(src, k=4, n=len(names)).id))  # a shard on every miner
        net.until_listed([oid for _, oid in objects])
        head = _head(net)
        gateway = bt.resolve_signer(net.wallet(VALIDATOR), role="hotkey")
        permitless = bt.resolve_signer(_permitless(net), role="hotkey")
        extras = {
            "expired": [junk_certificate(gateway, net.hotkey("expired"), i, head - 1) for i in range(JUNK_SHARDS)],
            "no_permit": [junk_certificate(permitless, net.hotkey("no_permit"), i, head + 10_000)
                          for i in range(JUNK_SHARDS)],
            "forged": [Certificate(**{**c.__dict__, "size": c.size - 1}) for c in
                       [junk_certificate(gateway, net.hotkey("forged"), 0, head + 10_000)]],
        }
        for name, certs in extras.items():
            (net.subnet.db_root(name) / EXTRA_FILE).write_text("\n".join(c.entry().hex() for c in certs))
        for name in CHEATERS:
            (net.subnet.db_root(name) / CHEAT_FILE).touch()
        net.run_job("sync")
        net.window()  # the cheaters' new listings are now older than the next beacon
        net.started_cheating = _window_of(net)
        for i in range(WINDOWS):
            net.window()
            with net.client() as client:  # retrievals: honest miners serve, the refuser does not
                src, oid = objects[i % len(objects)]
                client.retrieve(oid, root.parent / f"back-{time.monotonic_ns()}")
            net.run_job("repair")
            net.run_job("certify")  # served bytes go into the certificates of the miners that served
        net.objects = objects
        net.permitless = permitless.ss58_address
        yield net
    finally:
        net.close(graceful=False)  # no test here looks at how nodes stop


def _head(net: ObjectNet) -> int:
    chain = Devnet.open(net.root)
    try:
        return chain.block()
    finally:
        chain.close()


def _window_of(net: ObjectNet) -> int:
    return net.subnet.rounds(VALIDATOR, net.hotkey(HONEST[0]))[0].window


def _permitless(net: ObjectNet) -> bt.Wallet:
    """A registered hotkey without a validator permit (no stake): it can sign, it cannot certify."""
    wallet = create_wallet(net.root / "wallets", "validator-without-permit")
    chain = Devnet.open(net.root)
    try:
        chain.register(wallet.hotkey.ss58_address, wallet.coldkeypub.ss58_address)
    finally:
        chain.close()
    return wallet


def cheating_rounds(net: ObjectNet, name: str) -> list:
    return [r for r in net.subnet.rounds(VALIDATOR, net.hotkey(name)) if r.window > net.started_cheating]


def test_the_honest_miners_pass_every_window_with_their_client_credit(arena):
    for name in HONEST:
        rounds = cheating_rounds(arena, name)
        assert len(rounds) >= WINDOWS - 1
        assert all(r.result == "pass" and r.client_bytes > 0 and r.chunks_right == r.chunks_asked for r in rounds), \
            [(r.window, r.result, r.detail) for r in rounds]


@pytest.mark.parametrize("name", ["deleter", "wrong_shard", "chunk_replayer"])
def test_a_miner_without_its_shards_bytes_proves_nothing(arena, name):
    rounds = cheating_rounds(arena, name)
    later = rounds[:-1] if name == "chunk_replayer" else rounds  # the replayer's first window was honest
    assert later and all(r.result == "fail" and r.credit_bytes == 0 and r.client_bytes == 0 for r in later), \
        [(r.window, r.result, r.chunks_right, r.chunks_asked) for r in later]
    assert all("shard chunks wrong or missing" in r.detail for r in later)


def test_ninety_percent_of_the_chunks_is_a_losing_bet(arena):
    rounds = cheating_rounds(arena, "ninety")
    assert rounds
    for r in rounds:  # one missing chunk and the window proves nothing, plots included
        assert (r.result == "fail") == (r.chunks_right < r.chunks_asked)
        assert r.result == "pass" or (r.credit_bytes == 0 and r.client_bytes == 0)
    right = sum(r.chunks_right for r in rounds) / sum(r.chunks_asked for r in rounds)
    assert 0.7 <= right <= 1.0  # it holds ~90 % of the chunks; the windows it keeps (0.9^4 = 66 % expected,
    # test_certified_shards counts it over 300 windows) are worth less than what it holds


def judged_listings(arena: ObjectNet, name: str) -> list[tuple[object, Listing]]:
    """(round, the listing its window was drawn from) of the windows since cheating began whose
    listing the validator still keeps (its last three)."""
    store = arena.subnet.store(VALIDATOR)
    seen = {}
    try:
        for s in store.listings():
            if s.hotkey == arena.hotkey(name):
                with contextlib.suppress(ListingUnavailable):  # a snapshot the validator no longer follows
                    seen[s.digest] = store.listing(s, PROFILE.max_listed_plots, PROFILE.max_listed_shards)
    finally:
        store.close()
    return [(r, seen[r.listing]) for r in cheating_rounds(arena, name) if r.listing in seen]


def test_serving_pays_a_refuser_nothing_and_a_retrieval_loop_at_most_its_bound(arena):
    """Serving pays through the certificates: the gateway certifies the bytes a miner delivered to
    retrievals (at most the shard's size a period), and every validator credits them at SERVE_WEIGHT.
    The arena's client retrieved its own objects over and over: a self-dealing loop, bounded."""
    def stored_and_bonus(name: str) -> tuple[float, float]:  # client credit above what storing earns
        r, listing = judged_listings(arena, name)[0]
        live = live_certificates(listing, r.window * PROFILE.window_blocks)
        stored = sum(c.size for c in live)
        return stored, r.client_bytes - CLIENT_WEIGHT * stored

    refuser = cheating_rounds(arena, "refuser")[0]
    assert refuser.result == "pass" and refuser.client_bytes > 0  # it does hold its shards: that part it earns
    assert stored_and_bonus("refuser")[1] == 0  # nothing for serving
    assert all(c.served == 0 for c in arena.certificates_listed()[arena.hotkey("refuser")])
    bonuses = [stored_and_bonus(n) for n in HONEST]
    assert max(b for _, b in bonuses) > 0  # honest miners served retrievals and are paid for it ...
    assert all(b <= SERVE_WEIGHT * stored for stored, b in bonuses)  # ... at most half their stored bytes


def test_expired_forged_and_permitless_certificates_count_for_nothing(arena):
    junk = {junk_tree(i).id for i in range(JUNK_SHARDS)}
    judged = judged_listings(arena, "expired")
    assert cheating_rounds(arena, "expired") and all(r.result == "pass" for r in cheating_rounds(arena, "expired"))
    assert judged  # the junk is never sampled ...
    for r, listing in judged:
        assert junk <= {c.shard for c in listing.certificates()}  # ... though it is listed ...
        real = [c for c in live_certificates(listing, r.window * PROFILE.window_blocks) if c.shard not in junk]
        assert r.client_bytes == pytest.approx(sum(client_credit(real).values()))  # ... and credits nothing
    forged = cheating_rounds(arena, "forged")
    assert forged and all(r.result == "fail" and r.credit_bytes == 0 for r in forged)
    assert any("not signed by its gateway" in r.detail for r in forged)
    # the permitless hotkey's junk is sampled and answered (the miner regenerates it), and credited in the
    # windows; weights count it with its gateway's factor: 0, a hotkey without a permit has no stake share
    for r, listing in judged_listings(arena, "no_permit"):
        junk_credit = sum(v for g, v in client_credit(live_certificates(listing, r.window * PROFILE.window_blocks))
                          .items() if ss58_of(g) == arena.permitless)
        assert r.result == "pass" and junk_credit > 0 and r.client_bytes >= junk_credit, (r.window, r.result, r.detail, junk_credit, r.client_bytes)
    state = arena.state()
    assert state["gateway_factors"][arena.permitless] == 0.0


def test_the_cheaters_that_hold_nothing_end_below_every_honest_miner_and_every_object_comes_back(arena, tmp_path):
    """(The others hold what they are paid for, checked above; repair may even have given them more
    shards, so their totals are not compared.)"""
    scores = {h: m["score"] for h, m in arena.state()["miners"].items()}
    for name in ("deleter", "wrong_shard", "chunk_replayer", "forged"):
        assert scores[arena.hotkey(name)] < min(scores[arena.hotkey(n)] for n in HONEST), name
    with arena.manifest() as m:
        lost = m.Shard.select().where(m.Shard.state.in_(["lost", "doomed"])).count()
    assert lost >= 3  # the deleters' shards were found gone (signed re-checks) and moved
    with arena.client() as client:
        for src, oid in arena.objects:
            client.retrieve(oid, tmp_path / oid)
            assert (tmp_path / oid).read_bytes() == src.read_bytes()
