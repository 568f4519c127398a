"""The chain's clock as a real subnet has it: a miner's node a block behind, a miner that says
425, a beacon block a fork replaces, a validator whose head lags. A real miner server and a
real validator engine on one devnet; the chain's lag and fork are the only things made up."""

from __future__ import annotations

import asyncio
import time

import pytest

from tensorage.chain.devnet import Devnet
from tensorage.config import settings_from_namespace
from tensorage.engines.miner import MinerEngine
from tensorage.engines.validator import ValidatorEngine
from tensorage.engines.window_answers import BLOCK_WAIT_BLOCKS
from tensorage.engines.window_checks import MinerView, SeenListing
from tensorage.errors import BlockNotYet
from tensorage.events import ChallengeResult, EventBus
from tensorage.net.errors import reject
from tensorage.net.messages import WindowChallenge
from tensorage.proofs.listing import Listing
from tensorage.proofs.windows import window_of, window_start

from .subnet import Subnet
from .test_auth import send, signed, wallet_of


class LaggingChain:
    """A devnet seen through a node ``lag_s`` seconds behind: blocks arrive late, nothing else."""

    def __init__(self, chain: Devnet, lag_s: float) -> None:
        self._chain, self.lag_s = chain, lag_s
        self.network, self.netuid = chain.network, chain.netuid

    def block(self) -> int:
        return int((time.time() - self.lag_s - self._chain._genesis) / self._chain.seconds_per_block)

    def _made(self, block: int) -> None:
        if block > self.block():
            raise BlockNotYet(f"block {block} has not reached this node yet")

    def block_timestamp(self, block: int) -> float:
        self._made(block)
        return self._chain.block_timestamp(block)

    def block_hash(self, block: int) -> bytes:
        self._made(block)
        return self._chain.block_hash(block)

    def __getattr__(self, name):
        return getattr(self._chain, name)


class TooEarlyOnce(MinerEngine):
    """An honest miner whose chain node is far behind at each window's first request (or an older
    release that refuses instead of waiting): 425 once a window, then the answer."""

    refused: set[int]

    async def window_answer(self, req: WindowChallenge):
        if req.window not in self.refused:
            self.refused.add(req.window)
            reject(425, "too_early", f"window {req.window}: this node has not seen its first block yet")
        return await super().window_answer(req)


@pytest.fixture(scope="module")
def allocated(tmp_path_factory):
    root = tmp_path_factory.mktemp("clock") / "devnet"
    subnet = Subnet.create(root, miners=1, validators=1, sizes=(0.03,))
    subnet.allocate_here({"miner-0": 0.03})
    return subnet


def _miner(subnet: Subnet, cls=MinerEngine, chain=None) -> MinerEngine:
    settings = settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(subnet.root),
                                        "wallet.name": "miner-0", "db_root_path": str(subnet.db_root("miner-0")),
                                        "size_in_gb": 0.03})
    return cls(settings, wallet_of(subnet, "miner-0"), chain or Devnet.open(subnet.root), EventBus(), proof_workers=1)


def _validator(subnet: Subnet, tmp_path, bus: EventBus, every_window: bool = False) -> ValidatorEngine:
    """A validator whose own round job stays out of the way (the tests call its rounds)."""
    flags = {} if every_window else {"seconds_per_round": 3600}
    settings = settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(subnet.root),
                                        "wallet.name": "validator-0", "db_root_path": str(tmp_path / "v"),
                                        "no_store_weights": True, **flags})
    return ValidatorEngine(settings, wallet_of(subnet, "validator-0"), Devnet.open(subnet.root), bus)


async def _next_window_start(chain: Devnet, profile) -> int:
    """Wait for a window to begin; return its first block (time left: the whole deadline)."""
    window = window_of(chain.block(), profile) + 1
    start = window_start(window, profile)
    await asyncio.sleep(max(0.0, chain._genesis + start * chain.seconds_per_block - time.time()) + 0.02)
    return start


async def test_a_miner_a_block_behind_waits_for_the_block_and_answers(allocated):
    """Its node is 0.8 s (most of a devnet block) behind: at the window's first instant it has not
    seen the beacon block. It waits, checks the beacon against its own chain, and answers in time.
    It used to answer 425 too_early, and no validator asked again."""
    real = Devnet.open(allocated.root)
    miner = _miner(allocated, chain=LaggingChain(real, lag_s=0.8))
    await miner.start()
    try:
        v = wallet_of(allocated, "validator-0")
        await send(miner, "GET", "/v1/plots", b"", signed(v, "GET", "/v1/plots", b"", miner.hotkey))
        start = await _next_window_start(real, miner.profile)
        window = window_of(start, miner.profile)
        deadline = real.block_timestamp(start) + miner.profile.challenge_deadline_s

        async def ask(beacon: bytes, until: float = deadline):
            body = WindowChallenge(window=window, beacon=beacon.hex(), listing=miner.current_listing().digest_hex,
                                   deadline=until).model_dump_json().encode()
            return await send(miner, "POST", "/v1/challenge", body, signed(v, "POST", "/v1/challenge", body,
                                                                            miner.hotkey))

        beacon = real.block_hash(start)
        # at the same instant: a hostile validator with its own beacon, one with a deadline 0.2 s away
        # (it must not cut the shared wait short for the others), and an honest one
        forged, hurried, honest = await asyncio.gather(ask(b"\x07" * 32), ask(beacon, time.time() + 0.2),
                                                       ask(beacon))
        assert forged[0] == 409 and forged[1]["error"] == "beacon_mismatch"  # checked against its own chain
        assert hurried[0] == 425 and hurried[1]["error"] == "too_early"
        assert honest[0] == 200, honest
        assert time.time() - real.block_timestamp(start) >= 0.7  # it waited for the block to check it
        assert time.time() < deadline
    finally:
        await miner.stop()
        real.close()


async def test_a_miner_too_far_behind_is_told_to_check_its_chain(allocated):
    """Waiting is bounded: a node two deadlines behind answers 425 and names the cause."""
    real = Devnet.open(allocated.root)
    miner = _miner(allocated, chain=LaggingChain(real, lag_s=BLOCK_WAIT_BLOCKS * real.seconds_per_block + 1.0))
    await miner.start()
    try:
        v = wallet_of(allocated, "validator-0")
        start = await _next_window_start(real, miner.profile)
        body = WindowChallenge(window=window_of(start, miner.profile), beacon=real.block_hash(start).hex(),
                               listing=miner.current_listing().digest_hex,
                               deadline=real.block_timestamp(start) + miner.profile.challenge_deadline_s
                               ).model_dump_json().encode()
        status, data = await send(miner, "POST", "/v1/challenge", body, signed(v, "POST", "/v1/challenge", body,
                                                                                miner.hotkey))
        assert status == 425 and data["error"] == "too_early" and "chain connections" in data["message"]
    finally:
        await miner.stop()
        real.close()


async def _usable(validator: ValidatorEngine) -> None:
    """Sync until the miner's listing is past the margin (it then counts for the next window)."""
    await validator.sync()
    view = next(iter(validator.miners.values()))
    assert view.latest is not None, view.error
    margin_s = validator.profile.listing_margin_blocks * validator.chain.block_time()
    await asyncio.sleep(max(0.0, view.latest.seen_at + margin_s + 0.05 - time.time()))


async def test_a_425_is_asked_again_inside_the_deadline(allocated, tmp_path):
    bus = EventBus()
    results: list[ChallengeResult] = []
    bus.subscribe(lambda e: results.append(e) if isinstance(e, ChallengeResult) else None)
    miner = _miner(allocated, cls=TooEarlyOnce)
    miner.refused = set()
    validator = _validator(allocated, tmp_path, bus)
    await miner.start()
    await validator.start()
    try:
        await _usable(validator)
        await _next_window_start(validator.chain, validator.profile)
        summary = await validator.proof_round()
        for _ in range(50):  # judged once the beacon block is settle_blocks deep
            if results:
                break
            await asyncio.sleep(0.2)
            summary = await validator.proof_round()
        assert results, summary
        assert miner.refused, "the miner never said 425: the test proves nothing"
        assert [r.result for r in results] == ["pass"], [(r.result, r.detail) for r in results]
    finally:
        await validator.stop()
        await miner.stop()


async def test_a_window_whose_beacon_block_a_fork_replaced_is_void_for_every_miner(allocated, tmp_path):
    """The first window is judged as usual. The second one's beacon block is replaced after the
    miner answered: the validator notices when it settles the window and records nothing, neither
    a pass nor a fail. A lagging head does not make it look again in a tight loop."""
    bus = EventBus()
    results: list[ChallengeResult] = []
    bus.subscribe(lambda e: results.append(e) if isinstance(e, ChallengeResult) else None)
    miner = _miner(allocated)
    validator = _validator(allocated, tmp_path, bus)
    chain: Devnet = validator.chain  # type: ignore[assignment]
    await miner.start()
    await validator.start()
    try:
        await _usable(validator)

        async def one_window(fork: bool) -> int:
            start = await _next_window_start(chain, validator.profile)
            await validator.proof_round()
            assert validator._pending and validator._pending[-1].start == start
            if fork:
                chain.reorganise(start)
            while chain.block() < start + validator.profile.settle_blocks:
                await asyncio.sleep(0.1)
            await validator._settle(chain.block())
            return window_of(start, validator.profile)

        kept = await one_window(fork=False)
        assert [r.result for r in results if r.window == kept] == ["pass"]
        void = await one_window(fork=True)
        assert validator.windows_void == 1
        assert all(r.window != void for r in results)
        assert validator.snapshot()["windows_void"] == 1
    finally:
        await validator.stop()
        await miner.stop()


async def test_a_lagging_head_never_schedules_the_round_into_the_past(allocated, tmp_path):
    validator = _validator(allocated, tmp_path, EventBus(), every_window=True)
    moved: list[float] = []

    class Jobs:
        def has(self, job_id):
            return True

        def reschedule(self, job_id, at):
            moved.append(at)

    validator.jobs = Jobs()  # type: ignore[assignment]
    now = time.time()
    validator._align_rounds(now - 100.0)  # a window that started long ago: its successor is past too
    validator._align_rounds(None)         # the window was checked already: the head lags
    validator._align_rounds(now)          # the usual case: just after the next window begins
    assert all(at > now for at in moved)
    assert moved[0] - now < validator._block_s and moved[1] - now < validator._block_s
    assert moved[2] == pytest.approx(now + validator.window_s, abs=0.2)


def test_the_listing_margin_holds_when_the_validators_own_chain_lags():
    """A validator whose RPC is 2 blocks behind read head 97 when a listing arrived 0.5 s after
    beacon block 100 was made (the miner had seen the beacon). Compared with its head, the listing
    looked 3 blocks old and counted; compared with the beacon block's time, it does not."""
    block_s, margin_blocks, start = 12.0, 1, 100
    beacon_at = start * block_s
    honest = SeenListing(Listing.from_plots([(b"\x01" * 32, 29)]), seen_block=96, seen_at=beacon_at - 13.0)
    chosen = SeenListing(Listing.from_plots([(b"\x02" * 32, 29)]), seen_block=97, seen_at=beacon_at + 0.5)
    view = MinerView(neuron=None, seen=[honest, chosen])  # type: ignore[arg-type]
    assert chosen.seen_block + margin_blocks < start  # the old rule took it
    assert view.listing_for(beacon_at, margin_blocks * block_s) is honest
    assert view.listing_for(beacon_at + 13.0, margin_blocks * block_s) is chosen  # a window later it counts
