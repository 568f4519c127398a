"""Every flag and default in one place, and the protocol constants per network.

Flag names are the ones operators know from the original subnet (``--db_root_path``,
``--size_in_gb``, ``--wallet.name`` ...). Dotted flags become nested settings.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, Field, ValidationError

from .errors import ConfigError
from .gateway_config import GatewaySettings

GB = 10**9  # --size_in_gb counts decimal gigabytes, like disk vendors and `df -H`.
GiB = 1024**3
MAX_SIZE_IN_GB = 10**6  # a petabyte: anything above is a typo, not a disk.


@dataclass(frozen=True)
class NetworkProfile:
    """Protocol constants of one network. Validators refuse plots below ``min_k``."""

    name: str
    netuid: Optional[int]
    min_k: int
    max_k: int
    secure: bool
    # A challenge's absolute deadline, counted from when the validator sends it.
    challenge_deadline_s: float
    # Sampled plots per miner per round (at least this many; more for big miners,
    # see ``plots_to_sample``) and derived challenges per sampled plot (J).
    plots_per_round: int
    challenges_per_plot: int
    # How often each plot must be challenged at least, on average (see arithmetic below).
    plot_challenges_per_hour: float
    proof_round_s: int
    sync_s: int
    weights_s: int
    reallocate_s: int
    scrub_s: int
    # Devnet chain clock.
    block_time_s: float = 12.0
    tempo: int = 360
    # Share of the partition kept for client shards (at least; see storage.partition).
    reserve_fraction: float = 0.10


# --- Why min_k = 29 on finney and test -------------------------------------------------
# A plot cannot be faked, only rebuilt: an attacker that stores nothing must build each
# challenged plot inside the deadline. Published GPU plotters build a k=32 plot in ~80-90 s;
# each k below halves the work, so k=31 ~42 s, k=30 ~21 s, k=29 ~10.6 s, k=28 ~5.3 s.
#   * Deadline bound: with an 8 s deadline a single GPU cannot rebuild a k>=29 plot in time
#     (10.6 s / 8 s = 1.3x margin at k=29, 2.6x at k=30, 5.3x at k=31). k=28 (5.3 s) would not.
#   * Cost bound (covers attackers with many GPUs): one rebuild of a k=29 plot costs
#     ~10.6 GPU-s ~= $0.0015 at $0.50/GPU-hour, while storing its 12 GB costs ~$0.00002/hour
#     on a $15/TB-year disk. Challenging every plot at least once an hour makes rebuilding
#     ~75x dearer than storing. Compression that trades disk for GPU (0.04-0.1 GPU-s a
#     lookup, saves <=30 % of a plot) pays 4 lookups x 0.1 GPU-s x $0.50/h ~= $0.00006 per
#     challenge for $0.000006/hour of disk saved: 10x dearer at one challenge per plot-hour.
# Hence PLOT_CHALLENGES_PER_HOUR >= 1. k=29 still leaves the default --size_in_gb 100 a
# useful partition (one k=30 and three k=29 plots, see storage.partition), where k=30 would
# fit only two plots and no mix of sizes.
FINNEY_MIN_K = 29
PLOT_CHALLENGES_PER_HOUR = 1.0

_FINNEY = dict(
    min_k=FINNEY_MIN_K,
    max_k=34,
    secure=True,
    # 4 challenges x ~1 proof x (7 + 64 seeks at ~10 ms) on a hard disk ~= 2.8 s a plot;
    # two plots a round fit in 8 s on one spinning disk.
    challenge_deadline_s=8.0,
    plots_per_round=2,
    challenges_per_plot=4,
    plot_challenges_per_hour=PLOT_CHALLENGES_PER_HOUR,
    proof_round_s=120,
    sync_s=120,
    weights_s=600,
    reallocate_s=600,
    scrub_s=3600,
)

# The devnet plots k=18..20 (0.6-4 s on 2 cores) so a whole subnet is live within a
# minute. An on-demand plotter wins at that size: it is NOT secure and says so.
_DEV = dict(
    min_k=18,
    max_k=20,
    secure=False,
    challenge_deadline_s=2.0,
    plots_per_round=4,
    challenges_per_plot=4,
    plot_challenges_per_hour=PLOT_CHALLENGES_PER_HOUR,
    proof_round_s=10,
    sync_s=10,
    weights_s=30,
    reallocate_s=30,
    scrub_s=120,
    block_time_s=1.0,
    tempo=20,
)

PROFILES: dict[str, NetworkProfile] = {
    "finney": NetworkProfile(name="finney", netuid=7, **_FINNEY),
    "test": NetworkProfile(name="test", netuid=12, **_FINNEY),
    "local": NetworkProfile(name="local", netuid=1, **_DEV),
    "devnet": NetworkProfile(name="devnet", netuid=7, **_DEV),
}

DEVNET_INSECURE_NOTICE = (
    "devnet: plots are k=18-20 so the subnet runs on a laptop; an on-demand plotter can "
    "beat that. This network proves nothing about real capacity."
)


def profile_for(network: str) -> NetworkProfile:
    """The profile of a network name or ws:// endpoint (custom endpoints use finney's rules)."""
    if network in PROFILES:
        return PROFILES[network]
    if network.startswith(("ws://", "wss://")):
        return NetworkProfile(name=network, **{**_FINNEY, "netuid": None})
    raise ConfigError(
        f"unknown network {network!r}: use devnet, finney, test, local or a ws://host:port endpoint"
    )


def plots_to_sample(profile: NetworkProfile, n_plots: int) -> int:
    """Plots to challenge per round so each plot is hit ``plot_challenges_per_hour`` times."""
    rounds_per_hour = 3600.0 / profile.proof_round_s
    needed = math.ceil(n_plots * profile.plot_challenges_per_hour / rounds_per_hour)
    return max(0, min(n_plots, max(profile.plots_per_round, needed)))


# --- settings ---------------------------------------------------------------------------


class WalletSettings(BaseModel):
    name: str = "default"
    hotkey: str = "default"
    path: str = "~/.bittensor/wallets"


class SubtensorSettings(BaseModel):
    network: str = "finney"


class LoggingSettings(BaseModel):
    debug: bool = False
    trace: bool = False


class AxonSettings(BaseModel):
    ip: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    external_ip: Optional[str] = None
    external_port: Optional[int] = Field(default=None, ge=1, le=65535)


class DevnetSettings(BaseModel):
    root: str = "~/.tensorage/devnet"


class Settings(BaseModel):
    """Resolved settings of one run; built from flags by :func:`parse_settings`."""

    db_root_path: str = "~/tensorage-db"
    size_in_gb: float = 100.0
    validator: bool = False
    disable_prompt: bool = False
    disable_verify: bool = False
    restart: bool = False
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1)
    seconds_per_reallocate: Optional[int] = None
    seconds_per_weights: Optional[int] = None
    seconds_per_round: Optional[float] = None
    no_store_weights: bool = False
    no_restore_weights: bool = False
    netuid: Optional[int] = None
    wallet: WalletSettings = WalletSettings()
    subtensor: SubtensorSettings = SubtensorSettings()
    logging: LoggingSettings = LoggingSettings()
    axon: AxonSettings = AxonSettings()
    devnet: DevnetSettings = DevnetSettings()
    gateway: GatewaySettings = GatewaySettings()

    @property
    def profile(self) -> NetworkProfile:
        return profile_for(self.subtensor.network)

    @property
    def network(self) -> str:
        return self.subtensor.network

    @property
    def db_root(self) -> Path:
        return Path(self.db_root_path).expanduser()

    @property
    def wallet_path(self) -> Path:
        return Path(self.wallet.path).expanduser()

    @property
    def devnet_root(self) -> Path:
        return Path(self.devnet.root).expanduser()

    @property
    def size_bytes(self) -> int:
        return int(self.size_in_gb * GB)

    @property
    def resolved_netuid(self) -> int:
        if self.netuid is not None:
            return self.netuid
        if self.profile.netuid is None:
            raise ConfigError(f"network {self.network} has no default subnet: pass --netuid")
        return self.profile.netuid

    @property
    def reallocate_interval(self) -> int:
        return self.seconds_per_reallocate or self.profile.reallocate_s

    @property
    def weights_interval(self) -> int:
        return self.seconds_per_weights or self.profile.weights_s

    @property
    def round_interval(self) -> float:
        return self.seconds_per_round or self.profile.proof_round_s

    def validate_ranges(self) -> "Settings":
        """Refuse values no disk or machine can honour, with what to use instead."""
        if not (self.size_in_gb > 0):
            raise ConfigError(f"--size_in_gb must be positive (got {self.size_in_gb:g}); try --size_in_gb 100")
        if self.size_in_gb > MAX_SIZE_IN_GB:
            raise ConfigError(
                f"--size_in_gb {self.size_in_gb:g} is more than a petabyte; give the share in GB, e.g. --size_in_gb 100"
            )
        if self.workers < 1 or self.workers > 256:
            raise ConfigError(f"--workers must be between 1 and 256 (got {self.workers}); this machine has {os.cpu_count()} CPUs")
        for flag, value in (("--seconds_per_reallocate", self.seconds_per_reallocate),
                            ("--seconds_per_weights", self.seconds_per_weights),
                            ("--seconds_per_round", self.seconds_per_round)):
            if value is not None and value < 1:
                raise ConfigError(f"{flag} must be at least 1 second (got {value})")
        if self.netuid is not None and not (0 <= self.netuid <= 65535):
            raise ConfigError(f"--netuid must be between 0 and 65535 (got {self.netuid})")
        self.profile  # raises ConfigError for an unknown network
        return self


# --- flags ------------------------------------------------------------------------------

_BOOL_FLAGS = {
    "validator": "prepare or run a validator",
    "disable_prompt": "do not ask for confirmation",
    "disable_verify": "skip the sample-challenge check of each new plot",
    "restart": "wipe the database root and allocate from scratch",
    "no_store_weights": "do not save scores and weights to disk",
    "no_restore_weights": "start from empty scores instead of the saved ones",
    "logging.debug": "debug logging",
    "logging.trace": "trace logging (very verbose)",
}


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """The flags shared by every tensorage command, named as in the original subnet."""
    g = parser.add_argument_group("tensorage")
    g.add_argument("--db_root_path", dest="db_root_path", default=argparse.SUPPRESS,
                   help="where plots, shards and indexes live (~/tensorage-db)")
    g.add_argument("--size_in_gb", dest="size_in_gb", type=float, default=argparse.SUPPRESS,
                   help="disk share in GB (100)")
    g.add_argument("--workers", dest="workers", type=int, default=argparse.SUPPRESS,
                   help=f"parallel plots (CPU count: {os.cpu_count()})")
    g.add_argument("--seconds_per_reallocate", dest="seconds_per_reallocate", type=int,
                   default=argparse.SUPPRESS, help="reallocation period (600; devnet 30)")
    g.add_argument("--seconds_per_weights", dest="seconds_per_weights", type=int,
                   default=argparse.SUPPRESS, help="weight-setting period (600; devnet 30)")
    g.add_argument("--seconds_per_round", dest="seconds_per_round", type=float,
                   default=argparse.SUPPRESS, help="proof-round period (120; devnet 10)")
    g.add_argument("--netuid", dest="netuid", type=int, default=argparse.SUPPRESS,
                   help="subnet uid (7 on finney, 12 on test)")
    for flag, text in _BOOL_FLAGS.items():
        g.add_argument(f"--{flag}", dest=flag, action="store_true", default=argparse.SUPPRESS, help=text)
    c = parser.add_argument_group("chain and wallet")
    c.add_argument("--subtensor.network", "--network", dest="subtensor.network", default=argparse.SUPPRESS,
                   help="devnet, finney, test, local or ws://host:port (finney)")
    c.add_argument("--wallet.name", dest="wallet.name", default=argparse.SUPPRESS, help="coldkey name (default)")
    c.add_argument("--wallet.hotkey", dest="wallet.hotkey", default=argparse.SUPPRESS, help="hotkey name (default)")
    c.add_argument("--wallet.path", dest="wallet.path", default=argparse.SUPPRESS,
                   help="wallet directory (~/.bittensor/wallets)")
    c.add_argument("--devnet.root", dest="devnet.root", default=argparse.SUPPRESS,
                   help="devnet chain, wallets and nodes (~/.tensorage/devnet)")


def add_axon_flags(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument_group("axon")
    a.add_argument("--axon.ip", dest="axon.ip", default=argparse.SUPPRESS, help="address to bind (127.0.0.1)")
    a.add_argument("--axon.port", dest="axon.port", type=int, default=argparse.SUPPRESS,
                   help="port to bind (0 = any free port)")
    a.add_argument("--axon.external_ip", dest="axon.external_ip", default=argparse.SUPPRESS,
                   help="address published on chain (the bound one)")
    a.add_argument("--axon.external_port", dest="axon.external_port", type=int, default=argparse.SUPPRESS,
                   help="port published on chain (the bound one)")


def settings_from_namespace(ns: argparse.Namespace | dict[str, Any]) -> Settings:
    """Nest dotted flags (``wallet.name``) and validate everything in one place."""
    flat = vars(ns) if isinstance(ns, argparse.Namespace) else dict(ns)
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        if key.startswith("_") or key in ("command", "func"):
            continue
        head, _, tail = key.partition(".")
        if tail:
            nested.setdefault(head, {})[tail] = value
        elif key in Settings.model_fields:
            nested[key] = value
    try:
        settings = Settings(**nested)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"--{where}: {first['msg']}") from None
    return settings.validate_ranges()
