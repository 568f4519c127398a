"""The miner's listing and ``If-None-Match`` (engines/miner.py handle_plots; the validator sends the
digest it holds, engines/validator.py sync_miner): 304 with the current digest and nothing resent,
200 with the whole listing for a stale or absent one, and a new digest once a plot is removed or
added. A real miner engine on 127.0.0.1 over a plotted devnet, signed requests from its validator."""

from __future__ import annotations

import asyncio
import base64
import time

import aiohttp
import bittensor as bt
import pytest

from tensorage.chain.devnet import Devnet, SubnetSpec
from tensorage.config import settings_from_namespace
from tensorage.engines.miner import MinerEngine
from tensorage.events import EventBus, PlotRemoved
from tensorage.proofs.listing import Listing


def wallet(root, name: str) -> bt.Wallet:
    spec = SubnetSpec.load(root)
    return spec.wallet(root, next(n for n in spec.nodes if n.name == name))


@pytest.fixture
async def miner(plotted_devnet):
    root = plotted_devnet
    settings = settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(root),
                                        "wallet.name": "miner-0", "db_root_path": str(root / "nodes" / "miner-0"),
                                        "size_in_gb": 0.03, "workers": 1})
    engine = MinerEngine(settings, wallet(root, "miner-0"), Devnet.open(root), EventBus(), proof_workers=1)
    await engine.start()
    yield engine
    await engine.stop()


async def get_plots(miner: MinerEngine, validator: bt.Wallet, etag: str | None = None):
    """(status, ETag header, body bytes) of a signed GET /v1/plots."""
    headers = bt.http_auth.sign(validator, method="GET", path="/v1/plots", body=b"", receiver_ss58=miner.hotkey)
    if etag is not None:
        headers["If-None-Match"] = etag
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{miner.served.port}/v1/plots", headers=headers) as r:
            return r.status, r.headers.get("ETag"), await r.read()


def seeds_of(body: bytes) -> set[str]:
    import json

    data = json.loads(body)
    raw = base64.b64decode(data["plots"])
    return {raw[i + 1:i + 33].hex() for i in range(0, len(raw), 33)}


async def changed_listing(miner, validator, old_etag: str, what: str, timeout: float = 60.0):
    """Ask with the old digest until the miner lists something else (it republishes at most once per
    sync period); the timeout only bounds a hung miner."""
    deadline = time.monotonic() + timeout
    while True:
        status, etag, body = await get_plots(miner, validator, old_etag)
        if status != 304:
            return status, etag, body
        assert time.monotonic() < deadline, f"the listing never changed after {what}"
        await asyncio.sleep(0.5)


async def test_if_none_match_answers_304_for_the_current_digest_and_the_listing_for_any_other(miner,
                                                                                            plotted_devnet):
    v = wallet(plotted_devnet, "validator-0")
    status, etag, body = await get_plots(miner, v)
    digest = miner.current_listing().digest_hex
    assert (status, etag) == (200, f'"{digest}"')
    import json

    assert json.loads(body)["digest"] == digest and seeds_of(body) == set(miner.plots)

    status, again, body = await get_plots(miner, v, etag)  # nothing changed: nothing resent
    assert (status, again, body) == (304, etag, b"")

    for stale in (f'"{"00" * 32}"', digest, f'W/"{digest}"', '"*"'):  # another digest, or not the quoted one
        status, tag, body = await get_plots(miner, v, stale)
        assert (status, tag) == (200, etag) and seeds_of(body) == set(miner.plots), stale


async def test_a_removed_and_an_added_plot_change_the_digest(miner, plotted_devnet):
    v = wallet(plotted_devnet, "validator-0")
    assert miner.jobs.pause("reallocate")[0]  # the plot made below is the one this test asks for
    while any(j.running for j in miner.jobs.state()) or miner.allocator.status.busy:
        await asyncio.sleep(0.2)  # a start-up reallocation may still be making a plot: let it land
    _, first, body = await get_plots(miner, v)
    if seeds_of(body) != set(miner.plots):  # listed at most once per sync period: the landed plot too
        _, first, body = await changed_listing(miner, v, first, "the start-up plot landed")
    held = seeds_of(body)
    assert held == set(miner.plots) and len(held) >= 4

    gone = sorted(held)[0]  # what a failed scrub does: forget the plot, say so on the bus
    k = miner.plots[gone].k
    miner.allocator.forget_plot(gone, k)
    miner.bus.publish(PlotRemoved(seed=gone, k=k, reason="test: removed", source=miner.source))
    status, second, body = await changed_listing(miner, v, first, "a plot was removed")
    assert status == 200 and second != first and seeds_of(body) == held - {gone}
    assert (await get_plots(miner, v, second))[0] == 304
    assert (await get_plots(miner, v, first))[0] == 200  # the old digest is stale now

    await miner.reallocate()  # the share has room again: one plot is made and verified
    status, third, body = await changed_listing(miner, v, second, "a plot was added")
    added = seeds_of(body) - (held - {gone})
    assert status == 200 and third not in (first, second) and len(added) == 1 and gone not in added
    assert Listing.from_plots([(bytes.fromhex(s), p.k) for s, p in miner.plots.items()], []).digest_hex == \
        third.strip('"')
    assert (await get_plots(miner, v, third))[0] == 304


async def test_the_validator_asks_with_its_digest_and_keeps_its_listing_on_304(miner, plotted_devnet, tmp_path):
    from tensorage.engines.validator import ValidatorEngine

    settings = settings_from_namespace({"subtensor.network": "devnet", "devnet.root": str(plotted_devnet),
                                        "wallet.name": "validator-0", "db_root_path": str(tmp_path / "v"),
                                        "no_store_weights": True, "seconds_per_round": 3600})
    validator = ValidatorEngine(settings, wallet(plotted_devnet, "validator-0"), Devnet.open(plotted_devnet),
                                EventBus())
    await validator.start()  # its first sync fetched the listing
    try:
        validator.jobs.pause("sync")  # the test's syncs only
        assert miner.jobs.pause("reallocate")[0]
        view = validator.miners[miner.hotkey]
        first = view.latest.listing.digest_hex
        assert first == miner.current_listing().digest_hex

        await validator.sync()  # asked with its digest: 304, nothing re-read, the listing kept
        assert validator._unchanged == [miner.hotkey] and view.latest.listing.digest_hex == first
        assert len(view.seen) == 1 and view.error == ""

        gone = sorted(miner.plots)[0]
        k = miner.plots[gone].k
        miner.allocator.forget_plot(gone, k)
        miner.bus.publish(PlotRemoved(seed=gone, k=k, reason="test: removed", source=miner.source))
        deadline = time.monotonic() + 60
        while view.latest.listing.digest_hex == first:  # the miner republishes once per sync period
            assert time.monotonic() < deadline, "the validator never saw the new listing"
            await asyncio.sleep(0.5)
            await validator.sync()
        assert validator._unchanged == [] and view.latest.listing.digest_hex == miner.current_listing().digest_hex
        assert len(view.latest.listing) == len(miner.plots) and len(view.seen) == 2
    finally:
        await validator.stop()
