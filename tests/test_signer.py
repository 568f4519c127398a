"""Issue 15, the signing service (net/signer.py): a window's requests are signed in a child process.

Its signatures must pass the real verifier (``bittensor.http_auth.verify``, as net/auth.py calls it),
each bound to its own receiver; a signer that is killed is replaced, said in the log, and its batch
is signed anyway: a window is never lost to it."""

from __future__ import annotations

import logging
import os
import signal

import bittensor as bt
import pytest

import tensorage.net.signer as signer_module
from tensorage.chain.wallets import create_wallet
from tensorage.net.auth import ALLOWED_SKEW_S, MAX_AGE_S
from tensorage.net.signer import SignItem, SigningService


def verify(headers: dict[str, str], item: SignItem, store: bt.http_auth.NonceStore) -> str:
    return bt.http_auth.verify(headers, item.body, method=item.method, path=item.path,
                               self_hotkey_ss58=item.receiver, max_age=MAX_AGE_S, allowed_skew=ALLOWED_SKEW_S,
                               nonce_store=store).hotkey_ss58


@pytest.fixture
def miners(tmp_path) -> list[str]:
    return [create_wallet(tmp_path / "wallets", f"m{i}").hotkey.ss58_address for i in range(3)]


async def test_batch_signatures_pass_the_real_verifier_for_their_own_receiver_only(wallet, miners):
    service = SigningService(wallet)
    try:
        items = [SignItem("POST", "/v1/challenge", b'{"window": %d}' % i, miner) for i, miner in enumerate(miners)]
        signed = await service.sign(items)
        assert os.getpid() != await service.pid()  # signed in a child process
        store = bt.http_auth.InMemoryNonceStore(retention=60.0)
        assert [verify(h, item, store) for h, item in zip(signed, items)] == [wallet.hotkey.ss58_address] * 3
        with pytest.raises(bt.http_auth.ReplayedRequest):  # the nonce store still sees a replay
            verify(signed[0], items[0], store)
        fresh = bt.http_auth.InMemoryNonceStore(retention=60.0)
        with pytest.raises(bt.http_auth.WrongReceiver):  # one miner's signature is no good at another
            verify(signed[0], items[1], fresh)
        with pytest.raises(bt.http_auth.BadSignature):  # nor over another body
            verify(signed[0], items[0]._replace(body=b'{"window": 9}'), fresh)
    finally:
        service.close()


async def test_a_killed_signer_is_replaced_and_its_batch_still_signed(wallet, miners, caplog):
    service = SigningService(wallet)
    try:
        first = await service.pid()
        os.kill(first, signal.SIGKILL)
        items = [SignItem("POST", "/v1/challenge", b"{}", miner) for miner in miners]
        with caplog.at_level(logging.ERROR, logger=signer_module.__name__):
            signed = await service.sign(items)
        store = bt.http_auth.InMemoryNonceStore(retention=60.0)
        assert [verify(h, item, store) for h, item in zip(signed, items)] == [wallet.hotkey.ss58_address] * 3
        assert service.restarts == 1 and service.fallbacks == 0
        assert "signer process failed" in caplog.text and "starting a new one" in caplog.text
        assert await service.pid() not in (first, os.getpid())
    finally:
        service.close()


async def test_a_signer_that_cannot_start_again_falls_back_to_signing_here(wallet, miners, caplog, monkeypatch):
    service = SigningService(wallet)
    try:
        os.kill(await service.pid(), signal.SIGKILL)

        def no_pool(workers: int):
            raise OSError("no processes left")

        monkeypatch.setattr(signer_module, "child_pool", no_pool)
        items = [SignItem("POST", "/v1/challenge", b"{}", miner) for miner in miners]
        with caplog.at_level(logging.ERROR, logger=signer_module.__name__):
            signed = await service.sign(items)
        store = bt.http_auth.InMemoryNonceStore(retention=60.0)
        assert [verify(h, item, store) for h, item in zip(signed, items)] == [wallet.hotkey.ss58_address] * 3
        assert service.restarts == 2 and service.fallbacks == 1
        assert "signing this batch in the node itself" in caplog.text
    finally:
        service.close()
