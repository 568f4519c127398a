"""How a client finds its wallet, its key file and a gateway: shared by `tensorage store | retrieve |
ls | rm` and the console's Objects screen (:mod:`.session`), so both use the same wallet, key file
and gateway for the same flags.

On the devnet the wallet named ``client`` is used unless ``--wallet.name`` says otherwise; the key
file defaults to ``tensorage-client.key`` beside the wallet.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Optional

from ..config import Settings

DEVNET_CLIENT = "client"


def client_settings(settings: Settings) -> Settings:
    """On the devnet, the wallet named ``client`` unless told otherwise."""
    if settings.network == "devnet" and "name" not in settings.wallet.model_fields_set:
        return settings.model_copy(update={"wallet": settings.wallet.model_copy(update={"name": DEVNET_CLIENT})})
    return settings


def key_path(settings: Settings, key_file: Optional[Path] = None) -> Path:
    """``key_file`` if given, else the key file beside the (client) wallet."""
    from ..chain.wallets import wallet_dir
    from .keyfile import default_key_path

    return Path(key_file) if key_file is not None else default_key_path(wallet_dir(settings), settings.wallet.name)


def _wallet_and_metagraph(settings: Settings):
    """Blocking: the wallet (key files) and the chain's metagraph."""
    from ..chain import connect
    from ..chain.wallets import load_wallet

    wallet = load_wallet(settings)
    chain = connect(settings)
    try:
        return wallet, chain.metagraph()
    finally:
        chain.close()


async def connect_client(settings: Settings, key: bytes):
    """The wallet, the chosen gateway (``--gateway.uid``/``--gateway.hotkey``, else the best-staked
    validator that answers) and an :class:`~.api.ObjectClient` bound to it. ``settings`` are the
    client's (:func:`client_settings`). Wallet and chain reads run in a thread."""
    from ..net.client import SignedClient
    from .api import ObjectClient
    from .gateways import pick_gateway

    wallet, mg = await asyncio.to_thread(_wallet_and_metagraph, settings)
    signed = SignedClient(wallet, connections=16)
    try:
        neuron, _ = await pick_gateway(signed, mg, settings.gateway.uid, settings.gateway.hotkey)
    except BaseException:
        await signed.close()
        raise
    return ObjectClient(wallet, key, neuron, signed, own_client=True)
