"""Every flag and default in one place, and the protocol constants per network.

Flag names are the ones operators know from the original subnet (``--db_root_path``,
``--size_in_gb``, ``--wallet.name`` ...). Dotted flags become nested settings.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, Field, ValidationError

from . import checks
from .errors import ConfigError
from .gateway_config import GatewaySettings

GB = 10**9  # --size_in_gb counts decimal gigabytes, like disk vendors and `df -H`.
GiB = 1024**3


@dataclass(frozen=True)
class NetworkProfile:
    """Protocol constants of one network: every miner and validator on it must agree on them.

    Proof rounds run in windows of ``window_blocks`` blocks. A window's challenge comes from
    the hash of its first block (nobody knows it before that block), each miner's sample of
    plots is derived from it, the miner answers once per window and every validator checks
    that same answer (docs/proofs.md).
    """

    name: str
    netuid: Optional[int]
    min_k: int
    max_k: int
    secure: bool
    # An answer must arrive within this many seconds of the window's first block.
    challenge_deadline_s: float
    # Blocks per window, and the nominal block time the rate arithmetic assumes.
    window_blocks: int
    block_time_s: float
    # Derived challenges per sampled plot (J).
    challenges_per_plot: int
    # Network-wide rate: sampled plots per plot-hour (see the arithmetic below).
    plot_challenges_per_hour: float
    # Small miners: at least this many plots a window, so they build evidence fast enough.
    min_sample_plots: int
    # What one answer may carry (its size is bounded by it), and what one listing may hold.
    max_sample_plots: int
    max_listed_plots: int
    # A listing counts for a window only if a validator saw it this many blocks before the
    # window's first block (so it cannot have been chosen knowing the beacon).
    listing_margin_blocks: int
    # A window is judged once its beacon block has this many blocks on top of it; if the chain
    # then has another hash for it (a fork), the window is void for every miner. The beacon
    # itself must be the window's first block: the deadline counts from the moment the beacon
    # is public, and a beacon d blocks deep would give a plot rebuilder d block times more.
    # finney: 2 blocks (24 s) covers Aura's one-block forks and GRANDPA's usual finality lag;
    # a window is 3 blocks, so each verdict is recorded by the next window's round.
    settle_blocks: int
    # Half of a window's evidence is forgotten after this many windows.
    half_life_windows: int
    # Client shards (protocol 3, docs/proofs.md): chunks a window asks per gateway whose
    # certificates a listing carries, certificates one listing may hold, and a certificate's life.
    chunks_per_gateway: int
    max_listed_shards: int
    cert_lifetime_blocks: int   # a certificate counts until this many blocks after it was signed
    cert_renew_blocks: int      # the gateway renews a live object's certificate with this many left
    cert_grace_blocks: int      # a miner keeps an expired certificate's shard this long before deleting it
    sync_s: int
    weights_s: int
    reallocate_s: int
    scrub_s: int
    tempo: int = 360
    # Share of the partition kept for client shards (at least; see storage.partition).
    reserve_fraction: float = 0.10

    @property
    def window_s(self) -> float:
        """Nominal seconds per window (the chain's real block time may differ a little)."""
        return self.window_blocks * self.block_time_s

    @property
    def sample_fraction(self) -> float:
        """Probability that a given plot is sampled in one window, from the network-wide rate."""
        return min(1.0, self.plot_challenges_per_hour * self.window_s / 3600.0)


# --- Why min_k = 29 on finney and test -------------------------------------------------
# A plot cannot be faked, only rebuilt: an attacker that stores nothing must build each
# challenged plot inside the deadline. Published GPU plotters build a k=32 plot in ~80-90 s;
# each k below halves the work, so k=31 ~42 s, k=30 ~21 s, k=29 ~10.6 s, k=28 ~5.3 s.
#   * Deadline bound: with an 8 s deadline a single GPU cannot rebuild a k>=29 plot in time
#     (10.6 s / 8 s = 1.3x margin at k=29, 2.6x at k=30, 5.3x at k=31). k=28 (5.3 s) would not.
# k=29 still leaves the default --size_in_gb 100 a useful partition (one k=30 and three k=29
# plots, see storage.partition), where k=30 would fit only two plots and no mix of sizes.
FINNEY_MIN_K = 29

# --- Why 3-block windows and at most 256 sampled plots: a disk's burst -------------------
# The average budget above is not enough: a window's sampled lookups arrive at once and must fit
# the deadline on the disk that holds them. A sampled plot costs ~10 + 67 x P random reads, P ~
# Poisson(0.949) proofs (~77 on average), at ~120 random reads/s on a hard disk; the budget is
# half the deadline (4 s = 480 reads) on average and the whole deadline at the 99th percentile.
# Plots sampled per disk and window = ceil(plots x 0.3/h x window_s / 3600), at least 2:
#                       25 blocks (300 s, before)        3 blocks (36 s, now)
#   4 TB  k=29 (315)    8 plots  4.9 s / p99  9.0 s      2 plots  1.2 s / p99 3.5 s
#   10 TB k=29 (789)   20 plots 12.3 s / p99 18.4 s      3 plots  1.8 s / p99 4.2 s
#   20 TB k=29 (1578)  40 plots 24.5 s / p99 32.9 s      5 plots  3.1 s / p99 6.0 s
#   20 TB k=32 (179)    5 plots  3.1 s / p99  6.0 s      2 plots  1.2 s / p99 3.5 s
# (`python -m benchmarks.bench_disk_budget` prints this table and the emulated seconds.) 4 blocks
# (48 s) would give the 20 TB disk 7 plots, 4.3 s: over half the deadline. So the window shrinks
# and the per-plot rate stays 0.3/h (the cost bound below still holds); small miners are sampled
# more often than the rate (2 plots a window: 200 an hour), which costs them ~4 reads/s.
# Shards add 2 reads a chunk, 4 chunks per gateway: 8 reads (0.07 s) a gateway.
# max_sample_plots: the largest listing (65,536 k=29 plots, 830 TB over ~42 disks) draws
# ceil(65,536 x 0.003) = 197 plots a window; 256 bounds every answer at 256 x 6 proofs x 544 hex
# chars ~= 0.84 MB (4,096 allowed 13.4 MB answers no disk could look up in time).

# --- Why 0.3 challenges per plot-hour, one derived challenge each ------------------------
# Cost bound (covers attackers with many GPUs): one rebuild of a k=29 plot costs ~10.6 GPU-s
# ~= $0.0015 at $0.50/GPU-hour; storing its 12.7 GB costs ~$0.000022/hour on a $15/TB-year
# disk. An on-demand attacker pays a rebuild per challenge: at r challenges per plot-hour
# that is r x $0.0015/h, so storing is cheaper once r > 0.0148/h (break-even). At r = 0.3
# rebuilding costs 20x storing.
# Disk bound: the rate is network-wide (one shared challenge per window; the miner answers
# once whatever the number of validators). A qualities lookup costs ~10 random reads and a
# full proof ~67 (~1 proof per challenge): ~77 reads a challenge. 20 TB of k=29 plots is
# ~1,580 plots; 1,580 x 0.3 x 77 / 3600 ~= 10 reads/s, ~8 % of one hard disk (~120 reads/s).
# `python -m benchmarks.bench_disk_budget` counts it from the lookups the protocol triggers.
# Residual: plot compression that trades <=30 % of disk for 0.04-0.1 GPU-s a lookup pays
# 0.3 x 2 lookups x 0.04-0.1 GPU-s x $0.50/h ~= $0.000003-0.000008 per plot-hour for
# ~$0.0000065 of disk saved: about break-even at this rate (docs/proofs.md). A higher rate
# would price it out but costs every honest hard disk its I/O; the rate is a protocol
# constant and can move with a protocol version.
PLOT_CHALLENGES_PER_HOUR = 0.3

_FINNEY = dict(
    min_k=FINNEY_MIN_K,
    max_k=34,
    secure=True,
    # The fastest rebuild of one plot bounds it (k=29: ~10.6 s on a GPU, see FINNEY_MIN_K); a disk's
    # sampled lookups take at most half of it on average (the burst table above).
    challenge_deadline_s=8.0,
    window_blocks=3,         # 36 s at 12 s blocks (25 before: 300 s, a 40-plot burst)
    block_time_s=12.0,
    challenges_per_plot=1,
    plot_challenges_per_hour=PLOT_CHALLENGES_PER_HOUR,
    min_sample_plots=2,      # 200 challenges an hour for the smallest miner
    max_sample_plots=256,    # 256 x 6 proofs of 544 hex chars: an answer stays under 0.9 MB
    max_listed_plots=65536,  # 830 TB of k=29 plots under one hotkey; a listing under 3 MB
    listing_margin_blocks=1,
    settle_blocks=2,
    half_life_windows=600,   # 6 hours of 36 s windows: ~1,200 challenges of evidence for the smallest miner
    # 4 chunks of 16 KiB per gateway a window: a miner missing a fraction d of a gateway's shard bytes
    # keeps a window with probability (1-d)^4 <= 1-d, and a failed window credits nothing at all
    # (plots included), so holding part of a shard is a losing bet. Disk: 2 random reads a chunk
    # (the sidecar tree, the chunk), 8 a gateway, ~0.1 s of a hard disk's burst each.
    # Answer: a 16 KiB chunk and <= 12 hashes, in base64: ~22 KB, so at most 64 gateways x 4 chunks
    # add ~5.7 MB to the bound a validator reads (one gateway: ~90 KB).
    chunks_per_gateway=4,
    max_listed_shards=16384,  # 152 bytes each: 2.5 MB of certificates; 1 TiB of 64 MiB shards
    cert_lifetime_blocks=7200,  # 24 h at 12 s blocks
    cert_renew_blocks=3600,     # renewed with 12 h left: a gateway down for less costs its miners nothing
    cert_grace_blocks=50400,    # 7 days after expiry before a miner may delete the bytes
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
    window_blocks=3,
    block_time_s=1.0,
    challenges_per_plot=4,
    plot_challenges_per_hour=PLOT_CHALLENGES_PER_HOUR,
    min_sample_plots=4,
    max_sample_plots=1024,
    max_listed_plots=65536,
    listing_margin_blocks=1,
    settle_blocks=2,
    half_life_windows=24,
    chunks_per_gateway=4,
    max_listed_shards=4096,
    cert_lifetime_blocks=600,   # 10 minutes of 1 s blocks
    cert_renew_blocks=300,
    cert_grace_blocks=600,
    sync_s=5,                 # metagraph and listings: a devnet's few nodes follow each other quickly
    weights_s=30,
    reallocate_s=30,
    scrub_s=120,
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


# --- settings ---------------------------------------------------------------------------


class WalletSettings(BaseModel):
    name: str = "default"
    hotkey: str = "default"
    path: str = "~/.bittensor/wallets"


class SubtensorSettings(BaseModel):
    network: str = "finney"


LOG_FORMATS = ("rich", "json")


class LoggingSettings(BaseModel):
    debug: bool = False
    trace: bool = False
    format: Literal["rich", "json"] = "rich"  # json: one object a line, for log shippers (logs.py)
    file: Optional[str] = None  # also write the log here, rotated at max_mb and keeping `backups` old files
    max_mb: float = Field(default=50.0, gt=0)
    backups: int = Field(default=5, ge=0, le=1000)


# Metrics (tensorage/metrics/): off on local networks, whose nodes bind any free port and run many to a
# machine; on real networks on loopback at the axon's port + METRICS_PORT_OFFSET (9091 beside the default
# 8091): two nodes on one machine already need two axon ports, so their metrics ports differ too, and
# loopback exposes nothing to the internet (a Prometheus on the machine, or an SSH tunnel, scrapes it).
METRICS_PORT_OFFSET = 1000


class MetricsSettings(BaseModel):
    host: str = "127.0.0.1"
    port: Optional[int] = Field(default=None, ge=0, le=65535)  # None: the network's default (see above)
    disable: bool = False


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

    db_root_path: str = "~/tensorage-db"  # the first disk: it also keeps the node-wide state
    more_db_root_paths: list[str] = []  # the other disks (``--db_root_path A B C``: B and C)
    size_in_gb: float = 100.0
    validator: bool = False
    disable_prompt: bool = False
    disable_verify: bool = False
    restart: bool = False
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1)
    proof_workers: Optional[int] = None  # proof lookup processes; None: one per disk
    seconds_per_reallocate: Optional[int] = None
    max_shard_fraction: float = Field(default=1.0, ge=0.0, le=1.0)  # of the share client shards may take
    seconds_per_weights: Optional[int] = None
    seconds_per_round: Optional[float] = None
    no_store_weights: bool = False
    no_restore_weights: bool = False
    netuid: Optional[int] = None
    wallet: WalletSettings = WalletSettings()
    subtensor: SubtensorSettings = SubtensorSettings()
    logging: LoggingSettings = LoggingSettings()
    axon: AxonSettings = AxonSettings()
    metrics: MetricsSettings = MetricsSettings()
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
        return checks.db_root(self.db_root_path)

    @property
    def db_roots(self) -> list[Path]:
        """Every disk, the first (the node's home: indexes, keys, shards, node.json) first."""
        return [self.db_root] + [checks.db_root(p) for p in self.more_db_root_paths]

    @property
    def proof_processes(self) -> int:
        """--proof_workers, else one lookup process per disk (a disk head serves one lookup at a time)."""
        return max(1, self.proof_workers or len(self.db_roots))

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
    def metrics_port(self) -> Optional[int]:
        """Where this node serves Prometheus metrics: --metrics.port; else none on a local network and
        the axon's port + 1000 on a real one (any free port when the axon's is); None: not served."""
        if self.metrics.disable:
            return None
        if self.metrics.port is not None:
            return self.metrics.port
        if self.is_local_network:
            return None
        axon = self.bind_port
        return axon + METRICS_PORT_OFFSET if axon and axon + METRICS_PORT_OFFSET <= 65535 else 0

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
    def round_interval(self) -> Optional[float]:
        """How often this validator checks a window; None: every window."""
        return self.seconds_per_round

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
        checks.distinct_roots(self.db_roots)
        if self.proof_workers is not None and not (1 <= self.proof_workers <= 256):
            raise ConfigError(f"--proof_workers must be between 1 and 256 (got {self.proof_workers}); leave it out "
                              f"for one per disk")
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
    _flag(g, "db_root_path", "where plots, shards and indexes live (~/tensorage-db); several directories, one "
                             "per disk, spread the plots over them (the first keeps indexes, keys, shards and "
                             "node.json; see docs/operators.md)", nargs="+", metavar="DIR")


def _home(g) -> None:
    """One --db_root_path for commands that use only the node's home directory (a gateway's custody):
    several would swallow the command's own path argument."""
    _flag(g, "db_root_path", "the node's database directory (~/tensorage-db; with several disks, the first)",
          metavar="DIR")


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
    _flag(g, "max_shard_fraction", "share of the disk share client shards may take, plots giving way to them "
                                   "(1: all of it; 0: plots only)", type=float)
    _flag(g, "proof_workers", "proof lookup processes (one per --db_root_path disk: lookups on one disk queue, "
                              "disks run in parallel)", type=int)


def _rounds(g) -> None:
    _flag(g, "seconds_per_weights", "weight-setting period (600; devnet 30)", type=int)
    _flag(g, "seconds_per_round", "check a proof window at most this often (every window: 36 s on finney; devnet 3 s)",
          type=float)


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
    _flag(g, "logging.format", "rich (for people) or json (one object a line, for pm2, systemd and log shippers)",
          choices=LOG_FORMATS)
    _flag(g, "logging.file", "also write the log to this file, rotated (see --logging.max_mb, --logging.backups)",
          metavar="PATH")
    _flag(g, "logging.max_mb", "rotate --logging.file at this size in MB (50)", type=float)
    _flag(g, "logging.backups", "rotated files kept beside --logging.file (5; 0: never rotate, for logrotate)",
          type=int)


def _metrics(g) -> None:
    _flag(g, "metrics.port", f"serve Prometheus metrics on this port (devnet and local: off; real networks: the "
                             f"axon port + {METRICS_PORT_OFFSET}, 9091; 0: any free port, shown by status)", type=int)
    _flag(g, "metrics.host", "address the metrics port binds (127.0.0.1; 0.0.0.0 only behind a firewall)")
    _switch(g, "metrics.disable", "serve no metrics")


def _axon(g) -> None:
    _flag(g, "axon.ip", "address to bind (devnet and local: 127.0.0.1; real networks: 0.0.0.0, all interfaces)")
    _flag(g, "axon.port", "port to bind (devnet and local: 0, any free port; real networks: 8091)", type=int)
    _flag(g, "axon.external_ip", "address published on chain for validators to reach (real networks: this "
                                 "machine's public address when it has one; behind NAT, required)")
    _flag(g, "axon.external_port", "port published on chain (the bound one; set it when a router forwards "
                                   "another port)", type=int)


FLAG_GROUPS = {
    "storage": _storage, "home": _home, "share": _share, "prompt": _prompt, "allocate": _allocate, "reallocate": _reallocate,
    "rounds": _rounds, "weights_store": _weights_store, "chain": _chain, "wallet": _wallet, "devnet": _devnet,
    "logging": _logging, "axon": _axon, "metrics": _metrics,
}
GROUP_TITLES = {"storage": "disk", "home": "disk", "share": "disk", "prompt": "disk", "allocate": "disk", "reallocate": "miner",
                "rounds": "validator", "weights_store": "validator", "chain": "chain and wallet",
                "wallet": "chain and wallet", "devnet": "chain and wallet", "logging": "logging", "axon": "axon",
                "metrics": "metrics"}


def add_flags(parser: argparse.ArgumentParser, *groups: str) -> None:
    """Add the named flag groups (keys of FLAG_GROUPS) to a command."""
    titled: dict[str, argparse._ArgumentGroup] = {}
    for name in groups:
        title = GROUP_TITLES[name]
        group = titled.get(title) or titled.setdefault(title, parser.add_argument_group(title))
        FLAG_GROUPS[name](group)


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """Every flag but the axon's and the metrics' (the console runs any role, so it takes the rest; it adds
    --metrics.* itself); "home" is the one-directory spelling of "storage"'s --db_root_path, for commands that
    take only that."""
    add_flags(parser, *(g for g in FLAG_GROUPS if g not in ("axon", "home", "metrics")))


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
        if key == "db_root_path" and isinstance(value, (list, tuple)):  # --db_root_path A B: one per disk
            if not value:
                raise ConfigError("--db_root_path: name at least one directory")
            nested["db_root_path"], nested["more_db_root_paths"] = str(value[0]), [str(v) for v in value[1:]]
        elif tail:
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


def with_defaults(settings: Settings, update: dict[str, Any]) -> Settings:
    """``settings`` with ``update`` applied as defaults, not as typed flags: ``model_fields_set``
    stays what the operator typed (storage.share tells a typed --size_in_gb from a default by it)."""
    if not update:
        return settings
    resolved = settings.model_copy(update=update)
    object.__setattr__(resolved, "__pydantic_fields_set__", set(settings.model_fields_set))
    return resolved
