"""Signed HTTP against a real miner server on 127.0.0.1: every bad request is refused with
the right status and a JSON message, and changes nothing."""

from __future__ import annotations

import base64
import json
import time

import aiohttp
import bittensor as bt
import pytest

from tensorage import PROTOCOL_VERSION
from tensorage.chain.devnet import Devnet, SubnetSpec
from tensorage.chain.wallets import create_wallet
from tensorage.config import settings_from_namespace
from tensorage.engines.miner import MinerEngine
from tensorage.events import ChallengeServed, EventBus
from tensorage.net.messages import WindowChallenge

from tensorage.proofs.windows import window_start

from .subnet import Subnet
from .windows import current_window


@pytest.fixture(scope="module")
def allocated(tmp_path_factory):
    root = tmp_path_factory.mktemp("auth") / "devnet"
    subnet = Subnet.create(root, miners=2, validators=1, sizes=(0.03,))
    subnet.allocate_here({"miner-0": 0.03})
    return subnet


@pytest.fixture
async def miner(allocated):
    root = allocated.root
    settings = settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(root),
                                        "wallet.name": "miner-0", "db_root_path": str(allocated.db_root("miner-0")),
                                        "size_in_gb": 0.03})
    spec = SubnetSpec.load(root)
    wallet = spec.wallet(root, next(n for n in spec.nodes if n.name == "miner-0"))
    bus = EventBus()
    engine = MinerEngine(settings, wallet, Devnet.open(root), bus, proof_workers=1)
    await engine.start()
    served: list[ChallengeServed] = []
    bus.subscribe(lambda e: served.append(e) if isinstance(e, ChallengeServed) else None)
    engine.served_events = served
    yield engine
    await engine.stop()


def wallet_of(subnet: Subnet, name: str) -> bt.Wallet:
    spec = subnet.spec
    return spec.wallet(subnet.root, next(n for n in spec.nodes if n.name == name))


def challenge_body(miner: MinerEngine, **changes) -> bytes:
    """A challenge for the current window (one with at least a second left to answer it)."""
    window, beacon, deadline = current_window(miner.chain, miner.profile)
    req = WindowChallenge(window=window, beacon=beacon.hex(), listing=miner.current_listing().digest_hex, deadline=deadline)
    data = req.model_dump()
    data.update(changes)
    return json.dumps(data).encode()


async def send(miner: MinerEngine, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    url = f"http://127.0.0.1:{miner.served.port}{path}"
    async with aiohttp.ClientSession() as s:
        async with s.request(method, url, data=body or None, headers=headers or {}) as r:
            return r.status, await r.json(content_type=None)


def signed(wallet, method, path, body, receiver, **kw) -> dict:
    return bt.http_auth.sign(wallet, method=method, path=path, body=body, receiver_ss58=receiver, **kw)


async def test_a_validator_gets_proofs(miner, allocated):
    v = wallet_of(allocated, "validator-0")
    body = challenge_body(miner)
    status, data = await send(miner, "POST", "/v1/challenge", body, signed(v, "POST", "/v1/challenge", body, miner.hotkey))
    assert status == 200, data
    sent = json.loads(body)
    assert (data["window"], data["listing"]) == (sent["window"], sent["listing"])
    assert len(data["proofs"]) == 4 and all(len(per_plot) == miner.profile.challenges_per_plot
                                            for per_plot in data["proofs"])
    assert sum(len(items) for per_plot in data["proofs"] for items in per_plot) > 0
    assert len(miner.served_events) == 1


@pytest.mark.parametrize("case, status, code, says", [
    ("unsigned", 401, "unauthorized", "sign it with bittensor.http_auth.sign"),
    ("bad_signature", 401, "bad_signature", "does not match the hotkey and body"),
    ("wrong_receiver", 421, "wrong_receiver", "look up this node's hotkey in the metagraph"),
    ("stale", 401, "stale", "check the clock"),
    ("unregistered", 403, "unregistered", "register it"),
    ("miner_challenges", 403, "forbidden", "only validators may call /v1/challenge"),
])
async def test_rejected_and_nothing_changes(miner, allocated, tmp_path, case, status, code, says):
    v = wallet_of(allocated, "validator-0")
    body = challenge_body(miner)
    path = "/v1/challenge"
    if case == "unsigned":
        headers = {}
    elif case == "bad_signature":
        headers = signed(v, "POST", path, body + b" ", miner.hotkey)
    elif case == "wrong_receiver":
        headers = signed(v, "POST", path, body, wallet_of(allocated, "miner-1").hotkey.ss58_address)
    elif case == "stale":
        headers = signed(v, "POST", path, body, miner.hotkey, nonce_ns=time.time_ns() - 60 * 10**9)
    elif case == "unregistered":
        headers = signed(create_wallet(tmp_path / "w", "stranger"), "POST", path, body, miner.hotkey)
    else:
        headers = signed(wallet_of(allocated, "miner-1"), "POST", path, body, miner.hotkey)
    plots_before = dict(miner.plots)
    got, data = await send(miner, "POST", path, body, headers)
    assert (got, data["error"]) == (status, code), data
    assert says in data["message"], data  # the message says what to do, for this refusal
    assert miner.served_events == [] and miner.challenges_served == 0
    assert miner.plots == plots_before


async def test_replayed_request_is_refused_once_used(miner, allocated):
    v = wallet_of(allocated, "validator-0")
    body = challenge_body(miner)
    headers = signed(v, "POST", "/v1/challenge", body, miner.hotkey)
    first, _ = await send(miner, "POST", "/v1/challenge", body, headers)
    again, data = await send(miner, "POST", "/v1/challenge", body, headers)
    assert (first, again, data["error"]) == (200, 409, "replayed")
    assert miner.challenges_served == 1


@pytest.mark.parametrize("case, status, code", [
    ("malformed_json", 400, "bad_request"),
    ("wrong_types", 400, "bad_request"),
    ("unknown_listing", 409, "unknown_listing"),
    ("deadline_passed", 408, "deadline_passed"),
    ("old_protocol", 426, "protocol"),
    ("oversized", 413, "too_large"),
    ("wrong_beacon", 409, "beacon_mismatch"),
    ("future_window", 425, "too_early"),
    ("past_window", 408, "window_over"),
    ("nan_deadline", 400, "bad_request"),
])
async def test_bad_bodies_get_a_clear_error(miner, allocated, case, status, code):
    v = wallet_of(allocated, "validator-0")
    window = current_window(miner.chain, miner.profile, min_windows=3)[0]  # a window two back exists
    body = {  # only the case's own body is built: another's current_window() could outlast this one's deadline
        "malformed_json": lambda: b'{"window": ',
        "wrong_types": lambda: challenge_body(miner, window="four"),
        "unknown_listing": lambda: challenge_body(miner, listing="ab" * 32),
        "deadline_passed": lambda: challenge_body(miner, deadline=time.time() - 1),
        "old_protocol": lambda: challenge_body(miner, protocol=PROTOCOL_VERSION + 1),
        "oversized": lambda: b"x" * (2 << 20),
        "wrong_beacon": lambda: challenge_body(miner, beacon="cd" * 32),
        "future_window": lambda: challenge_body(miner, window=window + 1000),
        "past_window": lambda: challenge_body(miner, window=window - 2, beacon=miner.chain.block_hash(
            window_start(window - 2, miner.profile)).hex()),
        "nan_deadline": lambda: challenge_body(miner, deadline=float("nan")),
    }[case]()
    got, data = await send(miner, "POST", "/v1/challenge", body, signed(v, "POST", "/v1/challenge", body, miner.hotkey))
    assert (got, data["error"]) == (status, code), data
    assert miner.challenges_served == 0


async def test_health_is_public_and_plots_need_a_validator(miner, allocated):
    status, data = await send(miner, "GET", "/v1/health")
    # 4 plots, or 5 when the draws are small (plot sizes vary with the seed; conftest says so)
    assert status == 200 and data["role"] == "miner" and data["plots"] == len(miner.plots) in (4, 5)
    v = wallet_of(allocated, "validator-0")
    status, data = await send(miner, "GET", "/v1/plots", headers=signed(v, "GET", "/v1/plots", b"", miner.hotkey))
    assert status == 200 and data["hotkey"] == miner.hotkey and data["digest"] == miner.current_listing().digest_hex
    assert len(base64.b64decode(data["plots"])) == len(miner.plots) * 33
    m1 = wallet_of(allocated, "miner-1")
    status, data = await send(miner, "GET", "/v1/plots", headers=signed(m1, "GET", "/v1/plots", b"", miner.hotkey))
    assert (status, data["error"]) == (403, "forbidden")
    status, data = await send(miner, "GET", "/v1/nothing-here")
    assert status == 404 and "error" in data  # no route: refused before any signature work


async def test_operator_endpoints_answer_only_the_nodes_own_hotkey(miner, allocated):
    own = wallet_of(allocated, "miner-0")
    v = wallet_of(allocated, "validator-0")
    status, data = await send(miner, "GET", "/v1/state", headers=signed(v, "GET", "/v1/state", b"", miner.hotkey))
    assert (status, data["error"]) == (403, "forbidden") and "own hotkey" in data["message"]
    status, data = await send(miner, "GET", "/v1/state", headers=signed(own, "GET", "/v1/state", b"", miner.hotkey))
    assert status == 200 and data["role"] == "miner" and data["plots_held"] == len(miner.plots)
    path = "/v1/jobs/scrub/pause"
    status, data = await send(miner, "POST", path, headers=signed(own, "POST", path, b"", miner.hotkey))
    assert status == 200 and {j.id: j for j in miner.jobs.state()}["scrub"].paused
    path = "/v1/jobs/nope/pause"
    status, data = await send(miner, "POST", path, headers=signed(own, "POST", path, b"", miner.hotkey))
    assert (status, data["error"]) == (404, "unknown_job")
    body = json.dumps({"size_in_gb": 900000}).encode()
    status, data = await send(miner, "POST", "/v1/share", body, signed(own, "POST", "/v1/share", body, miner.hotkey))
    assert (status, data["error"]) == (400, "does_not_fit") and "does not fit" in data["message"]
    assert miner.settings.size_in_gb == 0.03


async def test_event_stream_replays_history_then_follows(miner, allocated):
    own = wallet_of(allocated, "miner-0")
    url = f"http://127.0.0.1:{miner.served.port}/v1/events"
    async with aiohttp.ClientSession() as s:
        async with s.get(url, headers=signed(own, "GET", "/v1/events", b"", miner.hotkey)) as r:
            assert r.status == 200
            first = json.loads(await r.content.readline())
            assert first["type"] and first["source"] == "miner"
            miner.bus.log("hello from the test", source="miner")
            for _ in range(200):
                line = (await r.content.readline()).strip()
                if line and json.loads(line).get("message") == "hello from the test":
                    break
            else:
                pytest.fail("the live event never arrived")


async def test_a_protocol_1_validator_is_told_to_upgrade(miner, allocated):
    """Protocol 2 changed every message: an older peer gets 426 and what to do, and nothing runs."""
    v = wallet_of(allocated, "validator-0")
    body = challenge_body(miner)
    headers = {**signed(v, "POST", "/v1/challenge", body, miner.hotkey), "X-Tensorage-Protocol": "1"}
    status, data = await send(miner, "POST", "/v1/challenge", body, headers)
    assert (status, data["error"]) == (426, "protocol") and "upgrade" in data["message"]
    assert miner.challenges_served == 0


async def test_a_validator_is_answered_its_snapshot_and_nothing_more(miner, allocated):
    """Two reviews in one. The failed sync: a validator whose syncs failed while the miner plotted
    still holds an old listing as its snapshot, and is answered (it was refused with
    unknown_listing when only two listings were kept). The slot attack: a caller naming listings
    it never fetched, or fetched after the beacon, is refused, so a validator makes the disk look
    a window up for at most the current listing and the two newest it fetched before the beacon."""
    from tensorage.engines.window_answers import listings_answered
    from tensorage.proofs.listing import Listing
    from tensorage.proofs.windows import window_start

    v = wallet_of(allocated, "validator-0")
    me = v.hotkey.ss58_address
    real = miner.current_listing()
    kept = listings_answered(miner.profile)
    assert kept >= 4  # (2 missed syncs + 1) x 5 s + a 1 s margin + a 3 s window, at one change per 5 s
    published = []
    for i in range(kept - 1):  # listings it published in turn while plotting, then its real one again
        entries = [e for j, e in enumerate(real.entries()) if j != i] + [(bytes([i + 1]) * 32, 18)]
        published.append(Listing.from_plots(entries))
        miner.answerer.remember(published[-1])
    miner.answerer.remember(real)
    window, beacon, deadline = current_window(miner.chain, miner.profile, min_left_s=1.5)
    beacon_at = miner.chain.block_timestamp(window_start(window, miner.profile))
    miner.answerer.fetched(me, published[0].digest_hex, at=beacon_at - 14)  # then its syncs failed
    computed = miner.answerer.computed

    async def ask(listing: Listing) -> tuple[int, str | None]:
        body = WindowChallenge(window=window, beacon=beacon.hex(), listing=listing.digest_hex,
                               deadline=deadline).model_dump_json().encode()
        status, data = await send(miner, "POST", "/v1/challenge", body,
                                  signed(v, "POST", "/v1/challenge", body, miner.hotkey))
        return status, data.get("error")

    assert [await ask(listing) for listing in published[1:]] == [(409, "unknown_listing")] * (kept - 2)
    assert await ask(published[0]) == (200, None)   # its snapshot, three listings old
    assert await ask(real) == (200, None)            # the current one
    assert await ask(real) == (200, None)            # asked again: the same answer
    assert miner.answerer.computed - computed == 2

    # it syncs again: the two newest fetches before the beacon count, one after it does not
    miner.answerer.fetched(me, published[1].digest_hex, at=beacon_at - 8)
    miner.answerer.fetched(me, published[2].digest_hex, at=beacon_at - 4)
    miner.answerer.fetched(me, published[3].digest_hex, at=beacon_at + 0.5)
    assert await ask(published[3]) == (409, "unknown_listing")  # fetched once the beacon was known
    assert await ask(published[0]) == (409, "unknown_listing")  # no longer one of its two newest
    assert await ask(published[1]) == (200, None)
    assert await ask(published[2]) == (200, None)
    assert miner.answerer.computed - computed == 4


async def test_strangers_cannot_make_a_node_reload_the_chain_per_request(allocated, tmp_path):
    """The review's stampede: an unregistered caller's requests each asked for a metagraph reload
    (seconds on finney), queued one after the other. Now one reload serves everyone who waited."""
    import asyncio

    from aiohttp import web

    from tensorage.net.auth import PeerDirectory
    from tensorage.net.server import make_app, serve

    chain = Devnet.open(allocated.root)
    loads = 0

    async def slow_load():
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.3)  # a real chain read takes this long, or longer
        return chain.metagraph()

    directory = PeerDirectory(slow_load, min_refresh_s=5.0)
    await directory.refresh()
    node = wallet_of(allocated, "miner-1").hotkey.ss58_address
    app = make_app(node, directory, 7)

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/v1/hello", hello)
    served = await serve(app)
    stranger = create_wallet(tmp_path / "w", "stranger")
    directory._refreshed -= 10  # the copy in hand is old enough to be worth one reload
    try:
        async with aiohttp.ClientSession() as s:
            async def call(i: int) -> int:
                headers = signed(stranger, "GET", "/v1/hello", b"", node)
                async with s.get(f"http://127.0.0.1:{served.port}/v1/hello", headers=headers) as r:
                    return r.status

            statuses = await asyncio.gather(*(call(i) for i in range(40)))
    finally:
        await served.close()
        chain.close()
    assert set(statuses) == {403}
    assert loads == 2  # the first refresh above, and one for all forty strangers


async def test_old_windows_cost_the_miner_nothing(miner, allocated):
    """The review's cache growth: naming old windows one after the other left a beacon cached per
    window (and a row in the devnet chain each). An old window is refused before anything is read."""
    v = wallet_of(allocated, "validator-0")
    window, _, _ = current_window(miner.chain, miner.profile, min_windows=3)
    rows = miner.chain.BlockHashRow.select().count()
    old_windows = range(window - 2, max(-1, window - 42), -1)
    assert len(old_windows) >= 1
    for w in old_windows:
        body = challenge_body(miner, window=w, beacon="00" * 32)
        status, data = await send(miner, "POST", "/v1/challenge", body, signed(v, "POST", "/v1/challenge", body,
                                                                                miner.hotkey))
        assert (status, data["error"]) == (408, "window_over"), (w, data)
    assert len(miner.answerer._beacons) <= 4
    assert miner.chain.BlockHashRow.select().count() <= rows + 1
