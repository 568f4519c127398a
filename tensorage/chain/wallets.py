"""Load an operator's wallet, or make the devnet's wallets offline."""

from __future__ import annotations

from pathlib import Path

import bittensor as bt

from ..config import Settings
from ..errors import WalletError


def wallet_dir(settings: Settings) -> Path:
    """Devnet wallets live in the devnet root unless --wallet.path says otherwise."""
    if settings.network == "devnet" and "path" not in settings.wallet.model_fields_set:
        return settings.devnet_root / "wallets"
    return settings.wallet_path


def load_wallet(settings: Settings) -> bt.Wallet:
    """The wallet named by --wallet.name/--wallet.hotkey, with its hotkey readable."""
    path = wallet_dir(settings)
    wallet = bt.Wallet(name=settings.wallet.name, hotkey=settings.wallet.hotkey, path=str(path))
    try:
        wallet.hotkey  # noqa: B018 - loads the keyfile
        wallet.coldkeypub  # noqa: B018
    except FileNotFoundError:
        raise WalletError(f"wallet {settings.wallet.name}/{settings.wallet.hotkey} not found under {path}: "
                          f"{missing_wallet_hint(settings, wallet)}") from None
    except Exception as exc:
        raise WalletError(f"wallet {settings.wallet.name}/{settings.wallet.hotkey} under {path} cannot be read "
                          f"({exc}): check the key files or regenerate the hotkey with btcli") from None
    return wallet


def missing_wallet_hint(settings: Settings, wallet: bt.Wallet) -> str:
    """The command that makes what is missing, as the btcli installed with bittensor 11 spells it."""
    if settings.network == "devnet" and "path" in settings.wallet.model_fields_set:
        return (f"check --wallet.path (the devnet's wallets are under {settings.devnet_root / 'wallets'}), "
                f"or leave it out")
    if settings.network == "devnet":
        return "run `tensorage devnet init` first"
    where = "" if "path" not in settings.wallet.model_fields_set else f" --wallet-path {settings.wallet.path}"
    names = f"--wallet {settings.wallet.name} --wallet-hotkey {settings.wallet.hotkey}{where}"
    if Path(wallet.coldkeypub_file.path).exists():
        return (f"the coldkey is there but not the hotkey; create it with `btcli wallet new-hotkey {names}` "
                f"(or pass the right --wallet.hotkey)")
    return (f"create it with `btcli wallet create {names}` or pass --wallet.name/--wallet.hotkey/--wallet.path "
            f"of an existing one")


def create_wallet(path: Path, name: str, hotkey: str = "default") -> bt.Wallet:
    """Unencrypted keys for the devnet and tests (never for real funds)."""
    wallet = bt.Wallet(name=name, hotkey=hotkey, path=str(path))
    try:
        wallet.hotkey  # noqa: B018
        wallet.coldkeypub  # noqa: B018
        return wallet
    except FileNotFoundError:
        pass
    wallet.create_new_coldkey(use_password=False, overwrite=True, suppress=True)
    wallet.create_new_hotkey(use_password=False, overwrite=True, suppress=True)
    return wallet
