"""The gateway's judgement of suspect shards, against a real HTTP peer on 127.0.0.1 that answers
re-checks every way a miner (or the network between) can: only a reply the miner signed, saying the
shard is wrong or gone, counts against a shard, and only three in a row lose it. A version rollout
(426), a clock that drifted (401 stale), a replay (409), a wrong receiver (421), a busy miner (429),
a crash (500), silence, an unsigned or a wrongly signed reply change nothing. And what windows tell
the gateway: a chunk of its own shard wrong or missing makes that shard suspect, nothing else does."""

from __future__ import annotations

import asyncio
import base64
import os

import bittensor as bt
import pytest
from aiohttp import web

from tensorage.chain.port import Metagraph, Neuron
from tensorage.chain.wallets import create_wallet
from tensorage.config import settings_from_namespace
from tensorage.engines.window_checks import RoundOutcome
from tensorage.gateway import Gateway
from tensorage.gateway.repair import LOST_AFTER, recheck
from tensorage.net.client import SignedClient
from tensorage.net.objects import ShardChecked
from tensorage.net.replies import sign_reply
from tensorage.proofs import merkle
from tensorage.storage.layout import Layout

DATA = os.urandom(3 * merkle.CHUNK_BYTES)


def tree():
    b = merkle.MerkleBuilder()
    b.update(DATA)
    return b.finish()


class FakeMiner:
    """Answers ``POST /v1/shards/{id}/check`` the way ``mode`` says."""

    def __init__(self, wallet: bt.Wallet, impostor: bt.Wallet) -> None:
        self.signer = bt.resolve_signer(wallet, role="hotkey")
        self.impostor = bt.resolve_signer(impostor, role="hotkey")
        self.mode = "right"
        self.tree = tree()
        self.asked: list[list[int]] = []

    async def check(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.asked.append(body["chunks"])
        status = {"426": 426, "stale": 401, "replayed": 409, "receiver": 421, "busy": 429, "crash": 500}.get(self.mode)
        if status:
            return web.json_response({"error": self.mode, "message": "no"}, status=status)
        if self.mode == "silent":
            await asyncio.sleep(3)  # past the gateway's re-check timeout (1 s in the test)
        proofs = [DATA[i * merkle.CHUNK_BYTES:(i + 1) * merkle.CHUNK_BYTES] + b"".join(self.tree.path(i))
                  for i in body["chunks"]]
        if self.mode in ("wrong", "unsigned", "impostor"):
            proofs = [bytes([p[0] ^ 1]) + p[1:] for p in proofs]
        reply = ShardChecked(held=self.mode != "gone", chunks=[base64.b64encode(p).decode() for p in proofs])
        raw = reply.model_dump_json().encode()
        nonce, caller = request.headers["X-Bittensor-Nonce"], request.headers["X-Bittensor-Hotkey"]
        headers = {}
        if self.mode != "unsigned":
            signer = self.impostor if self.mode == "impostor" else self.signer
            headers = sign_reply(signer, request.path, nonce, raw, caller)
        return web.Response(body=raw, content_type="application/json", headers=headers)


def neuron(hotkey: str, uid: int, axon: str | None) -> Neuron:
    return Neuron(uid=uid, hotkey=hotkey, coldkey=hotkey, active=True, validator_permit=False, last_update=0,
                  block_at_registration=0, rank=0, trust=0, consensus=0, incentive=0, dividends=0, emission=0,
                  total_stake=0, axon=axon)


@pytest.fixture
async def seam(tmp_path):
    wallets = tmp_path / "w"
    gw_wallet, miner_wallet, impostor = (create_wallet(wallets, n) for n in ("gw", "miner", "impostor"))
    miner = FakeMiner(miner_wallet, impostor)
    app = web.Application()
    app.router.add_post("/v1/shards/{id}/check", miner.check)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    hotkey = miner_wallet.hotkey.ss58_address
    mg = Metagraph(netuid=7, block=100, neurons=[neuron(hotkey, 1, f"127.0.0.1:{port}")])
    settings = settings_from_namespace({"subtensor.network": "devnet", "db_root_path": str(tmp_path / "v")})
    client = SignedClient(gw_wallet)
    gw = Gateway(settings, Layout(settings.db_root), gw_wallet.hotkey.ss58_address, client, lambda: mg)
    gw.recheck_s = 0.0  # every run re-checks (the devnet's is a window)
    gw.db.declare(id="0" * 32, client="c", size=len(DATA), k=1, n=2, block=len(DATA), per_segment=1, segments=1,
                  meta="", expires_at=None)
    gw.db.set_state("0" * 32, "stored")
    row = gw.db.add_shard(object_id="0" * 32, segment=0, idx=0, hash=miner.tree.id_hex, wrap="00" * 16, miner=hotkey,
                          size=len(DATA))
    gw.db.update_shard(row, state="healthy")
    try:
        yield gw, miner, row, hotkey
    finally:
        await client.close()
        gw.close()
        await runner.cleanup()


def state(gw: Gateway, row: int):
    r = gw.db.shard(row)
    return r.state, r.failures


@pytest.mark.parametrize("mode", ["426", "stale", "replayed", "receiver", "busy", "crash", "unsigned", "impostor"])
async def test_nothing_but_a_signed_wrong_answer_counts_against_a_shard(seam, mode):
    gw, miner, row, hotkey = seam
    gw.suspect(gw.db.shard(row), "window: chunk 1 missing", 1)
    miner.mode = mode
    for _ in range(LOST_AFTER + 2):
        assert "0 failed" in await recheck(gw)
    assert state(gw, row) == ("suspect", 0)
    assert all(1 in asked for asked in miner.asked)  # each re-check asked for the chunk the window found bad
    miner.mode = "right"
    assert "1 healthy again" in await recheck(gw)
    assert state(gw, row) == ("healthy", 0)


async def test_a_silent_miner_is_never_judged(seam, monkeypatch):
    from tensorage.gateway import peers

    monkeypatch.setattr(peers, "CHECK_TIMEOUT_S", 1.0)
    gw, miner, row, _ = seam
    gw.suspect(gw.db.shard(row), "window: chunk 0 missing", 0)
    miner.mode = "silent"
    assert "1 without an answer" in await asyncio.wait_for(recheck(gw), 60)
    assert state(gw, row) == ("suspect", 0)


@pytest.mark.parametrize("mode", ["wrong", "gone"])
async def test_three_signed_failures_in_a_row_lose_a_shard_and_a_right_answer_resets_them(seam, mode):
    gw, miner, row, _ = seam
    gw.suspect(gw.db.shard(row), "window: chunk 2 does not match the certified root", 2)
    miner.mode = mode
    await recheck(gw)
    await recheck(gw)
    assert state(gw, row) == ("suspect", 2)
    miner.mode = "right"  # it came back: healthy, and the count starts over
    await recheck(gw)
    assert state(gw, row) == ("healthy", 0)
    gw.suspect(gw.db.shard(row), "again", 2)
    miner.mode = mode
    for _ in range(LOST_AFTER):
        await recheck(gw)
    assert state(gw, row)[0] == "lost"
    assert "signed re-checks in a row failed" in gw.db.shard(row).reason


async def test_windows_make_only_this_gateways_shards_suspect(seam):
    gw, miner, row, hotkey = seam
    other = "5" + "F" * 47
    out = RoundOutcome(uid=1, hotkey=hotkey, result="fail", plots=0, returned=0, expected=0.0, latency_ms=1.0,
                       bad_chunks=[(other, miner.tree.id_hex, 0, "chunk 0 missing")])
    assert gw.window_verdicts([out]) == 0 and state(gw, row) == ("healthy", 0)  # another gateway's shard
    out.bad_chunks = [(gw.hotkey, miner.tree.id_hex, 2, "chunk 2 missing")]
    assert gw.window_verdicts([out]) == 1
    assert state(gw, row) == ("suspect", 0) and gw.db.shard(row).bad_chunk == 2
    timeout = RoundOutcome(uid=1, hotkey=hotkey, result="timeout", plots=0, returned=0, expected=0.0, latency_ms=0)
    gw.window_verdicts([timeout])  # a miner that does not answer is silent, its shards untouched
    assert gw.peers.silent_for(hotkey) >= 0 and gw.peers.of(hotkey).silent_since > 0
    assert state(gw, row) == ("suspect", 0)
