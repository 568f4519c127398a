"""Client storage pays under Yuma (docs/proofs.md, "Client shards"): the devnet's own consensus
(chain/consensus.py) over three validators with unequal stake (0.2 / 0.48 / 0.32), all checking
real windows of real miner processes. The 0.2 one is the gateway.

* A miner with half its share in client shards ends with at least the incentive of a plot-only
  miner with the same disk, and as much more as CLIENT_WEIGHT promises: every validator checks
  the same certified chunks, so none clips what the gateway pays.
* The gateway's dividends per stake match the others': its weights agree with theirs.
* Collusion: the gateway then certifies junk a colluding miner can regenerate. The colluder gains
  at most the gateway's stake share of all credit.

The figures are printed (``pytest -s``) for the issue's note.
"""

from __future__ import annotations

import os

import bittensor as bt
import pytest

from tensorage.chain.devnet import Devnet
from tensorage.config import PROFILES
from tensorage.proofs.listing import Listing
from tensorage.proofs.listing_spool import ListingUnavailable
from tensorage.proofs.windows import CLIENT_WEIGHT, SERVE_WEIGHT

from .objectnet import ObjectNet
from .shard_adversaries import CHEAT_FILE, EXTRA_FILE, MAX_JUNK, junk_certificate
from .subnet import Subnet, wait_for

# 90 s of 7 miners and 3 validators: behind the slow marker so the default suite stays under 10 minutes
# (the stake bound itself: tests/test_certified_shards.py; the colluder: tests/test_shard_adversaries.py)
pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

PROFILE = PROFILES["devnet"]
STAKES = {"validator-0": 200.0, "validator-1": 480.0, "validator-2": 320.0}  # 0.2 / 0.48 / 0.32; -0 is the gateway
SAME_DISK = 0.03   # four k=18 plots
BIG_DISK = 0.05    # seven: the rest of the network, so the keeper's client data is under a fifth of all credit
MINERS = {"keeper": SAME_DISK, "plots-only": SAME_DISK, "colluder": SAME_DISK,
          "big-0": BIG_DISK, "big-1": BIG_DISK, "big-2": BIG_DISK, "big-3": BIG_DISK}
PLOT_ONLY = ["plots-only", "big-0", "big-1", "big-2", "big-3", "colluder"]
WINDOWS = 10


def metagraph(subnet: Subnet) -> dict[str, object]:
    chain = Devnet.open(subnet.root)
    try:
        chain.run_epoch(force=True)
        return {n.hotkey: n for n in chain.metagraph().neurons}
    finally:
        chain.close()


def listing_of(subnet: Subnet, validator: str, miner: str) -> Listing:
    store = subnet.store(validator)
    try:
        rows = [r for r in store.listings() if r.hotkey == subnet.hotkey(miner)]
        for row in reversed(rows):  # the newest the validator still follows
            try:
                return store.listing(row, PROFILE.max_listed_plots, PROFILE.max_listed_shards)
            except ListingUnavailable:
                continue
        raise AssertionError(f"the validator follows no listing of {miner}")
    finally:
        store.close()


def credit_of(listing: Listing) -> float:
    return listing.credited_bytes(PROFILE.min_k, PROFILE.max_k) + sum(
        CLIENT_WEIGHT * c.size + SERVE_WEIGHT * c.served for c in listing.certificates())


def weights_after(subnet: Subnet, block: int) -> None:
    def all_set() -> bool:
        for v in STAKES:
            store = subnet.store(v)
            try:
                last = store.last_weights()
            finally:
                store.close()
            if last is None or last.block <= block:
                return False
        return True

    wait_for(all_set, 90, "every validator to set weights")


def head(subnet: Subnet) -> int:
    chain = Devnet.open(subnet.root)
    try:
        return chain.block()
    finally:
        chain.close()


@pytest.fixture(scope="module")
def yuma(tmp_path_factory):
    root = tmp_path_factory.mktemp("yuma") / "devnet"
    names = list(MINERS)
    subnet = Subnet.create(root, miners=len(names), validators=3, sizes=(SAME_DISK,), names=names)
    spec = subnet.spec
    chain = Devnet.open(root)
    try:
        for v, stake in STAKES.items():
            chain.add_stake(subnet.hotkey(v), stake - chain.metagraph().by_hotkey(subnet.hotkey(v)).total_stake)
    finally:
        chain.close()
    subnet.allocate_here(MINERS, verify=False)  # the windows check them
    try:
        for name, size in MINERS.items():
            extra = ("--disable_verify",) + (("--max_shard_fraction", "0") if name in PLOT_ONLY else ())
            if name == "colluder":
                subnet.start(name, ["tests.shard_adversaries", "colluder"], "--size_in_gb", str(size), *extra)
            else:
                subnet.start_miner(name, size, *extra)
        wait_for(lambda: subnet.served(names), 120, "every miner to serve")
        # the gateway first, without windows: the client's data is in place (and listed) before any validator
        # checks a window, so every window of the test credits it
        subnet.start_validator("validator-0", "--seconds_per_round", "3600", "--gateway.shard_mb", "16")
        net = ObjectNet.wrap(subnet, names)
        wait_for(net.gateway_up, 120, "the gateway")
        net.run_job("sync")
        src = root.parent / "client-data"
        src.write_bytes(os.urandom(int(SAME_DISK * 1e9 / 2)))  # half the keeper's share
        with net.client() as client:
            stored = client.store(src, k=1, n=1)
        keeper = subnet.hotkey("keeper")

        def listed() -> bool:
            net.run_job("sync")
            return bool(listing_of(subnet, "validator-0", "keeper").certificates())

        wait_for(listed, 90, "the keeper to list its certified shard", every=2)
        subnet.kill("validator-0", 15)
        start = head(subnet)
        for v in STAKES:  # every validator checks every window from here on, and sets weights every 5 s
            subnet.start_validator(v, "--seconds_per_weights", "5", *(("--gateway.disable",) if v != "validator-0"
                                                                        else ("--gateway.shard_mb", "16")))
        wait_for(lambda: min(len([r for r in subnet.rounds(v, keeper) if r.window * 3 > start])
                             for v in STAKES) >= WINDOWS, 240, f"{WINDOWS} windows at every validator", every=2)
        weights_after(subnet, head(subnet))
        honest = metagraph(subnet)
        phase1 = (start // PROFILE.window_blocks, head(subnet) // PROFILE.window_blocks)
        honest_lists = {n: listing_of(subnet, "validator-1", n) for n in MINERS}
        factors = {v: net.state(v)["gateway_factors"] for v in STAKES}
        # collusion: the gateway certifies junk the colluder regenerates: 400 MiB, which would count 800 MB a
        # window against ~200 MB of the whole network's plots and client data
        gateway = bt.resolve_signer(spec.wallet(root, next(n for n in spec.nodes if n.name == "validator-0")),
                                    role="hotkey")
        junk = [junk_certificate(gateway, subnet.hotkey("colluder"), i, head(subnet) + 10_000)
                for i in range(MAX_JUNK)]
        (subnet.db_root("colluder") / EXTRA_FILE).write_text("\n".join(c.entry().hex() for c in junk))
        (subnet.db_root("colluder") / CHEAT_FILE).touch()
        junk_ids = {c.shard for c in junk}
        wait_for(lambda: all(junk_ids <= {c.shard for c in listing_of(subnet, v, "colluder").certificates()}
                             for v in STAKES), 90, "every validator to see the colluder's junk", every=2)
        colluding_from = head(subnet)
        wait_for(lambda: min(len([r for r in subnet.rounds(v, subnet.hotkey("colluder"))
                                  if r.window * 3 > colluding_from and r.client_bytes > 0]) for v in STAKES) >= 4,
                 120, "windows crediting the junk", every=2)
        weights_after(subnet, head(subnet))
        colluding = metagraph(subnet)
        colluding_factors = {v: net.state(v)["gateway_factors"] for v in STAKES}
        yield {"subnet": subnet, "honest": honest, "lists": honest_lists, "factors": factors, "phase1": phase1,
               "colluding": colluding, "colluding_factors": colluding_factors, "stored": stored}
    finally:
        subnet.stop_all()


def mean_credit(subnet: Subnet, validator: str, miner: str, since: int, until: int) -> tuple[float, float]:
    """(total, client) credit per window of the windows ``since`` < w <= ``until`` a validator judged."""
    rounds = [r for r in subnet.rounds(validator, subnet.hotkey(miner)) if since < r.window <= until]
    return (sum(r.credit_bytes for r in rounds) / len(rounds), sum(r.client_bytes for r in rounds) / len(rounds))


def test_client_data_pays_as_much_as_client_weight_promises(yuma):
    subnet, mg = yuma["subnet"], yuma["honest"]
    incentive = {n: mg[subnet.hotkey(n)].incentive for n in MINERS}
    same_disk = ["plots-only", "colluder"]  # (the colluder is an honest plot-only miner until phase 2)
    since, until = yuma["phase1"]
    credit = {n: mean_credit(subnet, "validator-1", n, since, until) for n in ["keeper"] + same_disk}
    shard = sum(c.size for c in yuma["lists"]["keeper"].certificates())
    promised = credit["keeper"][0] / (sum(credit[n][0] for n in same_disk) / 2)
    measured = incentive["keeper"] / (sum(incentive[n] for n in same_disk) / 2)
    print(f"\nYuma, honest gateway with 0.2 of stake: incentive { {n: round(v, 4) for n, v in incentive.items()} }; "
          f"keeper (half its {SAME_DISK} GB share in client shards) / plot-only miners of the same disk {measured:.3f}, "
          f"its windows' credit says {promised:.3f}; gateway factors {yuma['factors']}")
    assert all(f.get(subnet.hotkey("validator-0"), 1.0) == 1.0 for f in yuma["factors"].values())  # paid in full
    assert credit["keeper"][1] == pytest.approx(CLIENT_WEIGHT * shard, rel=1e-3)  # every window, every byte
    assert incentive["keeper"] >= max(incentive[n] for n in same_disk)
    assert abs(measured / promised - 1) < 0.12  # Yuma keeps what every validator credits (decay vs flat mean)


def test_the_gateway_earns_dividends_like_the_others(yuma):
    subnet, mg = yuma["subnet"], yuma["honest"]
    per_stake = {v: mg[subnet.hotkey(v)].dividends / (STAKES[v] / sum(STAKES.values())) for v in STAKES}
    print(f"\ndividends per stake share: { {v: round(d, 4) for v, d in per_stake.items()} }")
    assert per_stake["validator-0"] >= 0.98 * max(per_stake["validator-1"], per_stake["validator-2"])


def test_a_colluding_gateway_directs_at_most_its_stake_share(yuma):
    subnet, mg = yuma["subnet"], yuma["colluding"]
    incentive = {n: mg[subnet.hotkey(n)].incentive for n in MINERS}
    gained = incentive["colluder"] - incentive["plots-only"]  # the same disk: all else is the junk
    factors = {v: f.get(subnet.hotkey("validator-0")) for v, f in yuma["colluding_factors"].items()}
    print(f"\ncollusion: colluder {incentive['colluder']:.4f} vs plot-only miner {incentive['plots-only']:.4f} "
          f"(+{gained:.4f}, bound 0.2); keeper {incentive['keeper']:.4f}; gateway factors {factors}")
    assert all(f is not None and f < 1.0 for f in factors.values())  # the junk is capped at every validator
    assert gained + incentive["keeper"] - incentive["plots-only"] <= 0.2 + 0.03  # all its certificates: <= 0.2
