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

from . import checks
from .errors import ConfigError

GB = 10**9  # --size_in_gb counts decimal gigabytes, like disk vendors and `df -H`.
GiB = 1024**3


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


# Networks whose nodes all run on this machine: bind loopback and any free port. On every other
# network validators connect from the internet: bind all interfaces on a port a firewall can open.
LOCAL_NETWORKS = ("devnet", "local")
PUBLIC_AXON_PORT = 8091  # the port Bittensor neurons have always defaulted to


class AxonSettings(BaseModel):
    """Where a node listens and what it publishes on chain; ``None`` means the network's default
    (see :attr:`Settings.bind_ip`, :attr:`Settings.bind_port` and ``net.address``)."""

    ip: Optional[str] = None
    port: Optional[int] = Field(default=None, ge=0, le=65535)
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

    @property
    def profile(self) -> NetworkProfile:
        return profile_for(self.subtensor.network)

    @property
    def network(self) -> str:
        return self.subtensor.network

    @property
    def db_root(self) -> Path:
        return checks.db_root(self.db_root_path)

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
    def is_local_network(self) -> bool:
        return self.network in LOCAL_NETWORKS

    @property
    def bind_ip(self) -> str:
        """--axon.ip, else loopback on a local network and every interface on a real one."""
        if self.axon.ip:
            return self.axon.ip
        return "127.0.0.1" if self.is_local_network else "0.0.0.0"

    @property
    def bind_port(self) -> int:
        """--axon.port, else any free port on a local network and 8091 on a real one."""
        if self.axon.port is not None:
            return self.axon.port
        return 0 if self.is_local_network else PUBLIC_AXON_PORT

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
        """Refuse values no disk or machine can honour, with what to use instead (the checks in
        :mod:`tensorage.checks`, shared with the console and the operator endpoint)."""
        for flag, check, value in (("--size_in_gb", checks.size_in_gb, self.size_in_gb),
                                   ("--workers", checks.workers, self.workers),
                                   ("--db_root_path", checks.db_root, self.db_root_path)):
            try:
                check(value)
            except ConfigError as exc:
                raise ConfigError(f"{flag}: {exc}") from None
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

class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (a ConfigError) that says where to look."""

    def error(self, message: str):  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def _flag(parser: argparse._ActionsContainer, name: str, help: str, **kw: Any) -> None:
    parser.add_argument(f"--{name}", dest=name, default=argparse.SUPPRESS, help=help, **kw)


def _switch(parser: argparse._ActionsContainer, name: str, help: str) -> None:
    parser.add_argument(f"--{name}", dest=name, action="store_true", default=argparse.SUPPRESS, help=help)


# Each command takes only the flags it uses (``tensorage status --restart`` is refused, not
# ignored). Names are the ones operators know from the original subnet.
def _storage(g) -> None:
    _flag(g, "db_root_path", "where plots, shards and indexes live (~/tensorage-db)")


def _share(g) -> None:
    _flag(g, "size_in_gb", "disk share in GB (100; a share stored with the node is kept unless this flag "
                           "changes, see docs/operators.md)", type=float)
    _flag(g, "workers", f"parallel plots (CPU count: {os.cpu_count()})", type=int)
    _switch(g, "disable_verify", "skip the sample-challenge check of each new plot")


def _prompt(g) -> None:
    _switch(g, "disable_prompt", "do not ask for confirmation")


def _allocate(g) -> None:
    _switch(g, "validator", "prepare a validator's database instead of plots")
    _switch(g, "restart", "remove every plot and the plot index, then allocate from scratch "
                          "(client shards and validator data are kept)")


def _reallocate(g) -> None:
    _flag(g, "seconds_per_reallocate", "reallocation period (600; devnet 30)", type=int)


def _rounds(g) -> None:
    _flag(g, "seconds_per_weights", "weight-setting period (600; devnet 30)", type=int)
    _flag(g, "seconds_per_round", "proof-round period (120; devnet 10)", type=float)


def _weights_store(g) -> None:
    _switch(g, "no_store_weights", "do not save scores and weights to disk")
    _switch(g, "no_restore_weights", "start from empty scores instead of the saved ones")


def _chain(g) -> None:
    g.add_argument("--subtensor.network", "--network", dest="subtensor.network", default=argparse.SUPPRESS,
                   help="devnet, finney, test, local or ws://host:port (finney)")
    _flag(g, "netuid", "subnet uid (7 on finney, 12 on test)", type=int)


def _wallet(g) -> None:
    _flag(g, "wallet.name", "coldkey name (default)")
    _flag(g, "wallet.hotkey", "hotkey name (default)")
    _flag(g, "wallet.path", "wallet directory (~/.bittensor/wallets)")


def _devnet(g) -> None:
    _flag(g, "devnet.root", "devnet chain, wallets and nodes (~/.tensorage/devnet)")


def _logging(g) -> None:
    _switch(g, "logging.debug", "debug logging")
    _switch(g, "logging.trace", "trace logging (very verbose)")


def _axon(g) -> None:
    _flag(g, "axon.ip", "address to bind (devnet and local: 127.0.0.1; real networks: 0.0.0.0, all interfaces)")
    _flag(g, "axon.port", "port to bind (devnet and local: 0, any free port; real networks: 8091)", type=int)
    _flag(g, "axon.external_ip", "address published on chain for validators to reach (real networks: this "
                                 "machine's public address when it has one; behind NAT, required)")
    _flag(g, "axon.external_port", "port published on chain (the bound one; set it when a router forwards "
                                   "another port)", type=int)


FLAG_GROUPS = {
    "storage": _storage, "share": _share, "prompt": _prompt, "allocate": _allocate, "reallocate": _reallocate,
    "rounds": _rounds, "weights_store": _weights_store, "chain": _chain, "wallet": _wallet, "devnet": _devnet,
    "logging": _logging, "axon": _axon,
}
GROUP_TITLES = {"storage": "disk", "share": "disk", "prompt": "disk", "allocate": "disk", "reallocate": "miner",
                "rounds": "validator", "weights_store": "validator", "chain": "chain and wallet",
                "wallet": "chain and wallet", "devnet": "chain and wallet", "logging": "logging", "axon": "axon"}


def add_flags(parser: argparse.ArgumentParser, *groups: str) -> None:
    """Add the named flag groups (keys of FLAG_GROUPS) to a command."""
    titled: dict[str, argparse._ArgumentGroup] = {}
    for name in groups:
        title = GROUP_TITLES[name]
        group = titled.get(title) or titled.setdefault(title, parser.add_argument_group(title))
        FLAG_GROUPS[name](group)


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """Every flag but the axon's (the console runs any role, so it takes them all)."""
    add_flags(parser, *(g for g in FLAG_GROUPS if g != "axon"))


def add_axon_flags(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, "axon")


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
