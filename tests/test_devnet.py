"""The devnet chain: shared by processes, consensus as computed by hand."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tensorage.chain.consensus import stake_weighted_median, yuma
from tensorage.chain.devnet import Devnet, SubnetSpec
from tensorage.chain.wallets import create_wallet
from tensorage.errors import ChainError, NotRegistered


def test_yuma_matches_hand_computed_example():
    # validators 0 (stake 3) and 1 (stake 1); miners 2 and 3.
    weights = {0: {2: 0.6, 3: 0.4}, 1: {2: 0.2, 3: 0.8}}
    res = yuma(weights, {0: 3.0, 1: 1.0}, uids=[0, 1, 2, 3], emission_per_epoch=100.0)
    # consensus: the largest weight backed by >= half the stake
    assert res.consensus[2] == pytest.approx(0.6)   # only v0 (0.75) gives >= 0.6
    assert res.consensus[3] == pytest.approx(0.4)   # both give >= 0.4; only v1 (0.25) gives 0.8
    # clipped: v0 [0.6, 0.4], v1 [0.2, 0.4]; rank = stake-weighted sum
    assert res.rank[2] == pytest.approx(0.75 * 0.6 + 0.25 * 0.2)   # 0.5
    assert res.rank[3] == pytest.approx(0.75 * 0.4 + 0.25 * 0.4)   # 0.4
    assert res.incentive[2] == pytest.approx(5 / 9)
    assert res.incentive[3] == pytest.approx(4 / 9)
    assert res.trust[2] == pytest.approx(1.0)
    assert res.trust[3] == pytest.approx(0.4 / (0.75 * 0.4 + 0.25 * 0.8))  # 0.8
    # dividends: stake x clipped weights . incentive, normalized over validators
    d0 = 0.75 * (0.6 * 5 / 9 + 0.4 * 4 / 9)
    d1 = 0.25 * (0.2 * 5 / 9 + 0.4 * 4 / 9)
    assert res.dividends[0] == pytest.approx(d0 / (d0 + d1))
    assert res.dividends[1] == pytest.approx(d1 / (d0 + d1))
    assert res.emission[2] == pytest.approx(50 * 5 / 9)
    assert res.emission[0] == pytest.approx(50 * d0 / (d0 + d1))
    assert sum(res.emission.values()) == pytest.approx(100.0)


def test_weighted_median_needs_kappa_of_stake():
    assert stake_weighted_median({0: 1.0, 1: 0.0}, {0: 0.49, 1: 0.51}) == 0.0
    assert stake_weighted_median({0: 1.0, 1: 0.0}, {0: 0.5, 1: 0.5}) == 1.0


_WORKER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from tensorage.chain.devnet import Devnet
    from tensorage.chain.wallets import create_wallet
    root, name, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    chain = Devnet.open(root)
    w = create_wallet(root / "extra-wallets", name)
    uid = chain.register(w.hotkey.ss58_address, w.coldkeypub.ss58_address)
    chain.add_stake(w.hotkey.ss58_address, 100.0)
    for i in range(rounds):
        chain.set_weights(w, {2: 1.0 + i, 3: 1.0})
    print(uid)
""")


def test_two_processes_register_and_set_weights_concurrently(devnet_root):
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(devnet_root), f"extra-{i}", "200"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e
    uids = sorted(int(o.strip()) for o, _ in outs)
    assert uids == [6, 7]  # 6 neurons from init (3 miners, 2 validators, the client), then one each, no clash
    chain = Devnet.open(devnet_root)
    weights = chain.weights()
    for uid in uids:
        assert weights[uid][2] == pytest.approx(200 / 201)
        assert weights[uid][3] == pytest.approx(1 / 201)
    mg = chain.metagraph()
    assert len(mg.neurons) == 8 and len(set(mg.hotkeys)) == 8
    chain.close()


def test_epoch_turns_weights_into_incentive_and_emission(devnet_root):
    chain = Devnet.open(devnet_root)
    spec = SubnetSpec.load(devnet_root)
    v0, v1 = (spec.wallet(devnet_root, n) for n in spec.of_role("validator"))
    mg = chain.metagraph()
    miners = [n.uid for n in mg.neurons if not n.validator_permit][:3]  # the last one is the client wallet
    chain.set_weights(v0, {miners[0]: 0.5, miners[1]: 0.3, miners[2]: 0.2})
    chain.set_weights(v1, {miners[0]: 0.5, miners[1]: 0.3, miners[2]: 0.2})
    assert chain.run_epoch(force=True)
    mg = chain.metagraph()
    inc = {n.uid: n.incentive for n in mg.neurons}
    assert inc[miners[0]] == pytest.approx(0.5) and inc[miners[1]] == pytest.approx(0.3)
    assert sum(n.emission for n in mg.neurons) == pytest.approx(chain.tempo * 1.0)
    assert not chain.run_epoch()  # not due again within the same tempo
    chain.close()


def test_refuses_unregistered_uids_and_unpermitted_validators(devnet_root, tmp_path):
    chain = Devnet.open(devnet_root)
    spec = SubnetSpec.load(devnet_root)
    v0 = spec.wallet(devnet_root, spec.of_role("validator")[0])
    miner = spec.wallet(devnet_root, spec.of_role("miner")[0])
    with pytest.raises(NotRegistered, match="unregistered uids \\[99\\]"):
        chain.set_weights(v0, {99: 1.0})
    with pytest.raises(ChainError, match="no validator permit"):
        chain.set_weights(miner, {2: 1.0})
    stranger = create_wallet(tmp_path / "w", "stranger")
    with pytest.raises(NotRegistered):
        chain.serve(stranger, "127.0.0.1", 1234)
    chain.close()
